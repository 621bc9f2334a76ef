"""`rtfm serve` under hostile input: decode bombs, refused uploads, dead clients, malformed fields.

One world (a seeded photo) served in-process by the real aiohttp application; every test talks
to it over real HTTP and WebSocket connections. Each asserts what the server must do instead of
freezing, growing or answering with a traceback: a clear 400 or close reason, the world as it
was, the other tabs still served.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from serve_helpers import photo_png
from test_fuzz_inputs import scan_bomb

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.serve.seeding import frames_from_photos
from rtfm_ros.serve.server import Hub, make_app
from rtfm_ros.serve.shared import SharedWorld

CAMERA = PinholeCamera.from_fov(48, 32, 90.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from rtfm_ros.world import WorldModel

    w = SharedWorld(WorldModel.load(), CAMERA, tmp_path_factory.mktemp("fuzz-serve"), save_path=None)
    w.seed(frames_from_photos({"p.png": photo_png()}, None, 60.0))
    yield w
    w.close()


@pytest.fixture(autouse=True)
def one_photo_world(request: pytest.FixtureRequest) -> None:
    """Each test starts from the one-photo world (a reset costs what the start frames cost)."""
    if "world" in request.fixturenames:
        request.getfixturevalue("world").seed(frames_from_photos({"p.png": photo_png()}, None, 60.0))


def serve(world: SharedWorld, test: Callable[[Any, str, Hub], Awaitable[None]], *, token: str | None = None,
          idle_timeout: float | None = None, **hub_args: Any) -> None:
    """Run ``test(session, base_url, hub)`` against the app over a real socket, with the
    connection limits `rtfm serve` uses (``idle_timeout``: a shorter idle timeout)."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from rtfm_ros.serve.server import CONNECTION_LIMITS

    hub = Hub(world, fov=90.0, seed_fov=60.0, max_upload_bytes=hub_args.pop("max_upload_bytes", 4 << 20),
              token=token, **hub_args)
    limits = dict(CONNECTION_LIMITS)
    if idle_timeout is not None:
        limits["keepalive_timeout"] = idle_timeout

    async def main() -> None:
        server = TestServer(make_app(hub), host="127.0.0.1")
        await server.start_server(**limits)
        try:
            async with aiohttp.ClientSession() as s:
                await test(s, f"http://127.0.0.1:{server.port}", hub)
        finally:
            await server.close()

    try:
        asyncio.run(main())
    finally:
        hub.executor.shutdown()


async def upload(s: Any, base: str, parts: list[tuple[str, bytes, str]], query: str = "") -> tuple[int, str]:
    import aiohttp

    form = aiohttp.FormData()
    for field, data, name in parts:
        form.add_field(field, data, filename=name)
    async with s.post(base + "/api/seed" + query, data=form) as r:
        return r.status, await r.text()


@asynccontextmanager
async def tab(s: Any, base: str, query: str = "") -> AsyncIterator[Any]:
    async with s.ws_connect(base + "/ws" + query) as ws:
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "hello"
        yield ws


async def next_frame(ws: Any, timeout: float = 20) -> dict[str, Any]:
    """The header of the next binary frame (JSON messages before it are skipped)."""
    import struct

    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(msg.data, bytes):
            (n,) = struct.unpack("<I", msg.data[:4])
            header: dict[str, Any] = json.loads(msg.data[4: 4 + n])
            return header


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 120, 150)).save(buf, "PNG")
    return buf.getvalue()


def transforms(names: list[str], positions: list[float] | None = None) -> bytes:
    frames = []
    for i, n in enumerate(names):
        T = np.eye(4)
        T[0, 3] = positions[i] if positions else 0.1 * i
        frames.append({"file_path": n, "transform_matrix": T.tolist()})
    return json.dumps({"camera_angle_x": 1.0, "frames": frames}).encode()


# ------------------------------------------------------------------ decode work
def test_one_big_photo_named_many_times_is_decoded_once_within_the_upload_budget(world: SharedWorld) -> None:
    """16 names of one 1024x1024 PNG (a few KB) would decode 16 full images; a photo named many
    times is decoded once, and the pixels decoded for one upload are bounded."""
    from rtfm_ros.serve.seeding import SeedError

    big = png(1024, 1024)
    frames = frames_from_photos({"big.png": big}, transforms(["big.png"] * 16), 60.0, max_pixels=1 << 21)
    assert len(frames) == 16 and len({id(f.rgb) for f in frames}) == 1  # one decode, within the budget
    three = {f"b{i}.png": png(1024, 1024 - i) for i in range(3)}
    with pytest.raises(SeedError, match="pixels"):
        frames_from_photos(three, transforms(list(three)), 60.0, max_pixels=1 << 21)

    async def test(s: Any, base: str, hub: Hub) -> None:
        t0 = time.perf_counter()
        status, text = await upload(s, base, [*(("photo", d, n) for n, d in three.items()),
                                              ("transforms", transforms(list(three)), "t.json")])
        assert status == 400 and "pixels" in text, text
        assert time.perf_counter() - t0 < 2

    serve(world, test, max_upload_pixels=1 << 21)


