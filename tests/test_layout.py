"""The package's shape: no import cycles (type-only and function-level imports included) and no
module past 400 lines (split it where it holds two ideas)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rtfm_ros"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (``from pkg import sub`` names pkg.sub)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= subs if len(subs) == len(node.names) else subs | {node.module}
    return found & set(modules)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_modules_are_at_most_400_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_ros_parameters_are_checked_against_the_frozen_camera_config():
    """Every declared ROS parameter is a field of the frozen, checked camera config and every
    field is declared: the parameter table cannot drift from the dataclass the node runs on."""
    import dataclasses

    from rtfm_ros.camera import config as c

    camera = {s.name for s in c.CAMERA_PARAMS}
    assert camera == {f.name for f in dataclasses.fields(c.CameraParams)} - {"name"}
    node_only = {s.name for s in c.NODE_PARAMS} - camera
    # `cameras` (the names) becomes `named` (one CameraParams each); `top` holds the camera ones
    assert node_only - {"cameras"} == {f.name for f in dataclasses.fields(c.CameraNodeConfig)} - {"top", "named"}
    for cls in (c.CameraParams, c.CameraNodeConfig):
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
