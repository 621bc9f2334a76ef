"""Depth that comes with posed images: transforms.json depth files and a bag's depth topic are
read into the clip, registered to their images, and a held-out evaluation uses them."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtfm_ros import PinholeCamera
from rtfm_ros.data.importers import ImportDataError, ImportOptions, import_any, import_bag, import_transforms_json
from rtfm_ros.geometry import R_BODY_OPTICAL, make_transform, optical_to_opengl
from rtfm_ros.io.bags import BagWriter

CAM = PinholeCamera.from_fov(16, 12, 70)
T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _depth(k: int, h: int = 12, w: int = 16) -> np.ndarray:
    """A sloped wall 1-2 m away with a hole (unknown) in one corner."""
    z = 1.0 + 0.05 * k + np.linspace(0, 1, w, dtype=np.float32)[None].repeat(h, 0)
    z[:3, :3] = np.nan
    return z


def _transforms(folder: Path, frames: list[dict], **top) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, fr in enumerate(frames):
        Image.fromarray(np.full((12, 16, 3), 20 * k, np.uint8)).save(folder / f"{k}.png")
        fr.setdefault("file_path", f"{k}.png")
        fr.setdefault("transform_matrix", optical_to_opengl(make_transform(translation=[0.1 * k, 0, 0])).tolist())
    spec = {"fl_x": CAM.fx, "fl_y": CAM.fy, "cx": CAM.cx, "cy": CAM.cy, "w": 16, "h": 12, "frames": frames, **top}
    (folder / "transforms.json").write_text(json.dumps(spec))
    return folder


def _png16(path: Path, depth_m: np.ndarray, unit: float = 1e-3) -> str:
    Image.fromarray(np.nan_to_num(depth_m / unit).round().astype(np.uint16)).save(path)
    return path.name


def test_transforms_json_depth_files_are_read_scaled_and_registered(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "d1.npy", _depth(1, 6, 8))  # half resolution, metres (scale 1 for this frame)
    frames = [{"depth_file_path": _png16(folder / "d0.png", _depth(0))},
              {"depth_file_path": "d1.npy", "depth_unit_scale_factor": 1.0},
              {}]  # a frame without depth
    clip = import_transforms_json(_transforms(folder, frames))
    assert clip.depth is not None and clip.depth.shape == (3, 12, 16)
    np.testing.assert_allclose(clip.depth[0], _depth(0), atol=6e-4)  # millimetres, rounded
    assert np.isnan(clip.depth[0][:3, :3]).all()  # 0 in the file: unknown
    up = np.repeat(np.repeat(_depth(1, 6, 8), 2, 0), 2, 1)  # nearest-pixel resize to the image's size
    np.testing.assert_allclose(clip.depth[1], up, atol=1e-6)
    assert np.isnan(clip.depth[2]).all()
    assert clip.meta["depth_files"] == 2
    square = import_transforms_json(folder, res=6)  # cut as the image is: the centre 12x12, then 6x6
    assert square.depth is not None and square.depth.shape == (3, 6, 6)
    np.testing.assert_allclose(square.depth[0], _depth(0)[:, 2:14][::2, ::2], atol=0.1)
    assert import_any(folder, ImportOptions(no_depth=True)).depth is None


@pytest.mark.parametrize("make, message", [
    (lambda d: Image.fromarray(np.zeros((12, 16), np.uint8)).save(d / "bad.png"), "not a depth map"),
    (lambda d: Image.fromarray(np.zeros((12, 12), np.uint16)).save(d / "bad.png"), "another aspect"),
    (lambda d: (d / "bad.png").write_bytes(b"\x89PNG broken"), "not a readable depth image"),
    (lambda d: None, "not found"),
])
def test_unusable_depth_files_are_refused_naming_the_frame(tmp_path, make, message):
    folder = tmp_path / "set"
    folder.mkdir()
    make(folder)
    _transforms(folder, [{"depth_file_path": "bad.png"}])
    with pytest.raises(ImportDataError, match=f"frame 0: .*{message}"):
        import_transforms_json(folder)


def test_a_pickled_npy_is_refused(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    np.save(folder / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _transforms(folder, [{"depth_file_path": "obj.npy"}])
    with pytest.raises(ImportDataError, match="not a readable .npy"):
        import_transforms_json(folder)


def _rgbd_bag(path: Path) -> None:
    """A camera moving along x: colour and registered depth (16UC1) every 100 ms, the depth of
    the 4th image missing; a second depth topic in the depth camera's own frame (not registered)."""
    with BagWriter(path) as w:
        w.write_tf([("base", "cam_optical", make_transform(R_BODY_OPTICAL)),
                    ("base", "depth_optical", make_transform(R_BODY_OPTICAL))], T0, static=True)
        for k in range(6):
            t = T0 + k * 100 * MS
            w.write_tf([("map", "base", make_transform(translation=[0.1 * k, 0, 0]))], t)
            w.write_image("/cam/color/image_raw", np.full((12, 16, 3), 30 * k, np.uint8), t, "cam_optical")
            w.write_camera_info("/cam/color/camera_info", CAM, t, "cam_optical")
            if k != 3:
                w.write_depth("/cam/aligned_depth_to_color/image_raw", _depth(k), t + 3 * MS, "cam_optical",
                              encoding="16UC1")
            w.write_depth("/cam/depth/image_rect_raw", np.full((12, 16), 9.0, np.float32), t, "depth_optical")


