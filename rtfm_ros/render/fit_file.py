"""A world's fit (`rtfm fit`) and its file beside the world.

``WORLD.fit.safetensors``: the three blend numbers as a tensor, optionally the learned
renderer's weights adapted to this world (``renderer.*`` tensors, its config in the metadata),
and JSON metadata (no pickle).
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
from rtfm_ros.render.learned import LearnedRenderer, LearnedRendererConfig

FIT_VERSION = 2
PREFIX = "renderer."
SUFFIX = ".fit.safetensors"


class FitError(ValueError):
    """A fit that cannot be made, saved or applied to this world."""


@dataclass
class WorldFit:
    """Fitted blend parameters of one world of ``frames`` frames, and the learned renderer
    adapted to it (None: the render core's)."""

    params: warp.BlendParams
    frames: int
    renderer: LearnedRenderer | None = None


def fit_path(world_path: str | Path) -> Path:
    return Path(str(world_path) + SUFFIX)


def save_fit(fit: WorldFit, path: str | Path) -> Path:
    """Write atomically (temp file + rename): a failed save leaves the previous fit intact."""
    from safetensors.torch import save_file

    path = Path(path)
    p = fit.params
    tensors = {"blend": torch.tensor([float(p.angle_sigma), float(p.visibility_sigma), float(p.rank_decay)])}
    meta = {"version": FIT_VERSION, "frames": int(fit.frames)}
    if fit.renderer is not None:
        tensors |= {PREFIX + k: v.detach().cpu().contiguous() for k, v in fit.renderer.state_dict().items()}
        meta["renderer"] = json.loads(fit.renderer.config.to_json())
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"rtfm_fit": json.dumps(meta)})
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
    weights = {k[len(PREFIX):]: v for k, v in t.items() if k.startswith(PREFIX)}
    others = set(t) - {PREFIX + k for k in weights}
    if not isinstance(meta, dict) or meta.get("version") not in (1, FIT_VERSION) or others != {"blend"} \
            or not isinstance(meta.get("frames"), int) or t["blend"].shape != (3,) \
            or bool(weights) != ("renderer" in meta):
        raise FitError(f"{path} is not a version-{FIT_VERSION} fit file")
    n = meta["frames"]
    if not 0 < n <= frames:
        raise FitError(f"{path} was fitted to {n} frames but the world holds {frames}")
    b = t["blend"]
    if not bool(torch.isfinite(b).all()) or bool((b[:2] <= 0).any()) or not 0 < float(b[2]) <= 1:
        raise FitError(f"{path} holds values outside their ranges")
    a, v, r = (float(x) for x in b)
    renderer = None
    if weights:
        try:
            renderer = LearnedRenderer(LearnedRendererConfig.from_json(json.dumps(meta["renderer"])))
            renderer.load_state_dict(weights)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise FitError(f"{path} holds a learned renderer that does not load: {exc}") from exc
        renderer.eval()
    return WorldFit(warp.BlendParams(a, v, r), n, renderer)
