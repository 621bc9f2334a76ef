"""Procedural indoor worlds from an integer seed: a 2-D layout for collision checks plus MJCF.

A world is a grid of cells (columns x rows of random sizes). ``room`` merges its cells into one
space (a rectangle, or an L-shape when a corner cell is solid); ``multiroom`` separates cells by
walls with doorways (a random spanning tree keeps every room reachable), narrow rows/columns act
as corridors. Furniture (boxes, tables, cylinders, spheres, things on tables), rugs, lights with
shadows and sometimes a reflective floor are scattered in. Everything is drawn from
``numpy.random.default_rng(seed)`` in a fixed order, so one seed gives one world, byte for byte.

Building a world needs no MuJoCo: ``World.xml`` + ``World.assets`` (PNG bytes) are compiled by
rtfm_ros.sim.renderer; Gym envs and trajectory planners only use the footprints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtfm_ros.sim.materials import MaterialLibrary, random_colour

KINDS = ("room", "multiroom")
# Seeds from here up are held out: the evaluation suite and tests use them, training data never
# does (`rtfm data generate` refuses them), and the Gym environments draw random worlds below them.
HELDOUT_SEED_BASE = 1_000_000
DEMO_WORLD_SEED = 1_000_777  # the world `rtfm demo` and `rtfm serve --demo-world` show (held out)
WALL_T = 0.12  # wall thickness, metres
DOOR_HEIGHT = (1.95, 2.2)
MAX_LIGHTS = 6
SHADOW_LIGHTS = 1  # each shadow-casting light adds whole render passes: the main cost


class WorldError(ValueError):
    """A world that cannot be built or queried (bad seed, unknown kind, no free space)."""


@dataclass(frozen=True)
class Box2D:
    """Axis-aligned footprint."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True)
class Circle2D:
    """Round footprint (cylinders, spheres)."""

    x: float
    y: float
    r: float


