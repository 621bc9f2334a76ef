"""Depth prior configurations: one dataclass, three presets (tiny on CPU, small, base on GPUs).

Every field is type- and range-checked when a config is made, so a damaged or hand-edited
``config.json`` is refused with the field's name before any layer is allocated (an absurd
``dim`` or ``layers`` would otherwise try to allocate tens of GB, a NaN depth bound would break
every prior depth, ``heads=0`` would divide by zero).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

# Inclusive bounds per integer field: far beyond every preset, well short of exhausting memory.
_INT_RANGES = {"image_size": (1, 4096), "patch": (1, 64), "dim": (1, 8192), "heads": (1, 256), "layers": (1, 128)}
MAX_PARAMETERS = 2_000_000_000  # ~8 GB of float32 weights
MAX_DEPTH_M = 1e6


class ConfigError(ValueError):
    """A depth prior configuration with a missing, mistyped or out-of-range field."""


@dataclass(frozen=True)
class DepthPriorConfig:
    """Shape of the depth prior. ``image_size`` is the side it runs at (training and inference:
    a frame is resized to it and the depth back to the frame's size); ``min_depth`` and
    ``max_depth`` bound what it can predict (metres of the training rooms)."""

    name: str = "tiny"
    image_size: int = 64
    patch: int = 8
    dim: int = 192
    heads: int = 6
    layers: int = 3
    mlp_ratio: float = 4.0
    min_depth: float = 0.05
    max_depth: float = 40.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 0 < len(self.name) <= 200:
            raise ConfigError(f"model config name must be a string of 1..200 characters, got {self.name!r}")
        for key, (lo, hi) in _INT_RANGES.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"model config {key} must be an integer in {lo}..{hi}, got {v!r}")
        for key in ("mlp_ratio", "min_depth", "max_depth"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"model config {key} must be a finite positive number, got {v!r}")
        if self.mlp_ratio > 64:
            raise ConfigError(f"model config mlp_ratio must be at most 64, got {self.mlp_ratio}")
        if not self.min_depth < self.max_depth <= MAX_DEPTH_M:
            raise ConfigError(f"model config needs min_depth < max_depth <= {MAX_DEPTH_M:g}, got "
                              f"{self.min_depth} and {self.max_depth}")
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.image_size % self.patch:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")
        if self.approx_parameters() > MAX_PARAMETERS:
            raise ConfigError(f"model config describes ~{self.approx_parameters():.3g} parameters, more than "
                              f"{MAX_PARAMETERS:.3g}")

    def approx_parameters(self) -> int:
        """Rough weight count of the transformer blocks (attention and MLP)."""
        return int(self.layers * (4 + 2 * self.mlp_ratio) * self.dim * self.dim)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DepthPriorConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {sorted(map(str, unknown))}")
        return cls(**data)


PRESETS: dict[str, DepthPriorConfig] = {
    "tiny": DepthPriorConfig(),
    "small": DepthPriorConfig(name="small", image_size=64, dim=256, heads=8, layers=4),
    "base": DepthPriorConfig(name="base", image_size=128, dim=512, heads=8, layers=8),
}


def preset(name: str) -> DepthPriorConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]
