"""`rtfm demo`: seed a world, fly a camera through it and back, and write what it saw.

With no arguments it builds a procedural MuJoCo world the model never trained on, seeds the
memory with a few ground-truth views, flies a loop that comes back to its start, and writes
into demo_out/: a side-by-side video (model | ground truth), a contact sheet, a top-down map of
the memory's frames and an MCAP bag (Image, CameraInfo, TF) for Foxglove. With
``--seed-image photo.jpg --fov 60`` the world is built from the user's own photo instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.atomic import fsync_tree, remove_path, replace_path, temp_path
from rtfm_ros.evaluate.metrics import psnr
from rtfm_ros.geometry import PinholeCamera, compose, level_turn, look_at, make_transform
from rtfm_ros.options import add_options, from_options, setting
from rtfm_ros.sim.worlds import DEMO_WORLD_SEED

if TYPE_CHECKING:
    from rtfm_ros.world import WorldModel

VIDEO_SCALE = 4
DEFAULT_RES = 128  # render resolution (pixels, square)


@dataclass
class DemoRun:
    """Everything the demo rendered, for the writers below."""

    camera: PinholeCamera
    poses: np.ndarray                  # N x 4 x 4 flight poses
    renders: list[np.ndarray] = field(default_factory=list)
    truth: list[np.ndarray] | None = None
    latencies: list[float] = field(default_factory=list)
    revisit_psnr: float = float("nan")
    world_outline: list[Any] = field(default_factory=list[Any])  # obstacles for the map (procedural worlds)


def procedural_flight(wm: WorldModel, camera: PinholeCamera, seed: int, frames: int) -> DemoRun:
    """Seed from MuJoCo ground truth, then fly a loop; ground truth rendered beside the model."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    world = make_world(seed, "room")
    traj = make_trajectory(world, "loop", frames, seed).T_world_camera
    with WorldRenderer(world, camera) as gt:
        # Seeds: a slow turn on the spot at the start, and every 8th pose of the way out.
        start = traj[0]
        turn = [compose(start, make_transform(level_turn(a))) for a in np.radians(np.arange(0, 360, 30))]
        seeds = turn + list(traj[: frames // 2 : 8])
        for T in seeds:
            rgb, depth = gt.render(T)
            wm.add_frame(rgb, T, camera, depth=depth, source="seed")
        truth = [gt.render_rgb(T) for T in traj]
    run = DemoRun(camera=camera, poses=traj, truth=truth, world_outline=list(world.obstacles))
    return run


def photo_flight(wm: WorldModel, camera: PinholeCamera, photo: Path, fov: float, frames: int) -> DemoRun:
    """Seed from one photo at the origin (depth predicted by the model), then sway around it."""
    from rtfm_ros.photo import load_photo

    img = load_photo(photo)
    photo_cam = PinholeCamera.from_fov(img.shape[1], img.shape[0], fov)
    T0 = look_at([0, 0, 1.0], [1.0, 0, 1.0])
    wm.add_frame(img, T0, photo_cam, source="seed")
    t = np.linspace(0, 2 * np.pi, frames)
    poses = [compose(T0, make_transform(level_turn(0.2 * np.sin(a)), [0.15 * np.sin(a), 0.0, 0.1 * (1 - np.cos(a))]))
             for a in t]
    return DemoRun(camera=camera, poses=np.stack(poses))


def fly(wm: WorldModel, run: DemoRun) -> None:
    from tqdm import tqdm

    first = None
    for i, T in enumerate(tqdm(run.poses, desc="rendering", unit="view")):
        t = time.perf_counter()
        img = wm.render(T, run.camera)
        run.latencies.append(time.perf_counter() - t)
        run.renders.append(img)
        if i == 0:
            first = img
    # Come back to the very first pose after the whole flight: the memory should give it back.
    again = wm.render(run.poses[0], run.camera, remember=False)
    assert first is not None  # the flight has poses (run.poses[0] was just rendered)
    run.revisit_psnr = psnr(first, again)


def write_outputs(wm: WorldModel, run: DemoRun, out: Path) -> dict[str, Path]:
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    out.mkdir(parents=True, exist_ok=True)

    def up(im: np.ndarray) -> np.ndarray:
        return np.kron(im, np.ones((VIDEO_SCALE, VIDEO_SCALE, 1), np.uint8))

    frames = [np.concatenate([up(r), up(g)], axis=1) if run.truth else up(r)
              for r, g in zip(run.renders, run.truth or run.renders)]
    files = {"video": out / "flight.mp4", "sheet": out / "contact_sheet.png", "map": out / "memory_map.png",
             "bag": out / "flight_bag", "summary": out / "summary.json"}
    iio.imwrite(files["video"], np.stack(frames), fps=10, codec="libx264", macro_block_size=1)
    pick = np.linspace(0, len(run.renders) - 1, 8).astype(int)
    rows = [np.concatenate([run.renders[i] for i in pick], axis=1)]
    if run.truth:
        rows.append(np.concatenate([run.truth[i] for i in pick], axis=1))
    iio.imwrite(files["sheet"], up(np.concatenate(rows, axis=0)))

    fig, ax = plt.subplots(figsize=(6, 6))
    for ob in run.world_outline:
        if hasattr(ob, "xmin"):
            ax.add_patch(Rectangle((ob.xmin, ob.ymin), ob.xmax - ob.xmin, ob.ymax - ob.ymin, color="0.75"))
        else:
            ax.add_patch(Circle((ob.x, ob.y), ob.r, color="0.75"))
    colours = {"seed": "tab:green", "observed": "tab:blue", "generated": "tab:orange"}
    for source, colour in colours.items():
        P = np.array([wm.memory.get(i).T_world_camera for i in wm.memory if wm.memory.get(i).source == source])
        if len(P):
            ax.quiver(P[:, 0, 3], P[:, 1, 3], P[:, 0, 2], P[:, 1, 2], color=colour, label=f"{source} ({len(P)})",
                      angles="xy", scale=12, width=0.005)
    ax.plot(run.poses[:, 0, 3], run.poses[:, 1, 3], "k--", lw=0.8, label="flight")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("memory frames (top view, arrows = viewing direction)")
    fig.savefig(files["map"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    from rtfm_ros.io.bags import BagWriter

    cam_frame, info = "camera_optical_frame", run.camera
    with BagWriter(files["bag"], storage="mcap") as bag:
        for i, (T, img) in enumerate(zip(run.poses, run.renders)):
            stamp = int(1e9) + i * 100_000_000
            bag.write_tf([("map", cam_frame, T)], stamp)
            bag.write_image("/rtfm/camera/image_raw", img, stamp, cam_frame)
            bag.write_camera_info("/rtfm/camera/camera_info", info, stamp, cam_frame)
    return files


@dataclass(frozen=True)
class DemoOptions:
    """What `rtfm demo` does, checked before the model loads; its options are made from these fields."""

    out: str = setting("demo_out", "output folder (default demo_out); a re-run replaces the demo's own files in it")
    checkpoint: str | None = setting(None, "model checkpoint (default: the bundled model)")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N")
    seed_image: str | None = setting(None, "build the world from this photo instead of a procedural scene")
    fov: float = setting(60.0, "horizontal field of view of --seed-image (degrees)")
    world_seed: int = setting(DEMO_WORLD_SEED, "seed of the procedural room (default: a held-out one)")
    frames: int = setting(120, "views along the flight")
    res: int = setting(0, f"render resolution (default {DEFAULT_RES})")

    def __post_init__(self) -> None:
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"--out {self.out} exists and is not a folder")
        if self.seed_image is not None and not Path(self.seed_image).is_file():
            raise FileNotFoundError(f"--seed-image {self.seed_image} not found")
        if not math.isfinite(self.fov) or not 0 < self.fov < 180:
            raise ValueError(f"--fov must be in (0, 180) degrees, got {self.fov}")
        if self.frames < 2:
            raise ValueError(f"--frames must be >= 2 (a flight and its revisit), got {self.frames}")
        if self.res and not 8 <= self.res <= 4096:
            raise ValueError(f"--res must be in 8..4096 (or 0: {DEFAULT_RES}), got {self.res}")
        if self.world_seed < 0:
            raise ValueError(f"--world-seed must be >= 0, got {self.world_seed}")


def run_demo(args: argparse.Namespace) -> int:
    return demo(from_options(DemoOptions, args))


def demo(opt: DemoOptions) -> int:
    from rtfm_ros.world import WorldModel

    t_start = time.time()
    wm = WorldModel.load(opt.checkpoint, device=opt.device)
    res = opt.res or DEFAULT_RES
    if opt.seed_image:
        camera = PinholeCamera.from_fov(res, res, opt.fov)
        run = photo_flight(wm, camera, Path(opt.seed_image), opt.fov, opt.frames)
    else:
        camera = PinholeCamera.from_fov(res, res, 90.0)
        run = procedural_flight(wm, camera, opt.world_seed, opt.frames)
    fly(wm, run)
    out = Path(opt.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_path(out)
    staging.mkdir()
    try:
        files = write_outputs(wm, run, staging)
        summary = _summary(run, wm, res, t_start)
        files["summary"].write_text(json.dumps(summary, indent=2))
        _replace_outputs(staging, out)
    finally:
        remove_path(staging)
    _print_summary(summary, len(wm.memory), opt.out, list(files.values()))
    return 0


def _replace_outputs(staging: Path, out: Path) -> None:
    """Move the finished outputs into out, replacing the same names from an earlier run (only those:
    other files in out are left alone). Nothing in out changes until every output is written."""
    out.mkdir(exist_ok=True)
    for item in sorted(staging.iterdir()):
        fsync_tree(item)
        replace_path(item, out / item.name)


def _summary(run: DemoRun, wm: WorldModel, res: int, t_start: float) -> dict[str, Any]:
    lat = np.array(run.latencies) * 1000
    return {
        "views": len(run.renders), "resolution": f"{res}x{res}", "device": str(wm.device),
        "median_latency_ms": float(np.median(lat)), "fps": float(1000 / np.median(lat)),
        "revisit_psnr_db": run.revisit_psnr, "memory_frames": len(wm.memory),
        "psnr_vs_ground_truth_db": float(np.mean([psnr(r, g) for r, g in zip(run.renders, run.truth)]))
        if run.truth else None,
        "seconds": time.time() - t_start,
    }


def _print_summary(summary: dict[str, Any], frames: int, out: str, files: list[Path]) -> None:
    print(f"rendered {summary['views']} views at {summary['resolution']} on {summary['device']}: "
          f"median latency {summary['median_latency_ms']:.1f} ms ({summary['fps']:.0f} fps)")
    if summary["psnr_vs_ground_truth_db"] is not None:
        print(f"mean PSNR against MuJoCo ground truth: {summary['psnr_vs_ground_truth_db']:.2f} dB")
    print(f"revisit: first view rendered again after {summary['views'] - 1} others: "
          f"{summary['revisit_psnr_db']:.2f} dB PSNR")
    print(f"memory: {frames} frames; outputs in {out}/: " + ", ".join(p.name for p in files))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="seed a world, fly through it and back, write video, pictures and a bag")
    add_options(p, DemoOptions)
    p.set_defaults(func=run_demo)
