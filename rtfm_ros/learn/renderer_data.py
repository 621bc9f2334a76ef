"""Training examples for the learned renderer: what it sees for a view, and the true image.

Why these three sources: the renderer must learn the pipeline's real failure modes, so every
input is made by the product's own render core from depth the product estimated itself
(multi-view stereo with its consistency check; never ground-truth depth, which would hide the
failures and let the network learn to copy):

- ``procedural``: MuJoCo worlds (training seeds only, below HELDOUT_SEED_BASE) seeded with a
  sparse subset of a loop's frames, without depth; targets of every kind the held-out suite
  has (interpolation, extrapolation with large unseen regions, revisit). Unlimited ground truth.
  Some worlds (``--depth-worlds``) are seeded with their frames' depth instead, exact or as a
  stereo depth camera measures it (noise growing with z^2, steps, dropouts at edges): the
  renderer must also learn what to do with an RGB-D camera's depth, which fails differently.
- ``photos``: leave-one-out on a real posed set (transforms.json folder or bag): a world of the
  photos given, each rendered with itself (and, for a wider baseline, also its nearest
  neighbour) kept out of its context; the photo is the target. Sparse worlds too: a random
  part of the photos (35-60 %), the others their targets. A user's world is often that sparse,
  and there a place is seen by one or two photos whose stereo fails, which leave-one-out
  alone rarely shows the renderer (off by default: the bundled weights did not gain from
  them, BENCHMARKS.md).
- ``round trip``: any single posed photo with depth (its stereo in such a world): warped to a
  nearby pose and back through a world that holds only the warped view; the round trip's
  holes, stretches and smears are the input, the photo is the target.

Each example is one safetensors file: ``planes`` (C x H x W float16), ``target`` and
``geometric`` (H x W x 3 uint8), with its source in the metadata. No pickle anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rtfm_ros.camera.sensor import DepthNoise
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.render.learned import IN_CHANNELS
from rtfm_ros.render.views import learned_inputs
from rtfm_ros.world import WorldModel

FORMAT = "rtfm_ros.renderer_example/1"


@dataclass
class Example:
    planes: torch.Tensor   # IN_CHANNELS x H x W float
    target: np.ndarray     # H x W x 3 uint8
    geometric: np.ndarray  # H x W x 3 uint8
    source: str


def _to_u8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def view_example(wm: WorldModel, T: np.ndarray, camera: PinholeCamera, target: np.ndarray, source: str,
                 exclude: Sequence[int] = ()) -> Example:
    planes, geo = learned_inputs([(wm, T, camera)], frozenset(int(i) for i in exclude))
    return Example(planes[0].float().cpu(), np.ascontiguousarray(target), _to_u8(geo[0]), source)


def save_example(ex: Example, path: Path) -> None:
    from safetensors.torch import save_file

    if ex.planes.shape[0] != IN_CHANNELS or ex.target.shape[:2] != tuple(ex.planes.shape[1:]):
        raise ValueError(f"example planes {tuple(ex.planes.shape)} do not match target {ex.target.shape}")
    save_file({"planes": ex.planes.half().contiguous(), "target": torch.from_numpy(np.array(ex.target, order="C")),
               "geometric": torch.from_numpy(np.array(ex.geometric, order="C"))}, str(path),
              metadata={"format": FORMAT, "source": ex.source})


def load_example(path: Path) -> Example:
    """An example file; anything else (wrong format, shapes, dtypes) is refused with its path."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a renderer example (format {meta.get('format')!r})")
            planes, target, geo = (f.get_tensor(k) for k in ("planes", "target", "geometric"))
    except (OSError, RuntimeError, KeyError, SafetensorError) as exc:
        raise ValueError(f"{path}: unreadable renderer example: {exc}") from exc
    H, W = planes.shape[1:]
    if (planes.shape[0] != IN_CHANNELS or tuple(target.shape) != (H, W, 3) or tuple(geo.shape) != (H, W, 3)
            or target.dtype != torch.uint8 or geo.dtype != torch.uint8):
        raise ValueError(f"{path}: renderer example with inconsistent shapes or types")
    return Example(planes.float(), target.numpy(), geo.numpy(), meta.get("source", ""))


