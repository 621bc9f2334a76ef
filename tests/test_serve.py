"""`rtfm serve` in a real headless Chromium: keys move the view, the map grows, tabs share one world.

One server process (demo world, 96x64 views, bound to 0.0.0.0 so the token path is the one the
page uses) serves every test in order; the last test stops it with SIGINT. Raw WebSocket clients
(aiohttp) check the protocol edges a page never sends.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import photo_png

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "serve_screenshot.png"  # rewritten only with RTFM_UPDATE_SCREENSHOT=1
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
UPLOAD_LIMIT_MB = 0.25


def _no_browser_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make setup installs it)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium / chromedriver not found (make setup installs Debian's chromium and chromium-driver)"
    return None


class Server:
    """An `rtfm serve` process and the URL it printed."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "rtfm_ros.cli", "serve", "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self._url = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._url.wait(120):
            self.proc.kill()
            raise RuntimeError("server did not print its URL:\n" + "".join(self.lines))
        url = next(m.group(1) for line in self.lines if (m := re.search(r"open (http://\S+)", line)))
        self.url = url
        self.base = url.split("?")[0].rstrip("/")
        self.token = url.split("token=")[1] if "token=" in url else None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "open http://" in line:
                self._url.set()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def ws_url(self) -> str:
        return self.base + "/ws" + (f"?token={self.token}" if self.token else "")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    if (reason := _no_browser_reason()) is not None:
        pytest.skip(reason)
    save = tmp_path_factory.mktemp("serve") / "walked.rtfm"
    srv = Server("--host", "0.0.0.0", "--width", "96", "--height", "64", "--save", str(save),
                 "--max-upload-mb", str(UPLOAD_LIMIT_MB), "--threads", "1")
    srv.save_path = save
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait()


@pytest.fixture(scope="module")
def browser(server: Server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,900",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows"):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    except Exception as exc:  # noqa: BLE001 - a browser that is installed but cannot start is a failure, not a skip
        pytest.fail(f"headless Chromium did not start: {exc}")
    driver.get(server.url)
    wait_js(driver, "window.rtfm && window.rtfm.framesDrawn > 0")
    yield driver
    driver.quit()


