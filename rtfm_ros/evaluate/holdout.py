"""Leave-k-out scoring of any posed photo set: how good is a world built from these frames?

Every ``every``-th frame is held out; a world is built from the others (from the depth maps the
set comes with, where it has them and ``--no-depth`` is not given; else from the frames' own
geometry, as for a user's photos) and each held-out pose is rendered and compared with its
photo. Rows, all on the same context in one run:

- ``model``: the world model as users get it (learned parts on);
- ``fitted`` (with ``--fit``): the same world after `rtfm fit` on the kept frames (leave-one-out
  among them: the held-out photos are never seen);
- ``no_learning``: the same pipeline with every learned part off (no monocular prior: frames
  without a stereo neighbour get a flat depth at the scene distance; no fitted parameters);
- ``nearest_frame``: the held-out pose gets the photo of the nearest remaining pose.

Sizes are WIDTHxHEIGHT: the photo is centre-cropped to that aspect and resized (box filter),
and the target camera is cropped and scaled the same way, so a 128x128 target of a portrait
photo is its centre square.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from rtfm_ros.evaluate.baselines import pose_score
from rtfm_ros.evaluate.metrics import gmsd, psnr, ssim
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.images import crop_to
from rtfm_ros.options import setting

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.render.fit_file import WorldFit
    from rtfm_ros.world import WorldModel

ROWS = ("model", "no_learning", "nearest_frame")
ALL_ROWS = ("model", "fitted", "no_learning", "nearest_frame")


class HoldoutError(ValueError):
    """A posed set or size that leave-k-out cannot use."""


@dataclass
class PosedSet:
    """Posed photos: rgb N x H x W x 3 uint8 (or a list of differently sized ones), K N x 3 x 3, T N x 4 x 4,
    and depth maps (planar z, NaN where unknown) where the set has them."""

    rgb: list[np.ndarray]
    K: np.ndarray
    T_world_camera: np.ndarray
    depth: list[np.ndarray | None] | None = None

    def depth_of(self, i: int) -> np.ndarray | None:
        """Frame i's depth map, None where it has none (no finite pixel)."""
        d = self.depth[i] if self.depth is not None else None
        return d if d is not None and bool(np.isfinite(d).any()) else None

    @property
    def has_depth(self) -> bool:
        return any(self.depth_of(i) is not None for i in range(len(self)))

    def camera(self, i: int) -> PinholeCamera:
        h, w = self.rgb[i].shape[:2]
        K = self.K[i]
        return PinholeCamera(w, h, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))

    def __len__(self) -> int:
        return len(self.rgb)


@dataclass
class HoldoutResult:
    size: tuple[int, int]
    psnr: dict[str, list[float]] = field(default_factory=dict)
    ssim: dict[str, list[float]] = field(default_factory=dict)
    gmsd: dict[str, list[float]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)
    sheet: np.ndarray | None = None

    def mean(self, row: str) -> tuple[float, float]:
        return float(np.mean(self.psnr[row])), float(np.mean(self.ssim[row]))


def parse_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, or WIDTH alone for each photo's own aspect (height 0 here)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
        w, h = (parts[0], 0) if len(parts) == 1 else (parts[0], parts[1]) if len(parts) == 2 else (0, -1)
    except ValueError:
        raise HoldoutError(f"size must be WIDTHxHEIGHT or WIDTH, got {text!r}") from None
    if not (0 < w <= 4096 and 0 <= h <= 4096):
        raise HoldoutError(f"size must be within 1..4096 on each side, got {text!r}")
    return w, h


def split(n: int, every: int) -> tuple[list[int], list[int]]:
    if every < 2 or n < 2:
        raise HoldoutError(f"leave-k-out needs every >= 2 and at least 2 frames, got every={every}, {n} frames")
    held = [i for i in range(n) if i % every == 0]
    return held, [i for i in range(n) if i % every]


def build_world(data: PosedSet, ids: list[int], *, learned: bool = True, checkpoint: str | None = None,
                progress: bool = False) -> WorldModel:
    """A WorldModel seeded with frames ``ids`` of the set, with their depth maps where the set has
    them, depth estimated for the others."""
    from rtfm_ros.render.config import RenderConfig
    from rtfm_ros.world import WorldModel

    wm = WorldModel.load(checkpoint, config=RenderConfig(use_prior=learned, use_learned=learned))
    wm.add_frames([(data.rgb[i], data.T_world_camera[i], data.camera(i)) for i in ids],
                  depths=[data.depth_of(i) for i in ids], progress=progress)
    return wm