def _world(base: WorldModel) -> WorldModel:
    from rtfm_ros.memory import FrameMemory

    return base.with_memory(FrameMemory())


def sensor_noise(seed: int) -> DepthNoise | None:
    """How a world seeded with its depth measures it: None (exact, as a simulator's or a rendered
    view's depth) for half the worlds, else a stereo depth camera drawn at random (baseline
    5-12 cm, disparity noise 0.05-0.2 px at 640 pixels wide, 1/8 px steps half the time,
    dropouts beside depth edges and in the occlusion shadow most of the time)."""
    rng = np.random.default_rng([seed, 22])
    if rng.random() < 0.5:
        return None
    return DepthNoise("stereo", baseline=float(rng.uniform(0.05, 0.12)),
                      disparity_stddev=float(rng.uniform(0.05, 0.2)),
                      subpixel=0.125 if rng.random() < 0.5 else 0.0,
                      edge_jump=float(rng.uniform(0.02, 0.08)) if rng.random() < 0.8 else 0.0)


def procedural_examples(base: WorldModel, seed: int, *, size: tuple[int, int] = (192, 144),
                        with_depth: bool = False) -> Iterator[Example]:
    """One training world's examples (module docstring). ``with_depth``: its frames are seeded
    with their depth as an RGB-D camera or a simulator gives it (sensor_noise), not stereo's."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.targets import CONTEXT_FRAMES, TAIL_FRAMES, view_targets
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE, KINDS, make_world

    if not 0 <= seed < HELDOUT_SEED_BASE:
        raise ValueError(f"training worlds use seeds below {HELDOUT_SEED_BASE}, got {seed}")
    rng = np.random.default_rng([seed, 21])
    world = make_world(seed, KINDS[seed % len(KINDS)])
    traj = make_trajectory(world, "loop", CONTEXT_FRAMES + TAIL_FRAMES, seed=0)
    targets, kinds = view_targets(world, traj.T_world_camera, rng, CONTEXT_FRAMES)
    cam = PinholeCamera.from_fov(size[0], size[1], float(rng.uniform(55, 85)))
    seeds_T = traj.T_world_camera[:CONTEXT_FRAMES:int(rng.integers(2, 5))]
    with WorldRenderer(world, cam) as r:
        shots = [r.render(T) for T in seeds_T]
        truths = [r.render(T)[0] for T in targets]
    depths: list[np.ndarray | None] = [None] * len(shots)
    tag = ""
    if with_depth:
        noise = sensor_noise(seed)
        camera_noise = None if noise is None else noise.at_width(size[0])
        noise_rng = np.random.default_rng([seed, 23])
        depths = [d if camera_noise is None else camera_noise.apply(d, float(cam.K[0, 0]), noise_rng)
                  for _, d in shots]
        tag = ":exact-depth" if noise is None else ":sensor-depth"
    wm = _world(base)
    wm.add_frames([(im, T, cam) for (im, _), T in zip(shots, seeds_T)], depths=depths)
    for T, truth, kind in zip(targets, truths, kinds):
        yield view_example(wm, T, cam, truth, f"procedural:{seed}:{kind}{tag}")


def _at_width(rgb: np.ndarray, camera: PinholeCamera, width: int) -> tuple[np.ndarray, PinholeCamera]:
    """A photo as an example's target: ``width`` wide at its own aspect, with its camera."""
    from rtfm_ros.images import crop_to

    H0, W0 = rgb.shape[:2]
    return crop_to(rgb, camera, width, max(8, round(H0 * width / W0)))