def wait_js(driver, expr: str, timeout: float = 20):
    """Wait for a JS condition; on timeout say what the page shows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(f"return {expr}"))
    except TimeoutException:
        state = driver.execute_script("""const r = window.rtfm || {}; return {status: document.getElementById('status')
            .textContent, drawn: r.framesDrawn, header: r.lastHeader, sent: r.seqSent && r.seqSent(),
            rows: r.mapRows && r.mapRows(), notices: r.notices, closed: r.closed};""")
        raise AssertionError(f"timed out waiting for {expr}; page: {state}") from None


def hold(driver, key: str, seconds: float) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).key_down(key).pause(seconds).key_up(key).perform()


def canvas(driver, el: str = "view") -> str:
    return driver.execute_script(f"return document.getElementById('{el}').toDataURL('image/png')")


def test_cli_checks_arguments_before_loading_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from rtfm_ros.cli import build_parser, main

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert main(["serve", "--width", "5000", "--port", "0"]) == 2
    assert "--width must be in 8..4096" in capsys.readouterr().err
    assert main(["serve", "--world", "/nonexistent/world.rtfm"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["serve", "--fov", "190"]) == 2
    assert main(["serve", "--width", "4096", "--height", "4096"]) == 2
    assert "pixels; a view may have" in capsys.readouterr().err
    assert main(["serve", "--seed-images", "/nonexistent/photo.jpg"]) == 2
    assert "seed images not found" in capsys.readouterr().err


def test_keys_move_the_view_and_the_map_gains_frustums(server: Server, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    assert server.token and len(server.token) >= 16, "a server off loopback prints a token"
    first = browser.execute_script("return window.rtfm.lastHeader")
    assert (first["w"], first["h"]) == (96, 64) and first["mime"] == "image/jpeg"
    before, pose0 = canvas(browser), browser.execute_script("return window.rtfm.pose()")
    rows0, drawn0 = browser.execute_script("return window.rtfm.mapRows()"), browser.execute_script(
        "return window.rtfm.framesDrawn")
    hold(browser, "w", 0.8)
    hold(browser, Keys.ARROW_LEFT, 0.8)
    wait_js(browser, f"window.rtfm.framesDrawn > {drawn0 + 1} && window.rtfm.latencies.length >= 2")
    pose1 = browser.execute_script("return window.rtfm.pose()")
    assert np.linalg.norm(np.subtract(pose1["pos"], pose0["pos"])) > 0.3 and abs(pose1["yaw"] - pose0["yaw"]) > 0.5
    # the last pose sent is the one on screen, and it looks different
    wait_js(browser, "window.rtfm.lastHeader.seq === window.rtfm.seqSent()")
    assert canvas(browser) != before
    wait_js(browser, f"window.rtfm.mapRows() > {rows0}")
    # generated frames are drawn in their own colour on the map
    orange = browser.execute_script("""const c = document.getElementById('map').getContext('2d');
        const d = c.getImageData(0, 0, 320, 320).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] > 90 && d[i+1] < 160 && d[i+2] < 60) n++;
        return n;""")
    assert orange > 0
    assert browser.execute_script("return document.getElementById('frames').textContent") != "-"
    shot = SCREENSHOT if os.environ.get("RTFM_UPDATE_SCREENSHOT") == "1" else tmp_path / "serve.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_depth_and_png_toggles(browser) -> None:
    colour = canvas(browser)
    browser.find_element("id", "depth").click()
    browser.find_element("id", "png").click()
    wait_js(browser, "window.rtfm.lastHeader.depth && window.rtfm.lastHeader.mime === 'image/png'")
    assert canvas(browser) != colour
    browser.find_element("id", "depth").click()
    wait_js(browser, "!window.rtfm.lastHeader.depth")
    browser.find_element("id", "png").click()
    wait_js(browser, "window.rtfm.lastHeader.mime === 'image/jpeg'")


async def _connect(session, server: Server):
    ws = await session.ws_connect(server.ws_url())
    hello = json.loads((await ws.receive(timeout=20)).data)
    assert hello["type"] == "hello"
    return ws, hello


async def _frames_until(ws, seq: int, timeout: float = 30) -> list[dict]:
    import aiohttp

    frames, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        m = await ws.receive(timeout=end - time.monotonic())
        if m.type == aiohttp.WSMsgType.BINARY:
            n = struct.unpack("<I", m.data[:4])[0]
            frames.append(json.loads(m.data[4:4 + n]))
            if frames[-1]["seq"] >= seq:
                return frames
        elif m.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"socket closed: {m}")
    raise AssertionError(f"no frame for pose {seq}")


def test_latest_pose_wins_and_bad_messages_close_only_their_socket(server: Server, browser, tmp_path: Path) -> None:
    import aiohttp

    async def main() -> list[tuple[str, int, str]]:
        async with aiohttp.ClientSession() as session:
            ws, hello = await _connect(session, server)
            st = hello["start"]
            for i in range(1, 61):  # far faster than any render: only the newest pose may be drawn
                await ws.send_json({"type": "pose", "seq": i, "pos": st["pos"], "yaw": st["yaw"] + 0.02 * i,
                                    "pitch": 0})
            frames = await _frames_until(ws, 60)
            assert frames[-1]["seq"] == 60 and len(frames) <= 6, [f["seq"] for f in frames]
            bad = {"not json": "not JSON", json.dumps({"type": "fly"}): "type must be",
                   json.dumps({"type": "pose", "seq": 1}): "missing fields",
                   '{"type": "pose", "seq": 1, "pos": [0, 0, NaN], "yaw": 0, "pitch": 0}': "finite",
                   json.dumps({"type": "settings", "format": "gif"}): "format",
                   json.dumps({"type": "save", "path": str(tmp_path / "elsewhere.rtfm")}): "unknown fields",
                   "x" * 10000: ""}
            closed = []
            for text, reason in bad.items():
                other, _ = await _connect(session, server)
                await other.send_str(text)
                while (m := await other.receive(timeout=20)).type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    pass
                closed.append((reason, other.close_code, m.extra or ""))
            binary, _ = await _connect(session, server)
            await binary.send_bytes(b"\x00\x01")
            while (m := await binary.receive(timeout=20)).type == aiohttp.WSMsgType.TEXT:
                pass
            closed.append(("binary", binary.close_code, m.extra or ""))
            # the first socket is still served
            await ws.send_json({"type": "pose", "seq": 61, "pos": st["pos"], "yaw": st["yaw"], "pitch": 0})
            assert (await _frames_until(ws, 61))[-1]["seq"] == 61
            return closed

    closed = asyncio.run(main())
    for reason, code, extra in closed:
        if reason == "binary":
            assert code == 1003
        elif reason == "":
            assert code == 1009  # larger than the protocol's messages
        else:
            assert code == 1008 and reason in extra, (reason, code, extra)
    assert not (tmp_path / "elsewhere.rtfm").exists()
    drawn = browser.execute_script("return window.rtfm.framesDrawn")
    hold(browser, "d", 0.3)
    wait_js(browser, f"window.rtfm.framesDrawn > {drawn}")


def test_tabs_have_their_own_cameras_over_one_world(server: Server, browser) -> None:
    from selenium.webdriver.common.keys import Keys

    first = browser.current_window_handle
    browser.switch_to.new_window("window")
    browser.get(server.url)
    wait_js(browser, "window.rtfm.framesDrawn > 0 && window.rtfm.mapRows() > 0")
    second = browser.current_window_handle
    pose_b, rows_b = browser.execute_script("return [window.rtfm.pose(), window.rtfm.mapRows()]")
    browser.switch_to.window(first)
    pose_a = browser.execute_script("return window.rtfm.pose()")
    hold(browser, "s", 0.6)
    hold(browser, Keys.ARROW_RIGHT, 1.2)
    moved = browser.execute_script("return window.rtfm.pose()")
    assert moved != pose_a
    browser.switch_to.window(second)
    wait_js(browser, f"window.rtfm.mapRows() > {rows_b}")  # the other tab's views reached this map
    assert browser.execute_script("return window.rtfm.pose()") == pose_b  # ... but not its camera
    browser.close()
    browser.switch_to.window(first)


def test_save_and_reset(server: Server, browser) -> None:
    from rtfm_ros.memory import FrameMemory

    frames = browser.execute_script("return window.rtfm.lastHeader.frames")
    browser.find_element("id", "save").click()
    wait_js(browser, "window.rtfm.notices.some(n => n.text.startsWith('saved'))")
    with FrameMemory.open(server.save_path, writable=False) as mem:
        assert len(mem) >= frames
    start_rows = 15  # the demo world's seed views
    assert browser.execute_script("return window.rtfm.mapRows()") > start_rows
    browser.find_element("id", "reset").click()
    wait_js(browser, f"window.rtfm.mapRows() <= {start_rows + 1}")


def _upload(server: Server, parts: list[tuple[str, bytes, str]]) -> tuple[int, str]:
    import aiohttp

    async def main() -> tuple[int, str]:
        form = aiohttp.FormData()
        for field, data, name in parts:
            form.add_field(field, data, filename=name)
        async with aiohttp.ClientSession() as s:
            async with s.post(server.base + f"/api/seed?token={server.token}", data=form) as r:
                return r.status, await r.text()

    return asyncio.run(main())


def test_uploads_are_limited_and_validated(server: Server, browser, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(int(UPLOAD_LIMIT_MB * 2**20) + 10_000))
    browser.execute_script("document.getElementById('photos').value = ''")
    browser.find_element("id", "photos").send_keys(str(big))
    browser.find_element("css selector", "#seed button").click()
    wait_js(browser, "window.rtfm.notices.some(n => n.text.includes('413'))")
    status, text = _upload(server, [("photo", b"not an image at all", "x.png")])
    assert status == 400 and "not a readable image" in text
    status, text = _upload(server, [("photo", photo_png(), "a.png"), ("photo", photo_png(seed=1), "b.png")])
    assert status == 400 and "transforms.json" in text
    missing = json.dumps({"camera_angle_x": 1.0, "frames": [{"file_path": "images/c.png",
                                                               "transform_matrix": np.eye(4).tolist()}]})
    status, text = _upload(server, [("photo", photo_png(), "a.png"), ("transforms", missing.encode(), "t.json")])
    assert status == 400 and "not among the photos" in text
    status, text = _upload(server, [("secret", b"../../etc/passwd", "p")])
    assert status == 400 and "unexpected form field" in text
    # still serving
    drawn = browser.execute_script("return window.rtfm.framesDrawn")
    hold(browser, "a", 0.3)
    wait_js(browser, f"window.rtfm.framesDrawn > {drawn}")


def test_seed_from_photos(server: Server, browser, tmp_path: Path) -> None:
    photo = tmp_path / "one.png"
    photo.write_bytes(photo_png(seed=3))
    browser.execute_script("document.getElementById('photos').value = ''")
    browser.find_element("id", "photos").send_keys(str(photo))
    browser.find_element("css selector", "#seed button").click()
    wait_js(browser, "window.rtfm.notices.some(n => n.text.startsWith('seeded a new world with 1 frames'))", 60)
    wait_js(browser, "window.rtfm.lastHeader.frames <= 2 && window.rtfm.mapRows() <= 2")
    T1 = np.eye(4)
    T2 = np.eye(4)
    T2[0, 3] = 0.3
    spec = {"camera_angle_x": 1.0, "frames": [{"file_path": "images/a", "transform_matrix": T1.tolist()},
                                             {"file_path": "./b.png", "transform_matrix": T2.tolist()}]}
    resets = browser.execute_script("return window.rtfm.mapResets")
    status, text = _upload(server, [("photo", photo_png(seed=4), "a.png"), ("photo", photo_png(seed=5), "b.png"),
                                    ("transforms", json.dumps(spec).encode(), "transforms.json")])
    assert status == 200 and json.loads(text)["frames"] == 2, text
    # the tab is sent the new world's map whole: its 2 seeds (and at most the one view it remembers at once)
    wait_js(browser, f"window.rtfm.mapResets > {resets} && window.rtfm.mapRows() <= 3 "
                     "&& window.rtfm.lastHeader.frames <= 3", 30)


def test_token_is_required_and_the_server_stops_cleanly(server: Server, browser) -> None:
    import urllib.error
    import urllib.request

    for path in ("/", "/ws"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.base + path, timeout=10)
        assert err.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.base + "/?token=wrong", timeout=10)
    assert err.value.code == 403
    assert urllib.request.urlopen(server.base + "/static/app.js", timeout=10).status == 200
    assert server.stop(timeout=20) == 0, "".join(server.lines[-20:])  # the bound of a failure: it stops in seconds
    assert "rtfm serve: stopped" in "".join(server.lines)
    assert "Traceback" not in "".join(server.lines)
    wait_js(browser, "window.rtfm.closed !== null")
    assert browser.execute_script("return window.rtfm.closed.code") == 1001