@dataclass(frozen=True)
class World:
    """One generated world: layout for collision checks and MJCF for rendering."""

    seed: int
    kind: str
    bounds: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax (outer faces of the walls)
    obstacles: tuple[Box2D | Circle2D, ...]  # walls included
    ceiling: float  # ceiling height, metres
    xml: str = field(repr=False)
    assets: dict[str, bytes] = field(repr=False)
    rooms: tuple[Box2D, ...] = ()  # walkable cells

    def __post_init__(self) -> None:
        boxes = [o for o in self.obstacles if isinstance(o, Box2D)]
        circles = [o for o in self.obstacles if isinstance(o, Circle2D)]
        object.__setattr__(self, "_boxes", np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in boxes]).reshape(-1, 4))
        object.__setattr__(self, "_circles", np.array([[c.x, c.y, c.r] for c in circles]).reshape(-1, 3))

    def clearance(self, x: float, y: float) -> float:
        """Distance from (x, y) to the nearest obstacle or world boundary (<= 0 inside one)."""
        xmin, ymin, xmax, ymax = self.bounds
        d = min(x - xmin, xmax - x, y - ymin, ymax - y)
        b = self._boxes  # type: ignore[attr-defined]
        if len(b):
            dx = np.maximum(np.maximum(b[:, 0] - x, x - b[:, 2]), 0.0)
            dy = np.maximum(np.maximum(b[:, 1] - y, y - b[:, 3]), 0.0)
            inside = (b[:, 0] < x) & (x < b[:, 2]) & (b[:, 1] < y) & (y < b[:, 3])
            d = min(d, float(np.where(inside, -1.0, np.hypot(dx, dy)).min()))
        c = self._circles  # type: ignore[attr-defined]
        if len(c):
            d = min(d, float((np.hypot(c[:, 0] - x, c[:, 1] - y) - c[:, 2]).min()))
        return float(d)

    def is_free(self, x: float, y: float, radius: float = 0.0) -> bool:
        """True when a disc of ``radius`` at (x, y) touches no obstacle and stays inside bounds."""
        return self.clearance(float(x), float(y)) > radius

    def segment_is_free(self, p0: np.ndarray, p1: np.ndarray, radius: float = 0.0) -> bool:
        """True when a disc of ``radius`` can slide along the segment p0 -> p1."""
        p0, p1 = np.asarray(p0, float)[:2], np.asarray(p1, float)[:2]
        n = max(2, int(np.ceil(np.linalg.norm(p1 - p0) / 0.05)) + 1)
        points = p0 + (p1 - p0) * np.linspace(0.0, 1.0, n)[:, None]
        return all(self.is_free(x, y, radius) for x, y in points)

    def sample_free_point(self, rng: np.random.Generator, radius: float = 0.3, max_tries: int = 10000) -> np.ndarray:
        """A uniformly drawn (x, y) whose disc of ``radius`` is free; WorldError if none is found."""
        xmin, ymin, xmax, ymax = self.bounds
        for _ in range(max_tries):
            p = rng.uniform((xmin, ymin), (xmax, ymax))
            if self.is_free(p[0], p[1], radius):
                return p
        raise WorldError(f"world {self.kind}/{self.seed}: no free point with radius {radius} m after {max_tries} tries")

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (stored in clip metadata)."""
        return {"seed": self.seed, "kind": self.kind, "bounds": [round(v, 4) for v in self.bounds],
                "ceiling": round(self.ceiling, 4), "rooms": len(self.rooms), "obstacles": len(self.obstacles)}


def _f(*values: float) -> str:
    return " ".join(f"{float(v):.4f}" for v in values)


def _sizes(rng: np.random.Generator, n: int, lo: float, hi: float, corridor_p: float) -> list[float]:
    sizes = [float(rng.uniform(lo, hi)) for _ in range(n)]
    for i in range(n):
        if n >= 3 and 0 < i < n - 1 and rng.uniform() < corridor_p:
            sizes[i] = float(rng.uniform(1.4, 1.9))  # a corridor between two rooms
    return sizes


def _connected(cells: set[tuple[int, int]]) -> bool:
    if not cells:
        return False
    start = min(cells)
    seen, todo = {start}, [start]
    while todo:
        i, j = todo.pop()
        for n in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if n in cells and n not in seen:
                seen.add(n)
                todo.append(n)
    return seen == cells


def _spanning_tree(rng: np.random.Generator, cells: set[tuple[int, int]]) -> set[frozenset[Any]]:
    """Edges of a random spanning tree over 4-connected cells (randomised DFS)."""
    order = sorted(cells)
    start = order[int(rng.integers(len(order)))]
    seen, stack, edges = {start}, [start], set()
    while stack:
        i, j = stack[-1]
        nbrs = [n for n in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)) if n in cells and n not in seen]
        if not nbrs:
            stack.pop()
            continue
        n = nbrs[int(rng.integers(len(nbrs)))]
        edges.add(frozenset(((i, j), n)))
        seen.add(n)
        stack.append(n)
    return edges


class _Builder:
    """Accumulates geoms (MJCF) and footprints while a world is generated."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.lib = MaterialLibrary()
        self.geoms: list[str] = []
        self.obstacles: list[Box2D | Circle2D] = []
        self.keep_out: list[tuple[float, float, float]] = []  # (x, y, r) kept clear of furniture
        self.n = 0

    def geom(self, kind: str, pos: tuple[float, ...], size: tuple[float, ...], material: str, euler: str = "") -> None:
        rot = f' euler="{euler}"' if euler else ""
        self.geoms.append(f'<geom name="g{self.n}" type="{kind}" pos="{_f(*pos)}" size="{_f(*size)}"{rot} '
                          f'material="{material}" contype="0" conaffinity="0"/>')
        self.n += 1

    def box(self, x0: float, y0: float, x1: float, y1: float, z0: float, z1: float, material: str,
            obstacle: bool = True) -> None:
        self.geom("box", ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2),
                  ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2), material)
        if obstacle:
            self.obstacles.append(Box2D(x0, y0, x1, y1))

    def fits(self, x0: float, y0: float, x1: float, y1: float, margin: float) -> bool:
        """Whether an AABB stays clear of every footprint and doorway keep-out zone."""
        for o in self.obstacles:
            ox0, oy0, ox1, oy1 = ((o.xmin, o.ymin, o.xmax, o.ymax) if isinstance(o, Box2D)
                                  else (o.x - o.r, o.y - o.r, o.x + o.r, o.y + o.r))
            if x0 - margin < ox1 and ox0 < x1 + margin and y0 - margin < oy1 and oy0 < y1 + margin:
                return False
        for kx, ky, kr in self.keep_out:
            if np.hypot(max(x0 - kx, 0, kx - x1), max(y0 - ky, 0, ky - y1)) < kr:
                return False
        return True