def test_bag_depth_topic_registered_to_the_images_is_matched_by_stamp(tmp_path):
    _rgbd_bag(tmp_path / "bag")
    clip = import_bag(tmp_path / "bag")  # colour picked among three Image topics, depth beside it
    assert clip.meta["image_topic"] == "/cam/color/image_raw"
    assert clip.meta["depth_topic"] == "/cam/aligned_depth_to_color/image_raw"
    assert clip.depth is not None and clip.meta["frames_without_depth"] == 1
    for k in (0, 1, 2, 4, 5):
        np.testing.assert_allclose(clip.depth[k], _depth(k), atol=6e-4)
    assert np.isnan(clip.depth[3]).all()  # no depth within 20 ms of that image
    assert import_bag(tmp_path / "bag", no_depth=True).depth is None
    other = import_bag(tmp_path / "bag", depth_topic="/cam/depth/image_rect_raw")  # asked for: taken as is
    assert other.depth is not None and np.allclose(other.depth, 9.0)
    with pytest.raises(ImportDataError, match="no depth image .* topic '/nope'"):
        import_bag(tmp_path / "bag", depth_topic="/nope")


def test_holdout_uses_the_sets_depth_maps(tmp_path):
    """A room's posed views with their true depth, as a transforms.json: held-out views rendered
    from the depth maps beat the same set without them (stereo), both through `rtfm eval`'s path."""
    from rtfm_ros.evaluate.holdout import evaluate_holdout, load_posed_set
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    cam = PinholeCamera.from_fov(64, 48, 80)
    world = make_world(1_000_931, "room")
    poses = make_trajectory(world, "loop", 16, 0).T_world_camera
    folder = tmp_path / "room"
    folder.mkdir()
    frames = []
    with WorldRenderer(world, cam) as r:
        for k, T in enumerate(poses):
            rgb, depth = r.render(T)
            Image.fromarray(rgb).save(folder / f"{k}.png")
            frames.append({"file_path": f"{k}.png", "transform_matrix": optical_to_opengl(T).tolist(),
                           "depth_file_path": _png16(folder / f"d{k}.png", depth)})
    spec = {"fl_x": cam.fx, "fl_y": cam.fy, "cx": cam.cx, "cy": cam.cy, "w": 64, "h": 48, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(spec))
    with_depth, without = load_posed_set(folder), load_posed_set(folder, depth=False)
    assert with_depth.has_depth and not without.has_depth
    scores = {name: evaluate_holdout(data, [(64, 48)], rows=("model",))[0].mean("model")[0]
              for name, data in (("depth", with_depth), ("stereo", without))}
    assert scores["depth"] > scores["stereo"] + 1.0, scores


@pytest.mark.parametrize("scale, message", [("mm", "must be a number"), (-0.001, "must be a positive number"),
                                            (0, "must be a positive number")])
def test_a_bad_depth_scale_is_refused(tmp_path, scale, message):
    folder = tmp_path / "set"
    folder.mkdir()
    frames = [{"depth_file_path": _png16(folder / "d0.png", _depth(0))}]
    _transforms(folder, frames, depth_unit_scale_factor=scale)
    with pytest.raises(ImportDataError, match=f"frame 0: .*{message}"):
        import_transforms_json(folder)


def test_rtfm_serve_seeds_with_the_depth_maps_a_transforms_json_names(tmp_path):
    """Uploaded from the page or on disk (`--seed-images`): the same parser, the same maps."""
    from rtfm_ros.serve.seeding import SeedError, frames_from_paths, frames_from_photos

    folder = tmp_path / "set"
    folder.mkdir()
    frames = [{"depth_file_path": _png16(folder / "d0.png", _depth(0))}, {}]
    _transforms(folder, frames)
    on_disk = frames_from_paths([str(folder)], 60.0)
    assert on_disk[0].depth is not None and on_disk[1].depth is None
    np.testing.assert_allclose(on_disk[0].depth, _depth(0), atol=6e-4)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix != ".json"}
    spec = (folder / "transforms.json").read_bytes()
    uploaded = frames_from_photos(files, spec, 60.0)
    np.testing.assert_array_equal(uploaded[0].depth, on_disk[0].depth)
    with pytest.raises(SeedError, match="depth map 'd0.png', which is not among the files"):
        frames_from_photos({k: v for k, v in files.items() if k != "d0.png"}, spec, 60.0)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(folder / "d0.png")  # 8 bits: not depth
    with pytest.raises(SeedError, match="frame 0: .*not a depth map"):
        frames_from_photos({**files, "d0.png": (folder / "d0.png").read_bytes()}, spec, 60.0)
    with pytest.raises(SeedError, match="pixels in all"):  # depth counts against the upload's budget
        frames_from_photos(files, spec, 60.0, max_pixels=2 * 12 * 16 + 10)