def photo_examples(base: WorldModel, rgb: Sequence[np.ndarray], cameras: Sequence[PinholeCamera],
                   poses: np.ndarray, *, width: int = 320, name: str = "photos",
                   round_trips: int = 1, seed: int = 0, sparse_worlds: int = 0,
                   depths: Sequence[np.ndarray | None] | None = None) -> Iterator[Example]:
    """Leave-one-out (and leave-two-out) on posed photos, each at ``width`` and its own aspect,
    ``round_trips`` round-trip examples per photo from its depth (``depths``: the set's own
    depth maps, as a user's world would be seeded with them; stereo for a photo without one),
    then ``sparse_worlds`` worlds of a random part of the photos (sparse_examples)."""
    from rtfm_ros.evaluate.baselines import pose_score

    rng = np.random.default_rng([seed, 7])
    wm = _world(base)
    ids = wm.add_frames([(im, T, cam) for im, T, cam in zip(rgb, poses, cameras)], depths=depths)
    for j, fid in enumerate(ids):
        truth, cam = _at_width(rgb[j], cameras[j], width)
        yield view_example(wm, poses[j], cam, truth, f"{name}:{j}:loo", exclude=[fid])
        others = [k for k in range(len(ids)) if k != j]
        if len(others) >= 3:
            near = min(others, key=lambda k: pose_score(poses[k], poses[j]))
            yield view_example(wm, poses[j], cam, truth, f"{name}:{j}:lto", exclude=[fid, ids[near]])
        frame = wm.memory.get(fid)
        depth = wm.prepare(fid).depth[0].cpu().numpy()
        for _ in range(round_trips):
            ex = round_trip_example(base, frame.rgb, frame.camera, poses[j], depth, rng, width=width,
                                    name=f"{name}:{j}:round-trip")
            if ex is not None:
                yield ex
    yield from sparse_examples(base, rgb, cameras, poses, width=width, name=name, worlds=sparse_worlds,
                               rng=rng, depths=depths)


SPARSE_SHARE = (0.35, 0.6)  # share of a set's photos a sparse world holds
SPARSE_TARGETS = 8          # at most this many of the other photos are a sparse world's targets


def sparse_examples(base: WorldModel, rgb: Sequence[np.ndarray], cameras: Sequence[PinholeCamera],
                    poses: np.ndarray, *, width: int, name: str, worlds: int, rng: np.random.Generator,
                    depths: Sequence[np.ndarray | None] | None = None) -> Iterator[Example]:
    """``worlds`` worlds, each of a random SPARSE_SHARE of the photos (at least 2), rendered at
    up to SPARSE_TARGETS of the others (module docstring). A set of fewer than 3 photos has none."""
    n = len(rgb)
    if n < 3:
        return
    for k in range(worlds):
        size = min(n - 1, max(2, round(n * float(rng.uniform(*SPARSE_SHARE)))))
        chosen = sorted(int(i) for i in rng.choice(n, size, replace=False))
        rest = [i for i in range(n) if i not in chosen]
        targets = sorted(int(i) for i in rng.choice(rest, min(SPARSE_TARGETS, len(rest)), replace=False))
        wm = _world(base)
        wm.add_frames([(rgb[i], poses[i], cameras[i]) for i in chosen],
                      depths=None if depths is None else [depths[i] for i in chosen])
        for j in targets:
            truth, cam = _at_width(rgb[j], cameras[j], width)
            yield view_example(wm, poses[j], cam, truth, f"{name}:{j}:sparse{k}")


def round_trip_example(base: WorldModel, rgb: np.ndarray, camera: PinholeCamera, T: np.ndarray,
                       depth: np.ndarray, rng: np.random.Generator, *, width: int = 320,
                       name: str = "round-trip") -> Example | None:
    """A photo warped to a nearby pose with its depth and back (module docstring); None when
    the depth is too sparse to move the camera by a meaningful baseline."""
    from scipy.spatial.transform import Rotation

    finite = depth[np.isfinite(depth) & (depth > 0)]
    if finite.size < 0.2 * depth.size:
        return None
    scene = float(np.median(finite))
    truth, cam = _at_width(rgb, camera, width)
    step = rng.normal(size=3)
    step *= rng.uniform(0.05, 0.2) * scene / max(float(np.linalg.norm(step)), 1e-9)
    turn = Rotation.from_rotvec(np.radians(rng.uniform(-8, 8, 3))).as_matrix()
    T_moved = T.copy()
    T_moved[:3, :3] = T[:3, :3] @ turn
    T_moved[:3, 3] = T[:3, 3] + T[:3, :3] @ step
    single = _world(base)
    single.add_frame(rgb, T, camera, depth=depth)
    moved, moved_depth = single.render(T_moved, cam, remember=False, return_depth=True)
    back = _world(base)
    back.add_frame(moved, T_moved, cam, depth=moved_depth)
    return view_example(back, T, cam, truth, f"{name}")