def _wall(b: _Builder, vertical: bool, line: float, a: float, c: float, door: bool, ceiling: float,
          material: str, door_h: float) -> None:
    """Wall on x = line (vertical) or y = line spanning a..c, optionally with a doorway."""
    h = WALL_T / 2
    spans = [(a, c)]
    if door:
        width = min(float(b.rng.uniform(0.9, 1.3)), (c - a) - 0.5)
        mid = float(b.rng.uniform(a + 0.25 + width / 2, c - 0.25 - width / 2))
        spans = [(a, mid - width / 2), (mid + width / 2, c)]
        x0, y0, x1, y1 = ((line - h, mid - width / 2, line + h, mid + width / 2) if vertical
                          else (mid - width / 2, line - h, mid + width / 2, line + h))
        if ceiling - door_h > 0.05:
            b.box(x0, y0, x1, y1, door_h, ceiling, material, obstacle=False)  # lintel
        for s in (-0.6, 0.6):
            b.keep_out.append((line + s, mid, 0.55) if vertical else (mid, line + s, 0.55))
    for s0, s1 in spans:
        if s1 - s0 > 1e-3:
            if vertical:
                b.box(line - h, s0, line + h, s1, 0.0, ceiling, material)
            else:
                b.box(s0, line - h, s1, line + h, 0.0, ceiling, material)


def _furnish(b: _Builder, cell: Box2D, obj_mats: list[str]) -> None:
    """Scatter furniture in one walkable cell."""
    rng = b.rng
    area = (cell.xmax - cell.xmin) * (cell.ymax - cell.ymin)
    count = int(rng.integers(1, 2 + min(5, int(area / 5))))
    inset = WALL_T / 2 + 0.05
    x_lo, y_lo, x_hi, y_hi = cell.xmin + inset, cell.ymin + inset, cell.xmax - inset, cell.ymax - inset
    covered = 0.0
    for _ in range(count):
        kind = rng.choice(["box", "table", "cylinder", "sphere"], p=[0.35, 0.2, 0.25, 0.2])
        mat = obj_mats[int(rng.integers(len(obj_mats)))]
        if kind in ("box", "table"):
            hx, hy = rng.uniform(0.15, 0.65, 2)
        else:
            r = float(rng.uniform(0.12, 0.4))
            hx = hy = r
        if x_hi - x_lo < 2 * hx + 0.1 or y_hi - y_lo < 2 * hy + 0.1 or covered + 4 * hx * hy > 0.25 * area:
            continue
        for _try in range(20):
            x = float(rng.uniform(x_lo + hx, x_hi - hx))
            y = float(rng.uniform(y_lo + hy, y_hi - hy))
            if b.fits(x - hx, y - hy, x + hx, y + hy, 0.05):
                break
        else:
            continue
        covered += 4 * hx * hy
        top = 0.0
        if kind == "box":
            top = float(rng.uniform(0.3, 1.8))
            b.box(x - hx, y - hy, x + hx, y + hy, 0.0, top, mat)
        elif kind == "table":
            top = float(rng.uniform(0.45, 0.9))
            b.box(x - hx, y - hy, x + hx, y + hy, top - 0.04, top, mat)
            leg = obj_mats[int(rng.integers(len(obj_mats)))]
            for sx in (-1, 1):
                for sy in (-1, 1):
                    b.geom("cylinder", (x + sx * (hx - 0.05), y + sy * (hy - 0.05), (top - 0.04) / 2),
                           (0.03, (top - 0.04) / 2), leg)
        elif kind == "cylinder":
            hh = float(rng.uniform(0.15, 0.9))
            b.geom("cylinder", (x, y, hh), (hx, hh), mat)
            b.obstacles.append(Circle2D(x, y, hx))
        else:
            b.geom("sphere", (x, y, hx), (hx,), mat)
            b.obstacles.append(Circle2D(x, y, hx))
        if top > 0 and top < 1.3 and rng.uniform() < 0.5:  # something standing on it
            m2 = obj_mats[int(rng.integers(len(obj_mats)))]
            r = float(min(hx, hy) * rng.uniform(0.3, 0.8))
            if rng.uniform() < 0.5:
                b.geom("sphere", (x, y, top + r), (r,), m2)
            else:
                b.geom("box", (x, y, top + r), (r, r * rng.uniform(0.5, 1.0), r), m2)
    if rng.uniform() < 0.4:  # a rug: walkable, so no footprint
        w, d = (cell.xmax - cell.xmin) * rng.uniform(0.3, 0.7), (cell.ymax - cell.ymin) * rng.uniform(0.3, 0.7)
        cx, cy = (cell.xmin + cell.xmax) / 2, (cell.ymin + cell.ymax) / 2
        b.geom("box", (cx, cy, 0.004), (w / 2, d / 2, 0.004), obj_mats[int(rng.integers(len(obj_mats)))])


