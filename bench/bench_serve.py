"""`rtfm serve` in headless Chromium over loopback: key press to new frame on screen, and frames/s per tab.

For each view size an `rtfm serve` process (demo world) is started and a headless Chromium
opens the page. Key to frame: a key goes down (through ChromeDriver, as a person's would), the
page stamps the keydown event, and stops the clock one animation frame after drawing the first
frame rendered at a pose sent after it (the page's own figure, `window.rtfm.latencies`). The
camera is idle before each press. Frames/s: every tab holds the turn key (a keydown dispatched
in the page) and counts the frames it draws; with four tabs the renders share one model.

Usage: .venv/bin/python bench/bench_serve.py [--sizes 128x128,320x240] [--presses 20] [--seconds 8]
Prints a markdown table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import machine

ROOT = Path(__file__).resolve().parent.parent
HOLD_TURN = "window.dispatchEvent(new KeyboardEvent('keydown', {code: 'ArrowLeft', key: 'ArrowLeft'}))"
RELEASE_TURN = "window.dispatchEvent(new KeyboardEvent('keyup', {code: 'ArrowLeft', key: 'ArrowLeft'}))"


def start_server(width: int, height: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "rtfm_ros.cli", "serve", "--port", "0", "--width", str(width),
                             "--height", str(height)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if m := re.search(r"open (http://\S+)", line):
            return proc, m.group(1)
    raise RuntimeError(f"rtfm serve exited with {proc.wait()} before printing its URL")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,800",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)


def until(driver, expr: str, timeout: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.01).until(lambda d: d.execute_script(f"return {expr}"))


def key_to_frame(driver, presses: int) -> tuple[list[float], list[float]]:
    from selenium.webdriver.common.action_chains import ActionChains

    latencies, renders = [], []
    for i in range(presses):
        n = driver.execute_script("return window.rtfm.latencies.length")
        ActionChains(driver).key_down("w" if i % 2 else "s").pause(0.05).key_up("w" if i % 2 else "s").perform()
        until(driver, f"window.rtfm.latencies.length > {n}")
        until(driver, "window.rtfm.lastHeader.seq === window.rtfm.seqSent()")  # idle again
        time.sleep(0.2)
        latencies.append(driver.execute_script("return window.rtfm.latencies.at(-1)"))
        renders.append(driver.execute_script("return window.rtfm.lastHeader.ms"))
    return latencies, renders


def frames_per_second(driver, tabs: list[str], seconds: float) -> tuple[list[float], float, int]:
    """Frames/s drawn by each tab while all hold the turn key; the server's median render time; frames in memory."""
    def each(js: str) -> list:
        out = []
        for t in tabs:
            driver.switch_to.window(t)
            out.append(driver.execute_script(js))
        return out

    each(HOLD_TURN)
    time.sleep(1.0)  # warm-up
    each("window.rtfm.renderMs.length = 0")
    t0, before = time.perf_counter(), each("return window.rtfm.framesDrawn")
    time.sleep(seconds)
    after, dt = each("return window.rtfm.framesDrawn"), time.perf_counter() - t0
    ms = [m for tab in each("return window.rtfm.renderMs") for m in tab]
    frames = max(each("return window.rtfm.lastHeader.frames"))
    each(RELEASE_TURN)
    return [(a - b) / dt for a, b in zip(after, before)], statistics.median(ms), frames


def run_size(width: int, height: int, presses: int, seconds: float) -> dict:
    proc, url = start_server(width, height)
    driver = browser()
    try:
        driver.get(url)
        until(driver, "window.rtfm && window.rtfm.framesDrawn > 0")
        lat, renders = key_to_frame(driver, presses)
        one, ms1, _ = frames_per_second(driver, [driver.current_window_handle], seconds)
        tabs = [driver.current_window_handle]
        for _ in range(3):
            driver.switch_to.new_window("window")
            driver.get(url)
            until(driver, "window.rtfm && window.rtfm.framesDrawn > 0")
            tabs.append(driver.current_window_handle)
        four, ms4, frames = frames_per_second(driver, tabs, seconds)
    finally:
        driver.quit()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    q = statistics.quantiles(lat, n=10) if len(lat) >= 2 else [lat[0]] * 9
    return {"size": f"{width}x{height}", "lat_median": statistics.median(lat), "lat_p90": q[8],
            "render_median": statistics.median(renders), "fps1": one[0], "fps4": four,
            "ms1": ms1, "ms4": ms4, "frames": frames}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128x128,320x240")
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    sizes = []
    for s in args.sizes.split(","):
        try:
            w, h = map(int, s.lower().split("x"))
        except ValueError:
            ap.error(f"--sizes: {s!r} is not WIDTHxHEIGHT")
        sizes.append((w, h))
    if args.presses < 1 or args.seconds <= 0:
        ap.error("--presses must be >= 1 and --seconds > 0")
    import selenium

    chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.split()[1]
    print(machine(f"Chromium {chromium}, selenium {selenium.__version__}"))
    print(f"command: bench/bench_serve.py --sizes {args.sizes} --presses {args.presses} --seconds {args.seconds:g}\n")
    print("| view | key to frame on screen, median | p90 | render at the key press | frames/s, 1 tab (render) "
          "| frames/s, 4 tabs: each | total (render) | frames in memory at the end |")
    print("|---|---|---|---|---|---|---|---|")
    for w, h in sizes:
        r = run_size(w, h, args.presses, args.seconds)
        each = " / ".join(f"{f:.1f}" for f in r["fps4"])
        print(f"| {r['size']} | {r['lat_median']:.0f} ms | {r['lat_p90']:.0f} ms | {r['render_median']:.0f} ms "
              f"| {r['fps1']:.1f} ({r['ms1']:.0f} ms) | {each} | {sum(r['fps4']):.1f} ({r['ms4']:.0f} ms) "
              f"| {r['frames']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
