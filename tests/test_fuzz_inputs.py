"""Hostile files handed to the importers, `--seed-images`, bags and the CLI: decode bombs,
files that are not files, transforms.json fields of the wrong type or absurd value.

Every one must get the caller's own error with the reason (ImportDataError, SeedError,
MessageError, or the CLI's exit status 2 and one line), at once: never a traceback, a hang on a
FIFO, an endless read of a device, or seconds of decoding.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_fuzz import _png_header

from rtfm_ros.data.importers import ImportDataError, import_any
from rtfm_ros.io import bags, messages
from rtfm_ros.serve.seeding import SeedError, frames_from_paths

EYE = np.eye(4).tolist()


def scan_bomb(scans: int = 2000, side: int = 256) -> bytes:
    """A progressive JPEG whose smallest scan is repeated until it has ``scans`` scans (a photo has ~10)."""
    y, x = np.mgrid[0:side, 0:side]
    buf = io.BytesIO()
    Image.fromarray(np.stack([x, y, x ^ y], -1).astype(np.uint8)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    starts = [m.start() for m in re.finditer(rb"\xff\xda", data)] + [data.rindex(b"\xff\xd9")]
    k = min(range(len(starts) - 1), key=lambda k: starts[k + 1] - starts[k])
    scan = data[starts[k]: starts[k + 1]]
    return data[: starts[k]] + scan * (scans - len(starts) + 2) + data[starts[k + 1]:]


def truncated_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()[:400]


BAD_PHOTOS = {
    "empty": (b"", "not a readable image"),
    "text": (b"hello, not an image\n", "not a readable image"),
    "png bomb header": (_png_header(100_000, 100_000), "(larger than 4096|decompression bomb)"),
    "truncated png": (truncated_png(), "not a readable image"),
    "jpeg scan bomb": (scan_bomb(), "scans"),
}


def scene(tmp_path: Path, image: bytes | None = None, file_path: str = "a.png", **fields: object) -> Path:
    """A transforms.json folder with one frame."""
    d = tmp_path / "scene"
    d.mkdir(exist_ok=True)
    if image is not None:
        (d / "a.png").write_bytes(image)
    spec = {"camera_angle_x": 1.0, "frames": [{"file_path": file_path, "transform_matrix": EYE}], **fields}
    (d / "transforms.json").write_text(json.dumps(spec))
    return d


@pytest.mark.parametrize("kind", list(BAD_PHOTOS))
def test_bad_photos_are_refused_before_decoding_by_every_reader(tmp_path: Path, kind: str) -> None:
    data, reason = BAD_PHOTOS[kind]
    d = scene(tmp_path, data)
    t0 = time.perf_counter()
    with pytest.raises(ImportDataError, match=f"frame 0: .*{reason}"):
        import_any(d)
    with pytest.raises(SeedError, match=reason):
        frames_from_paths([str(d)], 60.0)
    msg = bags.typestore().types[messages.COMPRESSED_IMAGE](
        header=messages.header_msg(1, "cam"), format="jpeg", data=np.frombuffer(data, np.uint8))
    with pytest.raises(messages.MessageError, match=reason):
        messages.decode_image(msg, messages.COMPRESSED_IMAGE)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "directory", "symlink loop"])
def test_photo_paths_that_are_no_files_are_refused_at_once(tmp_path: Path, special: str) -> None:
    """A file_path naming a FIFO would block forever, /dev/zero would be read until memory runs out."""
    d = scene(tmp_path, file_path="b.png")
    target = d / "b.png"
    if special == "fifo":
        os.mkfifo(target)
    elif special == "directory":
        target.mkdir()
    elif special == "symlink loop":
        os.symlink(d / "c.png", target)
        os.symlink(target, d / "c.png")
    else:
        scene(tmp_path, file_path=special)
    t0 = time.perf_counter()
    with pytest.raises(SeedError, match="cannot read|not found"):
        frames_from_paths([str(d)], 60.0)
    with pytest.raises(ImportDataError, match="frame 0: .*(cannot read|not found)"):
        import_any(d)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("fields, reason", [
    ({"camera_angle_x": np.pi}, "camera_angle_x must be an angle in \\(0, pi\\)"),
    ({"camera_angle_x": 7.0}, "camera_angle_x must be an angle in \\(0, pi\\)"),
    ({"camera_angle_x": -1.0}, "camera_angle_x must be an angle"),
    ({"fl_x": True}, "fl_x must be a number, got true"),
    ({"fl_x": "500"}, "fl_x must be a number"),
    ({"fl_x": [500]}, "fl_x must be a number"),
    ({"fl_x": 1e300}, "fx=1e\\+300 is no pinhole lens"),
    ({"fl_x": 1e-300}, "fx=1e-300 is no pinhole lens"),
    ({"w": 64.7}, "w must be a whole number"),
    ({"h": None}, "h must be a number"),
    ({"cx": {"a": 1}}, "cx must be a number"),
])
def test_absurd_intrinsics_are_refused_with_the_reason(tmp_path: Path, fields: dict[str, object], reason: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, "PNG")
    d = scene(tmp_path, buf.getvalue(), **fields)
    with pytest.raises(ImportDataError, match=f"frame 0: .*{reason}"):
        import_any(d)


@pytest.mark.parametrize("text, reason", [
    ("[" * 100000, "not valid JSON"),
    ('{"camera_angle_x": 1e400, "frames": []}', "frames"),
    ('{"w": ' + "9" * 5000 + ', "frames": []}', "not valid JSON"),
    ('{"camera_angle_x": 1.0, "w": 1e400, "frames": [{"file_path": "a.png", "transform_matrix": '
     + json.dumps(EYE) + "}]}", "w must be finite"),
    ('{"camera_angle_x": 1.0, "frames": [{"file_path": "a.png", "transform_matrix": {"a": 1}}]}', "transform_matrix"),
    ('{"camera_angle_x": 1.0, "frames": [{"file_path": "a.png", "transform_matrix": [[1, 2], [3]]}]}',
     "transform_matrix"),
    ('{"camera_angle_x": 1.0, "frames": [{"file_path": "a.png", "transform_matrix": [["1", 0, 0, 0], [0, 1, 0, 0], '
     '[0, 0, 1, 0], [0, 0, 0, 1e999]]}]}', "transform_matrix"),
    ("\xff\xfe not utf-8", "not valid JSON"),
])
def test_malformed_transforms_json_is_refused_with_the_reason(tmp_path: Path, text: str, reason: str) -> None:
    d = scene(tmp_path, truncated_png())
    Image.new("RGB", (64, 48)).save(d / "a.png")
    (d / "transforms.json").write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    with pytest.raises(ImportDataError, match=reason):
        import_any(d)


def test_the_cli_says_what_is_wrong_with_a_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """rtfm data import / eval --holdout / replay on files that are empty, no image, no bag, a symlink loop."""
    from rtfm_ros.cli import main

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "noise.mcap").write_bytes(os.urandom(3000))
    (tmp_path / "nested.json").write_text("[" * 100000)
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    bomb = scene(tmp_path, _png_header(60000, 60000))
    for target in ("empty.png", "noise.mcap", "nested.json", "loop1", "scene"):
        for argv in (["data", "import", str(tmp_path / target), "--out", str(tmp_path / "out")],
                     ["eval", "--holdout", str(tmp_path / target)],
                     ["replay", str(tmp_path / target), "--camera-frame", "c", "--seed-topic", "/c",
                      "-o", str(tmp_path / "out")]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err
            assert "error:" in err and "Traceback" not in err and len(err.splitlines()) == 1, (argv, err)
    assert bomb.exists() and not (tmp_path / "out").exists()


def test_one_rotation_tolerance_for_every_way_a_pose_comes_in(tmp_path: Path) -> None:
    """A rotation rounded to 4 decimals is re-orthonormalised whether imported, seeded from disk or
    added to a world; one 1e-2 off is refused everywhere, naming the frame (and file)."""
    from scipy.spatial.transform import Rotation

    from rtfm_ros.geometry import GeometryError, PinholeCamera
    from rtfm_ros.world import WorldModel

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [0.3, -0.2, 1.1]).as_matrix()
    rounded = np.round(T, 4)
    assert np.abs(rounded[:3, :3].T @ rounded[:3, :3] - np.eye(3)).max() > 1e-5
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (50, 60, 70)).save(buf, "PNG")
    d = scene(tmp_path, buf.getvalue())
    spec = json.loads((d / "transforms.json").read_text())
    spec["frames"][0]["transform_matrix"] = rounded.tolist()
    (d / "transforms.json").write_text(json.dumps(spec))
    assert len(import_any(d)) == 1 and len(frames_from_paths([str(d)], 60.0)) == 1
    wm = WorldModel.load()
    cam = PinholeCamera.from_fov(32, 24, 60.0)
    i = wm.add_frame(np.zeros((24, 32, 3), np.uint8), rounded, cam)
    R = wm.memory.pose(i)[:3, :3]
    assert np.abs(R.T @ R - np.eye(3)).max() < 1e-9
    off = rounded.copy()
    off[0, 0] += 1e-2
    with pytest.raises(GeometryError, match="not orthonormal"):
        wm.add_frame(np.zeros((24, 32, 3), np.uint8), off, cam)
    assert len(wm.memory) == 1
    spec["frames"][0]["transform_matrix"] = off.tolist()
    (d / "transforms.json").write_text(json.dumps(spec))
    with pytest.raises(ImportDataError, match=r"transforms.json frame 0: .*not orthonormal"):
        import_any(d)
    with pytest.raises(SeedError, match=r"transforms.json frame 0: .*not orthonormal"):
        frames_from_paths([str(d)], 60.0)


GOOD_K = "[500, 0, 320, 0, 500, 240, 0, 0, 1]"


@pytest.mark.parametrize("field, value, reason", [
    ("camera_matrix", "{rows: 3, cols: 3, data: [five hundred, 0, 320, 0, 500, 240, 0, 0, 1]}", "camera_matrix"),
    ("camera_matrix", "{rows: 3, cols: 3, data: [[500, 0, 320], [0, 500, 240], [0, 0, 1]]}", "camera_matrix"),
    ("camera_matrix", "{rows: 3, cols: 3, data: [.inf, 0, 320, 0, 500, 240, 0, 0, 1]}", "camera_matrix"),
    ("camera_matrix", "{rows: 3, cols: 3, data: [1e308, 0, 320, 0, 1e308, 240, 0, 0, 1]}", "no pinhole lens"),
    ("distortion_coefficients", "{rows: 1, cols: 5, data: [.inf, 0, 0, 0, 0]}", "distortion_coefficients"),
    ("distortion_coefficients", '{rows: 1, cols: 5, data: ["x", 0, 0, 0, 0]}', "distortion_coefficients"),
    ("distortion_coefficients", "{rows: 1, cols: 5, data: [[0], 0, 0, 0, 0]}", "distortion_coefficients"),
    ("image_width", ".inf", "image_width"),
    ("image_width", "640.5", "image_width"),
    ("image_width", "true", "image_width"),
    ("image_height", "[480]", "image_height"),
    ("distortion_model", "[plumb_bob]", "distortion_model"),
])
def test_node_calibration_files_with_wrong_types_are_refused_with_the_reason(
        tmp_path: Path, field: str, value: str, reason: str) -> None:
    from rtfm_ros.camera.lens import CalibrationError, read_calibration

    doc = {"image_width": "640", "image_height": "480", "camera_name": "cam", "distortion_model": "plumb_bob",
           "camera_matrix": f"{{rows: 3, cols: 3, data: {GOOD_K}}}",
           "distortion_coefficients": "{rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}"}
    path = tmp_path / "cal.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in doc.items()))
    assert read_calibration(str(path)).width == 640
    path.write_text("".join(f"{k}: {value if k == field else v}\n" for k, v in doc.items()))
    with pytest.raises(CalibrationError, match=reason):
        read_calibration(str(path))


@pytest.fixture(scope="module")
def empty_world():
    from rtfm_ros.world import WorldModel

    return WorldModel.load()


@pytest.mark.parametrize("kind", ["fifo", "png bomb header", "jpeg scan bomb", "/dev/zero"])
def test_node_seed_images_that_are_bombs_or_no_files_refuse_the_start(tmp_path: Path, kind: str, empty_world) -> None:
    from rtfm_ros.camera.config import NODE_PARAMS, CameraNodeConfig, ConfigError
    from rtfm_ros.camera.node_setup import seed_from_parameters

    path = tmp_path / "seed.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "/dev/zero":
        path = Path("/dev/zero")
    else:
        path.write_bytes(BAD_PHOTOS[kind][0])
    values = {s.name: s.default for s in NODE_PARAMS}
    config = CameraNodeConfig.from_values({**values, "seed_images": [str(path)], "seed_poses": [0, 0, 0, 0, 0, 0, 1]})
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="seed image"):
        seed_from_parameters(empty_world, config, None)
    assert time.perf_counter() - t0 < 2 and len(empty_world.memory) == 0