def _layout(rng: np.random.Generator, kind: str) -> tuple[list[float], list[float], set[Any], set[Any]]:
    """(column widths, row depths, walkable cells, solid cells)."""
    if kind == "room":
        if rng.uniform() < 0.5:
            return [float(rng.uniform(3.0, 8.0))], [float(rng.uniform(3.0, 8.0))], {(0, 0)}, set()
        xs, ys = _sizes(rng, 2, 1.8, 4.5, 0.0), _sizes(rng, 2, 1.8, 4.5, 0.0)
        cells = {(i, j) for i in range(2) for j in range(2)}
        corner = {[(0, 0), (0, 1), (1, 0), (1, 1)][int(rng.integers(4))]}
        return xs, ys, cells - corner, corner
    nx, ny = int(rng.integers(2, 4)), int(rng.integers(1, 4))
    xs, ys = _sizes(rng, nx, 2.5, 5.0, 0.35), _sizes(rng, ny, 2.5, 5.0, 0.35)
    cells = {(i, j) for i in range(nx) for j in range(ny)}
    solid: set[tuple[int, int]] = set()
    if len(cells) >= 4 and rng.uniform() < 0.5:
        pick = sorted(cells)[int(rng.integers(len(cells)))]
        if _connected(cells - {pick}):
            solid = {pick}
    return xs, ys, cells - solid, solid