def test_a_jpeg_scan_bomb_is_refused_before_decoding(world: SharedWorld) -> None:
    bomb = scan_bomb(2000)  # a photo has about ten

    async def test(s: Any, base: str, hub: Hub) -> None:
        t0 = time.perf_counter()
        status, text = await upload(s, base, [("photo", bomb, "bomb.jpg")])
        assert status == 400 and "scans" in text, text
        assert time.perf_counter() - t0 < 2

    serve(world, test)


# ------------------------------------------------------------------ the world survives
def test_a_refused_upload_leaves_the_explored_world_as_it_was(world: SharedWorld) -> None:
    async def test(s: Any, base: str, hub: Hub) -> None:
        async with tab(s, base) as ws:
            for k in range(4):
                await ws.send_json({"type": "pose", "seq": k + 1, "pos": [0.4 * k, 0.3 * k, 1.0], "yaw": 0.9 * k,
                                    "pitch": 0.0})
                await next_frame(ws)
        explored = world.frames()
        assert explored > 1
        far = transforms(["a.png", "b.png"], positions=[0.0, 1e9])  # the world refuses the second pose
        status, text = await upload(s, base, [("photo", photo_png(seed=1), "a.png"),
                                              ("photo", photo_png(seed=2), "b.png"), ("transforms", far, "t.json")])
        assert world.frames() == explored
        assert status == 400 and "transforms.json frame 1 (b.png)" in text, text

    serve(world, test)


def test_memory_of_a_served_world_stays_within_its_budget(tmp_path: Path) -> None:
    """Endless exploration pages remembered views out beyond the budget (seeded, or opened from
    a world file); none is lost. `rtfm serve` always serves with a budget."""
    from rtfm_ros.serve.command import ServeOptions
    from rtfm_ros.serve.session import Pose
    from rtfm_ros.world import WorldModel

    assert 0 < ServeOptions().ram_budget_mb < 1 << 20
    budget = 64 << 10
    w = SharedWorld(WorldModel.load(ram_budget_bytes=budget), CAMERA, tmp_path, save_path=None)

    def explore(k0: int) -> None:
        for k in range(k0, k0 + 12):
            w.render(Pose(k, (0.5 * k, 0.2 * (k % 3), 1.0), 0.7 * k, 0.0).matrix(), remember=True, want_depth=False)
            assert w.wm.memory.nbytes_pixels <= budget and w.wm.core.cache.nbytes <= budget
        mem = w.wm.memory
        assert len(mem) > 6 and mem.source(0) == "seed"
        assert all(mem.get(i).rgb.size for i in mem)  # paged out, not dropped

    try:
        w.seed(frames_from_photos({"p.png": photo_png()}, None, 60.0))
        explore(0)
        w.wm.save(tmp_path / "walked.rtfm")
        w.open_world(tmp_path / "walked.rtfm")
        explore(100)
        w.reset()
        explore(200)
    finally:
        w.close()


# ------------------------------------------------------------------ sockets
def test_a_closed_clients_queued_messages_are_dropped(world: SharedWorld) -> None:
    """Thousands of queued resets, then a close: the server does not work through them for minutes."""
    resets = []
    real_reset = world.reset

    def counting_reset() -> int:
        resets.append(1)
        return real_reset()

    async def test(s: Any, base: str, hub: Hub) -> None:
        ws = await s.ws_connect(base + "/ws")
        for _ in range(2000):
            await ws.send_str('{"type":"reset"}')
        t0 = time.perf_counter()
        await ws.close()
        await asyncio.sleep(0.5)
        handled = len(resets)
        await asyncio.sleep(0.5)
        assert len(resets) == handled <= 5, f"{len(resets)} resets handled, still handling"
        assert time.perf_counter() - t0 < 3
        async with tab(s, base) as other:  # and the server still serves
            await other.send_json({"type": "pose", "seq": 1, "pos": [0, 0, 1], "yaw": 0, "pitch": 0})
            await next_frame(other)

    world.reset = counting_reset  # type: ignore[method-assign]
    try:
        serve(world, test)
    finally:
        del world.reset


