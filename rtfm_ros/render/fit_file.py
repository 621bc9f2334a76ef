"""A world's fitted blend parameters (`rtfm fit`) and their file beside the world.

``WORLD.fit.safetensors``: the three blend numbers as a tensor and JSON metadata (no pickle).
A fit that does not match the world it is loaded for is refused, not half-applied. Kept apart
from the fitting itself (rtfm_ros.render.fit, which renders with a world) so the world can load its
fit without importing the command that makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rtfm_ros.atomic import atomic_path
from rtfm_ros.render import warp

FIT_VERSION = 1
SUFFIX = ".fit.safetensors"


class FitError(ValueError):
    """A fit that cannot be made, saved or applied to this world."""


@dataclass
class WorldFit:
    """Fitted blend parameters of one world of ``frames`` frames."""

    params: warp.BlendParams
    frames: int


def fit_path(world_path: str | Path) -> Path:
    return Path(str(world_path) + SUFFIX)


def save_fit(fit: WorldFit, path: str | Path) -> Path:
    """Write atomically (temp file + rename): a failed save leaves the previous fit intact."""
    from safetensors.torch import save_file

    path = Path(path)
    p = fit.params
    tensors = {"blend": torch.tensor([float(p.angle_sigma), float(p.visibility_sigma), float(p.rank_decay)])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"rtfm_fit": json.dumps({"version": FIT_VERSION,
                                                                        "frames": int(fit.frames)})})
    return path


def load_fit(path: str | Path, frames: int) -> WorldFit:
    """Read and check a fit for a world of ``frames`` frames."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FitError(f"{path} is not a fit file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("rtfm_fit", "null"))
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise FitError(f"{path} is not a readable fit file: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("version") != FIT_VERSION or set(t) != {"blend"} \
            or not isinstance(meta.get("frames"), int) or t["blend"].shape != (3,):
        raise FitError(f"{path} is not a version-{FIT_VERSION} fit file")
    n = meta["frames"]
    if not 0 < n <= frames:
        raise FitError(f"{path} was fitted to {n} frames but the world holds {frames}")
    b = t["blend"]
    if not bool(torch.isfinite(b).all()) or bool((b[:2] <= 0).any()) or not 0 < float(b[2]) <= 1:
        raise FitError(f"{path} holds values outside their ranges")
    a, v, r = (float(x) for x in b)
    return WorldFit(warp.BlendParams(a, v, r), n)