def evaluate_holdout(data: PosedSet, sizes: list[tuple[int, int]], *, every: int = 4, rows: tuple[str, ...] = ROWS,
                     checkpoint: str | None = None, progress: bool = False, fit_steps: int | None = None,
                     sheet_views: int = 6) -> list[HoldoutResult]:
    """Score each row on the held-out frames at each size; contact sheets of the first views."""
    from tqdm import tqdm

    held, kept = split(len(data), every)
    worlds: dict[str, WorldModel] = {}
    fits: dict[str, WorldFit] = {}
    if "model" in rows or "fitted" in rows:
        worlds["model"] = build_world(data, kept, learned=True, checkpoint=checkpoint, progress=progress)
    if "fitted" in rows:
        from rtfm_ros.render.fit import FIT_STEPS, fit_world

        worlds["fitted"] = worlds["model"]
        fits["fitted"], _ = fit_world(worlds["model"], steps=fit_steps or FIT_STEPS, progress=progress)
    if "no_learning" in rows:
        worlds["no_learning"] = build_world(data, kept, learned=False, checkpoint=checkpoint, progress=progress)
    results = []
    for (w, h) in sizes:
        res = HoldoutResult((w, h), {r: [] for r in rows}, {r: [] for r in rows}, {r: [] for r in rows},
                            {r: 0.0 for r in rows})
        tiles: list[np.ndarray] = []
        label = f"{w}x{h}" if h else f"width {w}"
        for j, i in enumerate(tqdm(held, desc=f"held-out views {label}", unit="view", disable=not progress)):
            hi = h or max(1, round(data.rgb[i].shape[0] * w / data.rgb[i].shape[1]))
            truth, cam = crop_to(data.rgb[i], data.camera(i), w, hi)
            outs: dict[str, np.ndarray] = {}
            for row in rows:
                t0 = time.perf_counter()
                if row == "nearest_frame":
                    near = min(kept, key=lambda k: pose_score(data.T_world_camera[k], data.T_world_camera[i]))
                    outs[row] = crop_to(data.rgb[near], data.camera(near), w, hi)[0]
                else:
                    worlds[row].fit = fits.get(row)
                    outs[row] = worlds[row].render(data.T_world_camera[i], cam, remember=False)
                res.ms[row] += (time.perf_counter() - t0) * 1000 / len(held)
                res.psnr[row].append(psnr(outs[row], truth))
                res.ssim[row].append(ssim(outs[row], truth))
                res.gmsd[row].append(gmsd(outs[row], truth))
            if j < sheet_views and (not tiles or tiles[0].shape[0] == truth.shape[0]):
                tiles.append(np.concatenate([truth] + [outs[r] for r in rows], axis=1))
        res.sheet = np.concatenate(tiles, axis=0) if tiles else None
        results.append(res)
    return results


def to_markdown(results: list[HoldoutResult], n_held: int, n_kept: int, with_depth: int = 0) -> str:
    depth = f" ({with_depth} with their depth maps)" if with_depth else ""
    lines = [f"held out {n_held} views, rendered from the other {n_kept}{depth}", "",
             "| size | " + " | ".join(f"{r} PSNR / SSIM / GMSD" for r in results[0].psnr) + " |",
             "|---|" + "---|" * len(results[0].psnr)]
    for res in results:
        cells = [f"{np.mean(v):.2f} / {np.mean(res.ssim[r]):.3f} / {np.mean(res.gmsd[r]):.3f}"
                 for r, v in res.psnr.items()]
        size = f"{res.size[0]}x{res.size[1]}" if res.size[1] else f"width {res.size[0]}"
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_posed_set(path: str | Path, *, depth: bool = True) -> PosedSet:
    """A transforms.json folder or a ROS 2 bag, at full resolution, with its depth maps (if any,
    and ``depth``)."""
    from rtfm_ros.data.importers import ImportOptions, import_any

    clip = import_any(path, ImportOptions(no_depth=not depth))
    return PosedSet(list(clip.rgb), np.asarray(clip.K), np.asarray(clip.T_world_camera),
                    None if clip.depth is None else list(clip.depth))


@dataclass(frozen=True)
class HoldoutOptions:
    """`rtfm eval --holdout DIR`: one option per field."""

    holdout: str | None = setting(None, "transforms.json folder or ROS 2 bag: hold out every --every-th frame and "
                                        "render it from the others (model vs no_learning vs nearest_frame)",
                                  metavar="DIR")
    every: int = setting(4, "hold out every N-th frame (default 4)")
    sizes: str = setting("320", "comma-separated target sizes: WIDTHxHEIGHT, or WIDTH for each photo's own "
                                "aspect (default 320)")
    rows: str | None = setting(None, "comma-separated subset of model,fitted,no_learning,nearest_frame")
    fit: bool = setting(False, "add a 'fitted' row: rtfm fit on the kept frames first")
    no_depth: bool = setting(False, "ignore the set's depth maps (transforms.json depth_file_path, a bag's depth "
                                    "topic): every frame's depth from stereo")
    sheet_dir: str = setting("holdout_out", "where contact sheets go (default holdout_out)")

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 2:
            raise HoldoutError(f"--every must be an integer >= 2, got {self.every!r}")
        for text in self.sizes.split(","):
            parse_size(text)
        bad = [r for r in self.row_names() if r not in ALL_ROWS]
        if bad:
            raise HoldoutError(f"unknown rows {bad}; known: {', '.join(ALL_ROWS)}")

    def row_names(self) -> tuple[str, ...]:
        rows = tuple(r.strip() for r in self.rows.split(",")) if self.rows else ROWS
        if self.fit and "fitted" not in rows:
            rows = rows[:1] + ("fitted",) + rows[1:]
        return rows


def run(opt: HoldoutOptions, *, checkpoint: str | None = None, write: Callable[[str], None] = print) -> int:
    """`rtfm eval --holdout DIR`: print the table, write the contact sheets."""
    if opt.holdout is None:
        raise HoldoutError("--holdout needs a folder or bag")
    data = load_posed_set(opt.holdout, depth=not opt.no_depth)
    sizes = [parse_size(s) for s in opt.sizes.split(",")]
    rows = opt.row_names()
    results = evaluate_holdout(data, sizes, every=opt.every, rows=rows, checkpoint=checkpoint, progress=True)
    held, kept = split(len(data), opt.every)
    with_depth = sum(data.depth_of(i) is not None for i in kept)
    write(f"{opt.holdout}: " + to_markdown(results, len(held), len(kept), with_depth))
    out = Path(opt.sheet_dir)
    out.mkdir(parents=True, exist_ok=True)
    for res in results:
        if res.sheet is not None:
            p = out / (f"holdout_{res.size[0]}x{res.size[1]}.png" if res.size[1] else f"holdout_w{res.size[0]}.png")
            Image.fromarray(res.sheet).save(p)
            write(f"contact sheet (held-out photo | {' | '.join(res.psnr)}): {p}")
    return 0
