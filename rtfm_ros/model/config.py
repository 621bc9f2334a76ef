"""Model configurations: one dataclass, three presets (tiny on CPU, small, base on GPUs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the renderer. ``image_size`` is the native (training) resolution; any
    resolution whose sides are multiples of ``patch`` can be rendered."""

    name: str = "tiny"
    image_size: int = 64
    patch: int = 8
    dim: int = 192
    heads: int = 6
    enc_layers: int = 3
    dec_layers: int = 4
    mlp_ratio: float = 4.0
    context: int = 4
    min_depth: float = 0.05
    max_depth: float = 40.0

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "small": ModelConfig(name="small", image_size=64, dim=256, heads=8, enc_layers=4, dec_layers=6),
    "base": ModelConfig(name="base", image_size=128, dim=512, heads=8, enc_layers=8, dec_layers=12, context=6),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]