@pytest.mark.parametrize("message, reason", [
    ('{"type": [1]}', "type"),
    ('{"type": "settings", "format": ["jpeg"]}', "format"),
    ('{"type": "settings", "format": {"a": 1}}', "format"),
    ('{"type": "pose", "seq": 1, "pos": [0, 0, 1], "yaw": ' + "9" * 3000 + ', "pitch": 0}', "yaw"),
    ('{"type": "pose", "seq": 1, "pos": [0, 0, 1], "yaw": ' + "9" * 5000 + ', "pitch": 0}', "JSON"),
    ('{"type": "pose", "seq": 1, "pos": [' + "9" * 3000 + ', 0, 1], "yaw": 0, "pitch": 0}', "pos"),
    ('{"type": "pose", "seq": "1", "pos": [0, 0, 1], "yaw": 0, "pitch": 0}', "seq"),
    ('{"type": "pose", "seq": 1, "pos": {"x": 0}, "yaw": 0, "pitch": 0}', "pos"),
    ('{"type": "pose", "seq": 1, "pos": [0, 0, 1], "yaw": 0, "pitch": 0, "1": 2}', "unknown"),
    ("[" * 100000, "JSON"),
])
def test_malformed_fields_close_the_socket_with_a_reason(world: SharedWorld, message: str, reason: str) -> None:
    from aiohttp import WSCloseCode, WSMsgType

    async def test(s: Any, base: str, hub: Hub) -> None:
        async with s.ws_connect(base + "/ws", max_msg_size=0) as ws:
            await ws.receive(timeout=10)
            await ws.send_str(message)
            while (msg := await ws.receive(timeout=10)).type == WSMsgType.TEXT:
                pass
            assert msg.type == WSMsgType.CLOSE, msg
            if len(message) <= 4096:
                assert msg.data == WSCloseCode.POLICY_VIOLATION and reason in msg.extra, (msg.data, msg.extra)
            else:
                assert msg.data == WSCloseCode.MESSAGE_TOO_BIG

    serve(world, test)


# ------------------------------------------------------------------ uploads and requests
def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"camera_angle_x": 1.0, "frames": [{"file_path": "a.png",
                                                              "transform_matrix": np.eye(4).tolist()}]}
    spec.update(over)
    return spec


@pytest.mark.parametrize("text, reason", [
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
    (json.dumps(_spec(frames=[{"file_path": "a.png", "transform_matrix": {"a": 1}}])), "transform_matrix"),
    (json.dumps(_spec(frames=[{"file_path": "a.png", "transform_matrix": [[1, 0], "x"]}])), "transform_matrix"),
    (json.dumps(_spec(frames=[{"file_path": ["a.png"], "transform_matrix": np.eye(4).tolist()}])), "not among"),
    (json.dumps(_spec(fl_x=1e-300)), "fx=1e-300 is no pinhole lens"),
    (json.dumps(_spec(fl_x=True)), "fl_x must be a number"),
    (json.dumps(_spec(w=64.7)), "whole number"),
    (json.dumps(_spec(camera_angle_x=7.0)), "camera_angle_x must be an angle"),
    (json.dumps(_spec(camera_angle_x=np.pi)), "camera_angle_x must be an angle"),
    (json.dumps(_spec()).replace('"camera_angle_x": 1.0', '"w": 1e400, "camera_angle_x": 1.0'), "w must be finite"),
    (json.dumps(_spec()).replace("1.0", "9" * 5000, 1), "not valid JSON"),
    (json.dumps(_spec(frames={"a": 1})), "frames"),
])
def test_bad_transforms_get_a_400_with_the_reason(world: SharedWorld, text: str, reason: str) -> None:
    async def test(s: Any, base: str, hub: Hub) -> None:
        status, body = await upload(s, base, [("photo", photo_png(), "a.png"), ("transforms", text.encode(), "t.json")])
        assert status == 400 and reason in body, body
        assert world.frames() == 1

    serve(world, test)


def test_malformed_multipart_and_tokens_get_clear_answers(world: SharedWorld) -> None:
    """An 8 KiB part header is a 400; a non-ASCII token is a 403 (not a 500 before the check)."""
    async def test(s: Any, base: str, hub: Hub) -> None:
        boundary = "xyz"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{'a' * 8192}.png\""
                f"\r\n\r\n").encode() + photo_png() + f"\r\n--{boundary}--\r\n".encode()
        async with s.post(base + "/api/seed?token=t", data=body,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}) as r:
            assert r.status in (400, 413), await r.text()
        for token in ("\u00e9t\u00e9", "%FF%FE", "t" * 5000):
            async with s.get(base + "/?token=" + token) as r:
                assert r.status == 403, (token, r.status)
        async with s.get(base + "/?token=t") as r:
            assert r.status == 200

    serve(world, test, token="t")


def test_origins_must_match_in_scheme_too_and_idle_connections_are_closed(world: SharedWorld) -> None:
    import socket

    from rtfm_ros.serve.server import CONNECTION_LIMITS

    assert CONNECTION_LIMITS["keepalive_timeout"] <= 60

    async def test(s: Any, base: str, hub: Hub) -> None:
        import aiohttp

        host = base.split("//")[1]
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(base + "/ws", headers={"Origin": f"https://{host}"})
        assert err.value.status == 403
        async with s.ws_connect(base + "/ws", headers={"Origin": f"http://{host}"}):
            pass

        def idle_then_closed() -> float:
            with socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1]))) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request, then silence
                c.settimeout(10)
                t0 = time.monotonic()
                while c.recv(4096):
                    pass
                return time.monotonic() - t0

        assert await asyncio.get_running_loop().run_in_executor(None, idle_then_closed) < 5

    serve(world, test, idle_timeout=1.0)
