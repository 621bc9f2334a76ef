"""`rtfm serve`: walk a world in the browser (arguments checked before the model loads)."""

from __future__ import annotations

import argparse
import asyncio
import math
import secrets
import signal
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rtfm_ros.serve.server import Hub

DEFAULT_PORT = 8080


def check_args(args: argparse.Namespace) -> None:
    """Clear errors for bad values, before anything slow happens."""
    for name in ("width", "height"):
        v = getattr(args, name)
        if not 8 <= v <= 4096:
            raise ValueError(f"--{name} must be in 8..4096, got {v}")
    from rtfm_ros.geometry import MAX_VIEW_PIXELS

    if args.width * args.height > MAX_VIEW_PIXELS:
        raise ValueError(f"--width x --height is {args.width * args.height} pixels; a view may have {MAX_VIEW_PIXELS}")
    for name in ("fov", "seed_fov"):
        v = getattr(args, name)
        if not math.isfinite(v) or not 0 < v < 180:
            raise ValueError(f"--{name.replace('_', '-')} must be in (0, 180) degrees, got {v}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if not 0 < args.max_upload_mb <= 1024:
        raise ValueError(f"--max-upload-mb must be in (0, 1024], got {args.max_upload_mb}")
    if args.world is not None and not Path(args.world).exists():
        raise FileNotFoundError(f"world {args.world} not found")
    missing = [p for p in args.seed_images or [] if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"seed images not found: {', '.join(missing)}")
    if args.save is not None:
        save = Path(args.save)
        if save.is_dir() or not save.parent.is_dir():
            raise ValueError(f"--save {save}: must name a file in an existing folder")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    import torch

    from rtfm_ros.geometry import PinholeCamera
    from rtfm_ros.runtime import serving_threads
    from rtfm_ros.serve.seeding import demo_frames, frames_from_paths
    from rtfm_ros.serve.server import Hub, bind, describe_url, is_loopback
    from rtfm_ros.serve.shared import SharedWorld
    from rtfm_ros.sim.worlds import DEMO_WORLD_SEED
    from rtfm_ros.world import WorldModel

    torch.set_num_threads(args.threads or serving_threads())
    sock = bind(args.host, args.port)  # before the slow part: a taken port fails at once
    token = None if is_loopback(args.host) else secrets.token_urlsafe(18)
    wm = WorldModel.load(args.checkpoint, device=args.device)
    camera = PinholeCamera.from_fov(args.width, args.height, args.fov)
    with tempfile.TemporaryDirectory(prefix="rtfm-serve-") as scratch:
        world = SharedWorld(wm, camera, Path(scratch), Path(args.save) if args.save else None)
        if args.world is not None:
            world.open_world(Path(args.world))
        elif args.seed_images:
            world.seed(frames_from_paths(args.seed_images, args.seed_fov))
        else:
            seed = DEMO_WORLD_SEED if args.demo_world is None else args.demo_world
            world.seed(demo_frames(seed, camera))
        hub = Hub(world, fov=args.fov, seed_fov=args.seed_fov, max_upload_bytes=int(args.max_upload_mb * 2**20),
                  token=token)
        port = sock.getsockname()[1]
        print(f"rtfm serve: {world.frames()} frames in memory, {camera.width}x{camera.height} views on {wm.device}")
        if token:
            print(f"rtfm serve: listening on {args.host}:{port}; the token is needed from every machine")
        print(f"rtfm serve: open {describe_url(args.host, port, token)}  (Ctrl+C stops)", flush=True)
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
    src.add_argument("--world", help="start from a saved world (never changed: the server works on a copy)")
    src.add_argument("--seed-images", nargs="+", metavar="PATH",
                     help="one photo (placed at the origin), or photos with their transforms.json, or its folder")
    src.add_argument("--demo-world", type=int, metavar="SEED",
                     help="a procedural MuJoCo room (the default, with the demo's held-out seed)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need the token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--width", type=int, default=128, help="view width in pixels")
    p.add_argument("--height", type=int, default=128, help="view height in pixels")
    p.add_argument("--fov", type=float, default=90.0, help="horizontal field of view of the view (degrees)")
    p.add_argument("--seed-fov", type=float, default=60.0,
                   help="horizontal field of view of a single seed photo (degrees; uploads may give their own)")
    p.add_argument("--save", help="the world file the page's Save button writes (default: saving is off)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest photo upload, in MiB")
    p.add_argument("--checkpoint", help="model checkpoint (default: the bundled model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: all cores but one)")
    p.set_defaults(func=run)