def make_world(seed: int, kind: str = "room") -> World:
    """Build the world for (seed, kind); the same arguments always give the same world."""
    if kind not in KINDS:
        raise WorldError(f"unknown world kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WorldError(f"world seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    b = _Builder(rng)
    xs, ys, cells, solid = _layout(rng, kind)
    X, Y = np.concatenate([[0.0], np.cumsum(xs)]), np.concatenate([[0.0], np.cumsum(ys)])
    W, D = float(X[-1]), float(Y[-1])
    ceiling = float(rng.uniform(2.4, 3.5))
    door_h = float(rng.uniform(*DOOR_HEIGHT))
    reflect = float(rng.uniform(0.1, 0.35)) if rng.uniform() < 0.35 else 0.0
    floor_mat = b.lib.add(rng, "floor", reflectance=reflect)
    ceil_mat = b.lib.add(rng, "ceiling")
    wall_mats = [b.lib.add(rng, "wall") for _ in range(int(rng.integers(1, 4)))]
    obj_mats = [b.lib.add(rng, "object") for _ in range(int(rng.integers(3, 7)))]

    def wall() -> str:
        return wall_mats[int(rng.integers(len(wall_mats)))]


    b.geom("plane", (W / 2, D / 2, 0.0), (W / 2, D / 2, 0.1), floor_mat)
    b.geom("box", (W / 2, D / 2, ceiling + 0.05), (W / 2, D / 2, 0.05), ceil_mat)
    t = WALL_T
    for x0, y0, x1, y1 in ((0, 0, W, t), (0, D - t, W, D), (0, 0, t, D), (W - t, 0, W, D)):
        b.box(x0, y0, x1, y1, 0.0, ceiling, wall())
    for i, j in sorted(solid):
        b.box(X[i], Y[j], X[i + 1], Y[j + 1], 0.0, ceiling, wall())
    if kind == "multiroom":
        tree = _spanning_tree(rng, cells)
        for i, j in sorted(cells):
            for n, vertical in (((i + 1, j), True), ((i, j + 1), False)):
                if n not in cells:
                    continue
                linked = frozenset(((i, j), n)) in tree
                if rng.uniform() < 0.15:
                    continue  # open plan: no wall at all
                door = linked or rng.uniform() < 0.4
                if vertical:
                    _wall(b, True, float(X[i + 1]), float(Y[j]), float(Y[j + 1]), door, ceiling, wall(), door_h)
                else:
                    _wall(b, False, float(Y[j + 1]), float(X[i]), float(X[i + 1]), door, ceiling, wall(), door_h)
    rooms = tuple(Box2D(float(X[i]), float(Y[j]), float(X[i + 1]), float(Y[j + 1])) for i, j in sorted(cells))
    for room in rooms:
        _furnish(b, room, obj_mats)

    lights = []
    order = [rooms[k] for k in rng.permutation(len(rooms))][:MAX_LIGHTS]
    for k, room in enumerate(order):
        lx = float(rng.uniform(room.xmin + 0.3 * (room.xmax - room.xmin), room.xmax - 0.3 * (room.xmax - room.xmin)))
        ly = float(rng.uniform(room.ymin + 0.3 * (room.ymax - room.ymin), room.ymax - 0.3 * (room.ymax - room.ymin)))
        tint = 0.75 + 0.25 * random_colour(rng, (0.0, 0.4), (0.8, 1.0))
        power = rng.uniform(0.5, 0.9) * (1.0 if len(order) == 1 else 0.8)
        d = rng.uniform(-0.3, 0.3, 2)
        lights.append(
            f'<light name="light{k}" pos="{_f(lx, ly, ceiling - 0.12)}" dir="{_f(d[0], d[1], -1.0)}" '
            f'cutoff="{rng.uniform(60, 80):.2f}" exponent="{rng.uniform(0.5, 3):.2f}" '
            f'castshadow="{"true" if k < SHADOW_LIGHTS else "false"}" diffuse="{_f(*(power * tint))}" '
            f'specular="{_f(0.2, 0.2, 0.2)}" attenuation="{_f(1.0, 0.0, 0.0)}"/>')
    ambient = rng.uniform(0.2, 0.4)
    extent = float(np.hypot(W, D) + ceiling)
    xml = f"""<mujoco model="rtfm_{kind}_{seed}">
  <compiler angle="radian"/>
  <statistic extent="{extent:.4f}" center="{_f(W / 2, D / 2, ceiling / 2)}"/>
  <visual>
    <global offwidth="640" offheight="640"/>
    <quality shadowsize="1024"/>
    <headlight ambient="{_f(ambient, ambient, ambient)}" diffuse="0 0 0" specular="0 0 0"/>
    <map znear="{0.02 / extent:.6f}" zfar="{(2 * extent + 2) / extent:.6f}"/>
  </visual>
  <asset>
{b.lib.xml()}
  </asset>
  <worldbody>
    {chr(10).join(lights)}
    {chr(10).join(b.geoms)}
    <camera name="view" mode="fixed" pos="{_f(W / 2, D / 2, 1.0)}" quat="1 0 0 0" fovy="90"/>
  </worldbody>
</mujoco>
"""
    return World(seed=seed, kind=kind, bounds=(0.0, 0.0, W, D), obstacles=tuple(b.obstacles), ceiling=ceiling,
                 xml=xml, assets=dict(b.lib.assets), rooms=rooms)
