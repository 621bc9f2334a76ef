"""`rtfm serve`: walk a world in the browser (arguments checked before the model loads)."""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rtfm_ros.options import add_options, from_options, setting

if TYPE_CHECKING:
    from rtfm_ros.serve.server import Hub

DEFAULT_PORT = 8080


@dataclass(frozen=True)
class ServeOptions:
    """What `rtfm serve` serves, checked when made (before the model loads); its command-line
    options are made from these fields (rtfm_ros.options)."""

    world: str | None = setting(None, "start from a saved world (never changed: the server works on a copy)")
    seed_images: tuple[str, ...] = setting((), cli=False)  # --seed-images PATH...
    demo_world: int | None = setting(None, "a procedural MuJoCo room (the default, with the demo's held-out seed)",
                                     metavar="SEED")
    host: str = setting("127.0.0.1", "address to bind (default 127.0.0.1; others need the token)")
    port: int = setting(DEFAULT_PORT, f"port (default {DEFAULT_PORT}; 0: any free port)")
    width: int = setting(128, "view width in pixels")
    height: int = setting(128, "view height in pixels")
    fov: float = setting(90.0, "horizontal field of view of the view (degrees)")
    seed_fov: float = setting(60.0, "horizontal field of view of a single seed photo (degrees; uploads may give "
                                    "their own)")
    save: str | None = setting(None, "the world file the page's Save button writes (default: saving is off)")
    max_upload_mb: float = setting(32.0, "largest photo upload, in MiB")
    ram_budget_mb: float = setting(1024.0, "RAM for the world's pixels, and as much for its prepared frames (MiB); "
                                           "remembered views beyond it are paged to a scratch file, none is lost")
    checkpoint: str | None = setting(None, "model checkpoint (default: the bundled model)")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N")
    threads: int = setting(0, "torch CPU threads (default: all cores but one)")

    def __post_init__(self) -> None:
        """Clear errors for bad values, before anything slow happens."""
        from rtfm_ros.geometry import MAX_VIEW_PIXELS

        for name in ("width", "height"):
            if not 8 <= getattr(self, name) <= 4096:
                raise ValueError(f"--{name} must be in 8..4096, got {getattr(self, name)}")
        if self.width * self.height > MAX_VIEW_PIXELS:
            raise ValueError(f"--width x --height is {self.width * self.height} pixels; a view may have "
                             f"{MAX_VIEW_PIXELS}")
        for name in ("fov", "seed_fov"):
            v = getattr(self, name)
            if not math.isfinite(v) or not 0 < v < 180:
                raise ValueError(f"--{name.replace('_', '-')} must be in (0, 180) degrees, got {v}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in 0..65535, got {self.port}")
        if not 0 < self.max_upload_mb <= 1024:
            raise ValueError(f"--max-upload-mb must be in (0, 1024], got {self.max_upload_mb}")
        if not 1 <= self.ram_budget_mb <= 1 << 20:
            raise ValueError(f"--ram-budget-mb must be in 1..{1 << 20}, got {self.ram_budget_mb}")
        if sum(x is not None and x != () for x in (self.world, self.seed_images, self.demo_world)) > 1:
            raise ValueError("--world, --seed-images and --demo-world are exclusive: give at most one")
        if self.world is not None and not Path(self.world).exists():
            raise FileNotFoundError(f"world {self.world} not found")
        missing = [p for p in self.seed_images if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(f"seed images not found: {', '.join(missing)}")
        if self.save is not None:
            save = Path(self.save)
            if save.is_dir() or not save.parent.is_dir():
                raise ValueError(f"--save {save}: must name a file in an existing folder")


def run(args: argparse.Namespace) -> int:
    opt = from_options(ServeOptions, args, seed_images=tuple(args.seed_images or ()))
    import torch

    from rtfm_ros.geometry import PinholeCamera
    from rtfm_ros.runtime import serving_threads
    from rtfm_ros.serve.seeding import demo_frames, frames_from_paths
    from rtfm_ros.serve.server import Hub, bind, describe_url, is_loopback
    from rtfm_ros.serve.shared import SharedWorld
    from rtfm_ros.sim.worlds import DEMO_WORLD_SEED
    from rtfm_ros.world import WorldModel

    torch.set_num_threads(opt.threads or serving_threads())
    sock = bind(opt.host, opt.port)  # before the slow part: a taken port fails at once
    token = None if is_loopback(opt.host) else secrets.token_urlsafe(18)
    wm = WorldModel.load(opt.checkpoint, device=opt.device, ram_budget_bytes=int(opt.ram_budget_mb * 2**20))
    camera = PinholeCamera.from_fov(opt.width, opt.height, opt.fov)
    with tempfile.TemporaryDirectory(prefix="rtfm-serve-") as scratch:
        world = SharedWorld(wm, camera, Path(scratch), Path(opt.save) if opt.save else None)
        if opt.world is not None:
            world.open_world(Path(opt.world))
        elif opt.seed_images:
            world.seed(frames_from_paths(list(opt.seed_images), opt.seed_fov))
        else:
            seed = DEMO_WORLD_SEED if opt.demo_world is None else opt.demo_world
            world.seed(demo_frames(seed, camera))
        hub = Hub(world, fov=opt.fov, seed_fov=opt.seed_fov, max_upload_bytes=int(opt.max_upload_mb * 2**20),
                  token=token)
        port = sock.getsockname()[1]
        print(f"rtfm serve: {world.frames()} frames in memory, {camera.width}x{camera.height} views on {wm.device}")
        if token:
            print(f"rtfm serve: listening on {opt.host}:{port}; the token is needed from every machine")
        print(f"rtfm serve: open {describe_url(opt.host, port, token)}  (Ctrl+C stops)", flush=True)
        asyncio.run(_serve_until_signal(hub, sock))
        world.close()
    print("rtfm serve: stopped", flush=True)
    return 0


async def _serve_until_signal(hub: Hub, sock: socket.socket) -> None:
    from rtfm_ros.serve.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(hub, sock, stop)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="walk a world in the browser: live view, memory map, seeding from photos")
    src = p.add_mutually_exclusive_group()
    add_options(src, ServeOptions, ["world"])
    src.add_argument("--seed-images", nargs="+", metavar="PATH",
                     help="one photo (placed at the origin), or photos with their transforms.json, or its folder")
    add_options(src, ServeOptions, ["demo_world"])
    add_options(p, ServeOptions, ["host", "port", "width", "height", "fov", "seed_fov", "save", "max_upload_mb",
                                  "ram_budget_mb", "checkpoint", "device", "threads"])
    p.set_defaults(func=run)
