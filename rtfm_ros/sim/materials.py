"""Random materials for procedural worlds: MuJoCo builtin textures and generated PNG textures.

Appearance variety is what teaches a world model to copy colours and patterns from context
instead of memorising a few looks, so every surface draws from a wide family: flat colours,
MuJoCo's checker / gradient / noise builtins, and small generated images (bricks, stripes,
tiles, wood, dots, blotchy noise) handed to MuJoCo as in-memory PNG assets. Deterministic:
everything comes from the caller's numpy Generator.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

TEXTURE_SIZE = 128


def random_colour(rng: np.random.Generator, sat: tuple[float, float] = (0.1, 0.8),
                  val: tuple[float, float] = (0.25, 0.95)) -> np.ndarray:
    """An RGB colour in [0, 1]^3 drawn in HSV space (even hue coverage)."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _fmt(values: np.ndarray | list[float] | tuple[float, ...]) -> str:
    return " ".join(f"{float(v):.4f}" for v in values)


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel mix of colours a and b by t in [0, 1] (HxW) -> HxWx3 uint8."""
    t = np.clip(t, 0.0, 1.0)[..., None]
    out: np.ndarray = np.round(255.0 * ((1.0 - t) * a + t * b)).astype(np.uint8)
    return out


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth tileable-ish noise in [0, 1]: a random grid upsampled bicubically."""
    grid = rng.uniform(0.0, 1.0, (cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    out = np.asarray(img, dtype=np.float64)
    noise: np.ndarray = (out - out.min()) / max(out.max() - out.min(), 1e-6)
    return noise


def _pattern(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """One generated HxWx3 uint8 texture image."""
    kind = int(rng.integers(0, 6))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == 0:  # bricks with mortar and per-brick shade
        rows = int(rng.integers(4, 9))
        cols = max(2, rows // 2)
        r = np.floor(yy * rows)
        xs = xx * cols + 0.5 * (r % 2)
        shade = rng.uniform(-0.15, 0.15, (rows, cols + 1))
        t = 0.15 + shade[r.astype(int), np.floor(xs).astype(int) % (cols + 1)]
        mortar = (np.abs(yy * rows - np.round(yy * rows)) < 0.06) | (np.abs(xs - np.round(xs)) < 0.04)
        return _blend(a, b, np.where(mortar, 1.0, t))
    if kind == 1:  # stripes at a random angle
        ang = rng.uniform(0.0, np.pi)
        freq = int(rng.integers(2, 9))
        s = np.sin(2 * np.pi * freq * (np.cos(ang) * xx + np.sin(ang) * yy))
        return _blend(a, b, (s > rng.uniform(-0.5, 0.5)).astype(float))
    if kind == 2:  # square tiles with grout
        n = int(rng.integers(2, 7))
        grout = (np.abs(xx * n - np.round(xx * n)) < 0.05) | (np.abs(yy * n - np.round(yy * n)) < 0.05)
        shade = rng.uniform(0.0, 0.35, (n + 1, n + 1))
        t = shade[np.floor(yy * n).astype(int), np.floor(xx * n).astype(int)]
        return _blend(a, b, np.where(grout, 1.0, t))
    if kind == 3:  # wood-like rings
        warp = _value_noise(rng, size, 4)
        s = np.sin(2 * np.pi * (rng.integers(4, 12) * yy + 2.0 * warp))
        return _blend(a, b, 0.5 + 0.5 * s)
    if kind == 4:  # polka dots
        n = int(rng.integers(3, 8))
        d = np.hypot(xx * n - np.floor(xx * n) - 0.5, yy * n - np.floor(yy * n) - 0.5)
        return _blend(a, b, (d < rng.uniform(0.15, 0.4)).astype(float))
    return _blend(a, b, _value_noise(rng, size, int(rng.integers(3, 12))))  # blotchy noise


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an HxWx3 uint8 image (deterministic for equal pixels)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class MaterialLibrary:
    """Accumulates <texture>/<material> MJCF lines and PNG assets for one world."""

    textures: list[str] = field(default_factory=list)
    materials: list[str] = field(default_factory=list)
    assets: dict[str, bytes] = field(default_factory=dict)

    def add(self, rng: np.random.Generator, role: str, reflectance: float = 0.0) -> str:
        """Create a random material suited to ``role`` (floor, wall, ceiling, object); returns its name."""
        idx = len(self.materials)
        name, tex = f"mat{idx}", f"tex{idx}"
        if role == "ceiling":
            a, b = random_colour(rng, (0.0, 0.2), (0.75, 0.95)), random_colour(rng, (0.0, 0.2), (0.6, 0.9))
        elif role == "wall":
            a, b = random_colour(rng, (0.05, 0.6), (0.45, 0.95)), random_colour(rng, (0.05, 0.6), (0.3, 0.9))
        else:
            a, b = random_colour(rng), random_colour(rng)
        style = int(rng.integers(0, 5)) if role != "ceiling" else int(rng.choice([0, 2, 4]))
        specular = rng.uniform(0.05, 0.5)
        shininess = rng.uniform(0.1, 0.8)
        attrs = f'specular="{specular:.3f}" shininess="{shininess:.3f}" reflectance="{reflectance:.3f}"'
        if style == 0:  # flat colour
            self.materials.append(f'<material name="{name}" rgba="{_fmt(a)} 1" {attrs}/>')
            return name
        repeat = rng.uniform(0.3, 2.0) if role in ("floor", "wall", "ceiling") else rng.uniform(1.0, 4.0)
        if style == 1:  # MuJoCo checker
            self.textures.append(
                f'<texture name="{tex}" type="2d" builtin="checker" rgb1="{_fmt(a)}" rgb2="{_fmt(b)}" '
                f'width="{TEXTURE_SIZE}" height="{TEXTURE_SIZE}"/>')
        elif style == 2:  # MuJoCo flat + random speckle noise
            self.textures.append(
                f'<texture name="{tex}" type="2d" builtin="flat" mark="random" random="{rng.uniform(0.05, 0.4):.3f}" '
                f'rgb1="{_fmt(a)}" markrgb="{_fmt(b)}" width="{TEXTURE_SIZE}" height="{TEXTURE_SIZE}"/>')
        elif style == 3:  # MuJoCo gradient
            self.textures.append(
                f'<texture name="{tex}" type="2d" builtin="gradient" rgb1="{_fmt(a)}" rgb2="{_fmt(b)}" '
                f'width="{TEXTURE_SIZE}" height="{TEXTURE_SIZE}"/>')
            repeat = rng.uniform(0.2, 0.6)
        else:  # generated image
            fname = f"{tex}.png"
            self.assets[fname] = png_bytes(_pattern(rng, a, b, TEXTURE_SIZE))
            self.textures.append(f'<texture name="{tex}" type="2d" file="{fname}"/>')
        self.materials.append(
            f'<material name="{name}" texture="{tex}" texrepeat="{repeat:.3f} {repeat:.3f}" '
            f'texuniform="true" {attrs}/>')
        return name

    def xml(self) -> str:
        return "\n".join(self.textures + self.materials)
