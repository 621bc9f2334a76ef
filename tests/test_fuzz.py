"""Fuzzing: damaged world files, checkpoint configs, poses and cameras, bag messages and bags,
damaged photos and transforms.json fields of any JSON type.

Each property says what every input must get: a result that holds its invariants, or the
module's own error type (never a raw traceback from sqlite3, torch, zstd or Pillow), and the
input it came from unchanged. The fast variants run in the default suite; the slow ones (ten
times the examples) with ``-m slow``. BENCHMARKS.md ("Reliability") lists the input classes.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_world_file import CAM, make_memory, texture

from rtfm_ros.geometry import (
    MAX_PIXELS_PER_CALL,
    MAX_POSITION_M,
    MAX_VIEW_PIXELS,
    GeometryError,
    PinholeCamera,
    check_pixel_budget,
    look_at,
)
from rtfm_ros.io import bags, messages, tf_messages
from rtfm_ros.learn.checkpoint import CheckpointError, config_sha256, load_checkpoint, save_checkpoint
from rtfm_ros.learn.config import ConfigError, DepthPriorConfig
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.memory import FrameMemory, WorldFileError

FAST, SLOW = 25, 250
HC = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]


def both(prop, n_fast: int = FAST, **strategies):
    """(fast test, slow test): ``prop`` over ``strategies`` with n_fast (fixed seed) and 10 x n_fast examples."""
    common = dict(deadline=None, suppress_health_check=HC, database=None)
    fast = settings(max_examples=n_fast, derandomize=True, **common)(given(**strategies)(prop))
    slow = pytest.mark.slow(settings(max_examples=10 * n_fast, **common)(given(**strategies)(prop)))
    return fast, slow


# ------------------------------------------------------------------ world files
_WORLD: dict[str, bytes] = {}


def world_bytes() -> bytes:
    if not _WORLD:
        with tempfile.TemporaryDirectory() as d:
            make_memory(5).save(Path(d) / "w.rtfm")
            _WORLD["w"] = (Path(d) / "w.rtfm").read_bytes()
    return _WORLD["w"]


mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("zero"), st.floats(0, 1), st.integers(1, 4096)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("append"), st.just(0.0), st.integers(1, 5000)),
)


def mutate(data: bytes, muts: list) -> bytes:
    out = bytearray(data)
    for kind, where, amount in muts:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[at] ^= amount
        elif kind == "zero":
            out[at: at + amount] = bytes(len(out[at: at + amount]))
        elif kind == "truncate":
            del out[at:]
        elif kind == "append":
            out += bytes(range(256)) * (amount // 256) + b"\x01" * (amount % 256)
    return bytes(out)


def _damaged_world(muts, check, writable):
    data = mutate(world_bytes(), muts)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "w.rtfm"
        path.write_bytes(data)
        try:
            mem = FrameMemory.open(path, writable=writable, check=check)
        except WorldFileError:
            return
        with mem:
            for i in mem:
                try:
                    frame = mem.get(i)
                except WorldFileError:
                    continue
                assert frame.rgb.shape == (CAM.height, CAM.width, 3)
            try:
                mem.save(Path(d) / "copy.rtfm")
            except WorldFileError:
                return
            copy = FrameMemory.open(Path(d) / "copy.rtfm", check="full")
            assert len(copy) == len(mem) - len(mem.last_save_skipped)
            copy.close()


test_fuzz_damaged_world_files, test_fuzz_damaged_world_files_slow = both(
    _damaged_world, 40, muts=st.lists(mutation, min_size=1, max_size=4),
    check=st.sampled_from(["none", "quick", "full"]), writable=st.booleans())


# ------------------------------------------------------------------ checkpoint configs
SMALL = DepthPriorConfig(name="fuzz", image_size=16, patch=8, dim=32, heads=2, layers=1)
_CKPT: dict[str, Path] = {}

junk = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                 st.none(), st.text(max_size=4), st.lists(st.integers(0, 9), max_size=2),
                 st.integers(1, 300).map(lambda n: json.loads("[" * n + "]" * n)))
field = st.sampled_from(sorted(SMALL.to_dict()) + ["extra_key"])


def checkpoint_dir() -> Path:
    if not _CKPT:
        torch.manual_seed(0)
        _CKPT["p"] = save_checkpoint(Path(tempfile.mkdtemp(prefix="rtfm_fuzz_ckpt_")) / "ckpt", DepthPrior(SMALL))
    return _CKPT["p"]


def _bad_configs(changes, rehash):
    data = {**SMALL.to_dict(), **changes}
    try:
        cfg = DepthPriorConfig.from_dict(data)
    except ConfigError:
        pass
    else:
        assert cfg.min_depth < cfg.max_depth and cfg.dim % cfg.heads == 0 and cfg.image_size % cfg.patch == 0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ckpt"
        shutil.copytree(checkpoint_dir(), path)
        meta = json.loads((path / "config.json").read_text())
        meta["model"] = data
        if rehash:
            try:
                meta["config_sha256"] = config_sha256(data)
            except (ValueError, RecursionError):
                pass
        try:
            text = json.dumps(meta)
        except (ValueError, RecursionError):
            return
        (path / "config.json").write_text(text)
        try:
            model, loaded = load_checkpoint(path)
        except CheckpointError:
            return
        assert model.config == DepthPriorConfig.from_dict(loaded["model"])


test_fuzz_checkpoint_configs, test_fuzz_checkpoint_configs_slow = both(
    _bad_configs, 40, changes=st.dictionaries(field, junk, min_size=1, max_size=3), rehash=st.booleans())


def _damaged_checkpoint(muts, target):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ckpt"
        shutil.copytree(checkpoint_dir(), path)
        (path / target).write_bytes(mutate((path / target).read_bytes(), muts))
        try:
            load_checkpoint(path)
        except CheckpointError:
            pass


test_fuzz_damaged_checkpoints, test_fuzz_damaged_checkpoints_slow = both(
    _damaged_checkpoint, FAST, muts=st.lists(mutation, min_size=1, max_size=3),
    target=st.sampled_from(["config.json", "model.safetensors"]))


# ------------------------------------------------------------------ poses and cameras
coord = st.one_of(st.floats(-20, 20), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([1e39, -1e39, 3.5e38, MAX_POSITION_M, MAX_POSITION_M * 1.0001, 1e308]))


@st.composite
def poses(draw):
    T = look_at([0.0, 0.0, 0.0], [draw(st.floats(-1, 1)), 1.0, draw(st.floats(-1, 1))])
    T[:3, 3] = [draw(coord) for _ in range(3)]
    if draw(st.booleans()):
        i, j = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        T[i, j] = draw(coord)
    return T


def _poses_and_cameras(T, size, f, views):
    mem = make_memory(2)
    try:
        mem.add(texture(3), T, CAM, stamp=1.0, source="seed")
    except ValueError:  # FrameError / GeometryError
        assert len(mem) == 2
    else:
        assert len(mem) == 3 and np.abs(mem.pose(2)[:3, 3]).max() <= MAX_POSITION_M
    try:
        ids = mem.select_context(T, CAM, 4)
    except ValueError:
        pass
    else:
        assert set(ids) <= set(range(len(mem)))
    try:
        cam = PinholeCamera(size[0], size[1], f, f, size[0] / 2, size[1] / 2)
    except GeometryError:
        return
    per_view = cam.width * cam.height
    fits = views >= 1 and per_view <= MAX_VIEW_PIXELS and per_view * views <= MAX_PIXELS_PER_CALL
    try:
        check_pixel_budget(views, cam.width, cam.height)
    except GeometryError:
        assert not fits
    else:
        assert fits


test_fuzz_poses_and_cameras, test_fuzz_poses_and_cameras_slow = both(
    _poses_and_cameras, 60, T=poses(), size=st.tuples(st.integers(-2, 5000), st.integers(-2, 5000)), f=coord,
    views=st.integers(-1, 64))


# ------------------------------------------------------------------ bag messages
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data): a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _encoded(kind: str, w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, format=kind)
    return buf.getvalue()


compressed = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(1, 60000), st.integers(1, 60000)).map(lambda wh: _png_header(*wh)),
    st.tuples(st.sampled_from(["PNG", "JPEG"]), st.integers(1, 40), st.integers(1, 40), st.floats(0, 1)).map(
        lambda a: _encoded(a[0], a[1], a[2])[: max(1, int(len(_encoded(a[0], a[1], a[2])) * (0.5 + a[3] / 2)))]),
)


class _Msg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _bag_messages(data, enc, h, w, step, n):
    try:
        rgb = messages.decode_image(_Msg(data=data, format="png"), messages.COMPRESSED_IMAGE)
    except messages.MessageError:
        pass
    else:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    raw = _Msg(encoding=enc, height=h % 64 if h < 10000 else h, width=w % 64 if w < 10000 else w, step=step,
               data=np.zeros(n, np.uint8))
    try:
        rgb = messages.decode_image(raw, messages.IMAGE)
    except messages.MessageError:
        pass
    else:
        assert rgb.shape == (raw.height, raw.width, 3)


test_fuzz_bag_messages, test_fuzz_bag_messages_slow = both(
    _bag_messages, 60, data=compressed, enc=st.sampled_from(["rgb8", "bgr8", "mono8", "rgba8", "16UC1", "yuv422", ""]),
    h=st.integers(0, 50000), w=st.integers(0, 50000), step=st.integers(0, 400), n=st.integers(0, 3000))


_BAG: dict[str, Path] = {}


def bag_dir() -> Path:
    """A small zstd-compressed MCAP bag with images, CameraInfo and TF."""
    if not _BAG:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        path = Path(tempfile.mkdtemp(prefix="rtfm_fuzz_bag_")) / "bag"
        w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        w.open()
        ts = bags.typestore()
        conns = {t: w.add_connection(t, m, typestore=ts) for t, m in
                 (("/cam/image_raw", messages.IMAGE), ("/cam/camera_info", bags.CAMERA_INFO), ("/tf", bags.TF_MESSAGE))}
        for i in range(30):
            t = 10**9 + i * 10**8
            cam = PinholeCamera.from_fov(16, 16, 60)
            for topic, msg in (("/cam/image_raw", messages.image_msg(np.full((16, 16, 3), i, np.uint8), t, "cam")),
                               ("/cam/camera_info", messages.camera_info_msg(cam, t, "cam")),
                               ("/tf", tf_messages.tf_msg([("map", "cam", look_at([i * 0.1, 0, 0], [0, 1, 0]))], t))):
                w.write(conns[topic], t, ts.serialize_cdr(msg, msg.__msgtype__))
        w.close()
        _BAG["p"] = path
    return _BAG["p"]


def _damaged_bag(muts):
    src = bag_dir()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bag"
        shutil.copytree(src, path)
        mcap = next(path.glob("*.mcap"))
        mcap.write_bytes(mutate(mcap.read_bytes(), muts))
        try:
            reader = bags.open_bag(path)
        except bags.BagError:
            return
        try:
            bags.load_tf(reader)
            bags.read_camera_infos(reader, "/cam/camera_info")
            for conn, _, raw in reader.messages(connections=bags.connections_for(reader, "/cam/image_raw")):
                messages.decode_image(reader.deserialize(raw, conn.msgtype), conn.msgtype)
        except (bags.BagError, messages.MessageError, GeometryError):
            pass
        finally:
            reader.close()


test_fuzz_damaged_bags, test_fuzz_damaged_bags_slow = both(
    _damaged_bag, 40, muts=st.lists(mutation.filter(lambda m: m[0] != "append"), min_size=1, max_size=3))


# ------------------------------------------------------------------ photos and transforms.json
def _photo_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(texture(3)).save(buf, format=fmt, **({"progressive": True} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _damaged_photo(fmt, muts) -> None:
    from rtfm_ros.photo import PhotoError, decode_photo

    data = mutate(_photo_bytes(fmt), muts)
    try:
        rgb = decode_photo(data, "upload.bin")
    except PhotoError as exc:
        assert "upload.bin" in str(exc)
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and 0 < max(rgb.shape[:2]) <= 4096


test_fuzz_damaged_photos, test_fuzz_damaged_photos_slow = both(
    _damaged_photo, fmt=st.sampled_from(["JPEG", "PNG", "WEBP"]), muts=st.lists(mutation, min_size=1, max_size=4))

json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=4), max_leaves=12)
TRANSFORM_FIELDS = ["fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", "file_path"]
matrix_value = st.one_of(st.just(None), json_value,
                         st.lists(st.lists(st.floats(), min_size=3, max_size=5), min_size=3, max_size=5))


def _transforms_fields(fields, matrix) -> None:
    from rtfm_ros.data.importers import ImportDataError, transforms_frames

    rgb = texture(3)
    frame = {"file_path": "a.png", "transform_matrix": np.eye(4).tolist() if matrix is None else matrix, **fields}
    spec = {"camera_angle_x": 1.0, "frames": [frame]}
    try:
        (_, out, T, cam), = transforms_frames(spec, lambda _: rgb, "transforms.json")
    except ImportDataError as exc:
        assert "transforms.json frame 0" in str(exc)
        return
    assert out.shape == (cam.height, cam.width, 3) and np.isfinite(T).all()
    assert np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-6)
    assert 0 < cam.fx < 1e7 and 0 < cam.fy < 1e7


test_fuzz_transforms_fields, test_fuzz_transforms_fields_slow = both(
    _transforms_fields, n_fast=40, matrix=matrix_value,
    fields=st.dictionaries(st.sampled_from(TRANSFORM_FIELDS), json_value, max_size=3))
