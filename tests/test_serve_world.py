"""`rtfm serve`'s world without a browser: seeding from photos on disk, a saved world served from a copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import photo_png

from rtfm_ros.serve.shared import SharedWorld


def test_a_saved_world_is_served_from_a_copy_and_reset_returns_to_it(tmp_path: Path) -> None:
    from rtfm_ros.geometry import PinholeCamera
    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.serve.seeding import SeedError, frames_from_paths, frames_from_photos
    from rtfm_ros.serve.session import Pose
    from rtfm_ros.world import WorldModel

    (tmp_path / "scene" / "images").mkdir(parents=True)
    for i in range(2):
        (tmp_path / "scene" / "images" / f"{i}.png").write_bytes(photo_png(seed=i))
    T = np.eye(4)
    spec = {"camera_angle_x": 1.2, "frames": [{"file_path": f"images/{i}", "transform_matrix": T.tolist()}
                                             for i in range(2)]}
    (tmp_path / "scene" / "transforms.json").write_text(json.dumps(spec))
    seeds = frames_from_paths([str(tmp_path / "scene")], 60.0)
    assert len(seeds) == 2 and seeds[0].rgb.shape == (64, 96, 3)
    assert len(frames_from_paths([str(tmp_path / "scene" / "images" / "0.png")], 60.0)) == 1
    with pytest.raises(SeedError, match="transforms.json"):
        frames_from_paths([str(tmp_path / "scene" / "images" / f"{i}.png") for i in range(2)], 60.0)
    with pytest.raises(SeedError, match="each side"):
        frames_from_photos({"tiny.png": photo_png(4, 4)}, None, 60.0)

    wm = WorldModel.load()
    camera = PinholeCamera.from_fov(96, 64, 90.0)
    world = SharedWorld(wm, camera, tmp_path, save_path=None)
    world.seed(seeds)
    bad = np.full((4, 4), np.nan)
    with pytest.raises(ValueError):
        world.seed([seeds[0], type(seeds[0])(seeds[0].rgb, bad, seeds[0].camera)])
    assert world.frames() == 2 and len(world.map_state[1]) == 2  # refused whole: the world is as it was
    saved = tmp_path / "start.world"
    world.wm.save(saved)  # the world now (seeding made a new one)
    served = SharedWorld(WorldModel.load(), camera, tmp_path / "scratch", save_path=None)
    (tmp_path / "scratch").mkdir()
    assert served.open_world(saved) == 2
    for k in range(3):
        served.render(Pose(k, (0.2 * k, 0.0, 0.5 * k), 0.8 * k, 0.1).matrix(), remember=True, want_depth=k == 1)
    grown = served.frames()
    assert grown > 2 and len(served.map_state[1]) == grown
    assert [r[4] for r in served.map_state[1][:2]] == [0, 0] and served.map_state[1][-1][4] == 2
    with FrameMemory.open(saved, writable=False) as mem:
        assert len(mem) == 2  # the file given on the command line is never written
    generation = served.map_state[0]
    assert served.reset() == 2 and served.map_state[0] == generation + 1 and len(served.map_state[1]) == 2
    with pytest.raises(SeedError, match="--save"):
        served.save()
    served.close()
    world.close()


def test_loopback_server_refuses_other_host_names_and_origins(tmp_path: Path) -> None:
    import asyncio

    import aiohttp
    from aiohttp.test_utils import TestServer

    from rtfm_ros.geometry import PinholeCamera
    from rtfm_ros.serve.seeding import frames_from_photos
    from rtfm_ros.serve.server import Hub, make_app
    from rtfm_ros.world import WorldModel

    world = SharedWorld(WorldModel.load(), PinholeCamera.from_fov(64, 48, 90.0), tmp_path, save_path=None)
    world.seed(frames_from_photos({"p.png": photo_png()}, None, 60.0))
    hub = Hub(world, fov=90.0, seed_fov=60.0, max_upload_bytes=1 << 20, token=None)

    async def main() -> None:
        server = TestServer(make_app(hub), host="127.0.0.1")
        await server.start_server()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(base + "/") as r:
                    assert r.status == 200 and "rtfm" in await r.text()
                async with s.get(base + "/", headers={"Host": f"rebound.example:{server.port}"}) as r:
                    assert r.status == 403 and "not a loopback address" in await r.text()
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await s.ws_connect(base + "/ws", headers={"Origin": "http://evil.example"})
                assert err.value.status == 403
                async with s.post(base + "/api/seed", data=b"x", headers={"Origin": "http://evil.example"}) as r:
                    assert r.status == 403
                async with s.ws_connect(base + "/ws", headers={"Origin": base}) as ws:
                    hello = json.loads((await ws.receive(timeout=10)).data)
                    assert hello["type"] == "hello" and hello["can_save"] is False
                    await ws.send_json({"type": "save"})
                    while (m := json.loads((await ws.receive(timeout=10)).data))["type"] != "notice":
                        pass
                    assert m["level"] == "error" and "--save" in m["text"]
        finally:
            await server.close()

    asyncio.run(main())
    hub.executor.shutdown()
    world.close()
