"""Setting the camera node up from its config: model, world copy, calibrations, seed images.

Kept apart from the node's run-time code; every check raises ConfigError with the parameter's
name, so a node that cannot do its job refuses to start with the reason. Nothing here runs
on the executor; the node passes in what it declared.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtfm_ros.camera.config import CameraNodeConfig, ConfigError
from rtfm_ros.camera.lens import Calibration, CalibrationError, read_calibration
from rtfm_ros.geometry import PinholeCamera, body_to_optical, transform_from_ros
from rtfm_ros.memory.working_copy import WorkingCopy
from rtfm_ros.photo import load_photo

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.world import WorldModel


def set_threads(torch_threads: int) -> None:
    """The model's CPU threads (0: the serving default, which leaves a core to DDS and TF)."""
    import torch

    from rtfm_ros.runtime import serving_threads

    torch.set_num_threads(torch_threads or serving_threads())


def load_model(config: CameraNodeConfig) -> tuple[WorldModel, WorkingCopy | None]:
    """The checkpoint, and the world parameter's file as a working copy (the file is never written)."""
    from rtfm_ros.world import WorldModel
    from rtfm_ros.world_session import user_path

    ckpt, world = config.checkpoint or None, config.world or None
    try:
        wm = WorldModel.load(ckpt, device=config.device)
    except Exception as e:  # noqa: BLE001 - checkpoint or device: the node cannot do its job
        raise ConfigError(f"cannot load checkpoint {ckpt or '(bundled default)'} on device "
                          f"{config.device!r}: {e}") from None
    if not world:
        return wm, None
    try:
        copy = WorkingCopy(user_path(world), config.scratch_dir)
    except Exception as e:  # noqa: BLE001 - any failure to copy the world refuses the start with its reason
        raise ConfigError(f"cannot load world {world}: {e}") from None
    wm.memory.close()  # the empty memory the checkpoint came with
    try:
        loaded = wm.with_memory(copy.memory)
        loaded.load_fit_beside(copy.source)
    except Exception as e:  # noqa: BLE001 - any unusable fit refuses the start with its reason
        copy.close()
        raise ConfigError(f"cannot use the fit beside world {world}: {e}") from None
    return loaded, copy


def read_calibrations(config: CameraNodeConfig) -> dict[str, Calibration]:
    """camera_info_url of each camera, read now: a calibration that cannot be used refuses the start."""
    out = {}
    for p in config.cameras:
        if p.camera_info_url:
            try:
                out[p.name] = read_calibration(p.camera_info_url, p.name or p.camera_frame)
            except CalibrationError as e:
                raise ConfigError(f"parameter {p.label('camera_info_url')!r}: {e}") from None
    return out


def seed_from_parameters(world: WorldModel, config: CameraNodeConfig, log: Any) -> None:
    """seed_images at seed_poses, added as seed frames."""
    for path, row in zip(config.seed_images, config.seed_pose_rows):
        try:
            rgb = load_photo(Path(path).expanduser())  # a FIFO, a device or a decode bomb is refused
            T = transform_from_ros(row[:3], row[3:])
            if config.seed_pose_convention == "body":
                T = body_to_optical(T)
            cam = PinholeCamera.from_fov(rgb.shape[1], rgb.shape[0], config.seed_fov)
            world.add_frame(rgb, T, cam, source="seed")
        except (OSError, ValueError) as e:
            raise ConfigError(f"seed image {path!r}: {e}") from None
    if config.seed_images:
        log.info(f"seeded the world with {len(config.seed_images)} images")
