"""The aiohttp application: the page, one WebSocket per tab, photo uploads; safe by default.

Renders and image decoding run in a thread pool (the event loop only moves bytes); the world's
lock serializes the model. Off loopback every request but the static files needs the token
printed at start, and on loopback only loopback Host names are served; WebSocket and upload
requests from another origin are refused (a web page the user visits must not drive the server
through their browser).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from rtfm_ros.serve.seeding import MAX_UPLOAD_PIXELS, frames_from_photos
from rtfm_ros.serve.session import ProtocolError, Session, parse_message, pose_dict
from rtfm_ros.serve.shared import SharedWorld

STATIC = Path(__file__).resolve().parent / "static"
MAX_WS_MESSAGE = 4096          # bytes: the page's messages are a few dozen
FIELD_LIMIT = 64               # bytes for the form's non-file fields
IDLE_TIMEOUT = 30.0            # seconds a connection may send nothing (before a request, or mid-upload)
# aiohttp's request handler: an idle or half-open connection (no request, an unfinished header)
# is closed after IDLE_TIMEOUT instead of aiohttp's default hour; headers are bounded.
CONNECTION_LIMITS: dict[str, Any] = {"keepalive_timeout": IDLE_TIMEOUT, "max_line_size": 8190, "max_field_size": 8190,
                                     "max_headers": 64}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Hub:
    """Everything the handlers share: the world, the worker threads and the open tabs."""

    def __init__(self, world: SharedWorld, *, fov: float, seed_fov: float, max_upload_bytes: int,
                 token: str | None, workers: int = 4, max_upload_pixels: int = MAX_UPLOAD_PIXELS) -> None:
        self.world, self.fov, self.seed_fov = world, fov, seed_fov
        self.max_upload_bytes, self.max_upload_pixels, self.token = max_upload_bytes, max_upload_pixels, token
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rtfm-serve")
        self.sessions: set[Session] = set()
        # One upload is read and decoded at a time: its decoding holds one worker thread and its
        # pixel budget, the others keep rendering.
        self.uploading = asyncio.Lock()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def world_grew(self) -> None:
        for s in self.sessions:
            s.wake()

    def start_message(self, kind: str = "start") -> dict[str, Any]:
        w = self.world
        return {"type": kind, "start": pose_dict(w.start_pose), "frames": w.frames()}

    def hello(self) -> dict[str, Any]:
        w = self.world
        return {**self.start_message("hello"), "width": w.camera.width, "height": w.camera.height, "fov": self.fov,
                "can_save": w.save_path is not None, "save_name": w.save_path.name if w.save_path else None,
                "max_upload_bytes": self.max_upload_bytes, "seed_fov": self.seed_fov}

    async def restart_all(self, job: Callable[..., Any], *args: Any) -> Any:
        """Run a job that replaces the world's state, then send every tab back to the start."""
        result = await self.run(job, *args)
        for s in self.sessions:
            s.post(self.start_message())
        return result


HUB = web.AppKey("hub", Hub)


@web.middleware
async def guard(request: web.Request,
                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Token (off loopback) on everything but static files; same origin for sockets and uploads."""
    hub = request.app[HUB]
    if not request.path.startswith("/static/"):
        if hub.token is None and not is_loopback(_host_name(request.host)):
            # Without a token only loopback names are served: a rebound DNS name would otherwise
            # let any web page reach the server through the user's browser.
            raise web.HTTPForbidden(text=f"host {request.host!r} is not a loopback address")
        if hub.token is not None and not hmac.compare_digest(request.query.get("token", "").encode(errors="replace"),
                                                             hub.token.encode()):
            raise web.HTTPForbidden(text="missing or wrong token: open the URL printed by `rtfm serve`")
        origin = request.headers.get("Origin")
        if origin is not None and (request.path == "/ws" or request.method != "GET") \
                and not _same_origin(origin, request):
            raise web.HTTPForbidden(text=f"requests from origin {origin} are not accepted")
    return await handler(request)


def _same_origin(origin: str, request: web.Request) -> bool:
    """Whether ``origin`` is this server as the request reached it: scheme and host:port both
    (a page on https://host:port is another origin than http://host:port)."""
    try:
        o = urlsplit(origin)
    except ValueError:
        return False
    return o.scheme == request.scheme and o.netloc == request.host


def _host_name(host: str) -> str:
    """The name in a Host header, without the port ('[::1]:8080' -> '::1')."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[HUB]
    ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE, heartbeat=30)
    await ws.prepare(request)
    session = Session(ws, hub.world, hub.run, hub.world_grew)
    hub.sessions.add(session)
    session.post(hub.hello())
    sender = asyncio.create_task(session.send_loop())
    try:
        async for msg in ws:
            if ws.closed or request.transport is None or request.transport.is_closing():
                break  # the client is gone: what it had queued is dropped, not worked through
            if msg.type == WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary messages are not accepted")
                break
            if msg.type != WSMsgType.TEXT:
                break
            try:
                m = parse_message(msg.data)
            except ProtocolError as exc:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=str(exc)[:120].encode())
                break
            if m["type"] in ("reset", "save") and not session.may_change_world(m["type"]):
                continue  # a burst of resets or saves: each costs the whole world, at most one per interval
            if m["type"] == "reset":
                await hub.restart_all(hub.world.reset)
            elif m["type"] == "save":
                await _save(hub, session)
            else:
                session.handle(m)
    finally:
        hub.sessions.discard(session)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return ws


async def _save(hub: Hub, session: Session) -> None:
    try:
        path, frames = await hub.run(hub.world.save)
        session.post({"type": "notice", "level": "info", "text": f"saved {frames} frames to {path.name}"})
    except (ValueError, OSError) as exc:
        session.post({"type": "notice", "level": "error", "text": f"save failed: {exc}"})


async def _read_part(part: Any, budget: int, limit: int) -> bytes:
    data = bytearray()
    while chunk := await _in_time(part.read_chunk(1 << 16)):
        data += chunk
        if len(data) > budget:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit - budget + len(data),
                                                text=f"upload larger than {limit} bytes")
    return bytes(data)


async def _in_time(step: Awaitable[Any]) -> Any:
    """An upload's next piece, or 408 when the client sends nothing for IDLE_TIMEOUT seconds."""
    try:
        async with asyncio.timeout(IDLE_TIMEOUT):
            return await step
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"upload stalled: nothing received for {IDLE_TIMEOUT:g} s") from None


async def seed_upload(request: web.Request) -> web.Response:
    """POST multipart: photo (one or more), transforms (optional), fov (optional, degrees)."""
    hub = request.app[HUB]
    limit = hub.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length,
                                            text=f"upload of {request.content_length} bytes; at most {limit}")
    if request.content_type != "multipart/form-data":
        return _bad("expected a multipart/form-data upload")
    if hub.uploading.locked():
        raise web.HTTPServiceUnavailable(text="another upload is being processed; send this one when it is done")
    async with hub.uploading:
        try:
            photos, transforms, fov = await _read_upload(request, hub)
        except (ValueError, HttpProcessingError) as exc:  # a malformed multipart body (an 8 KiB part header), a bad fov
            return _bad(f"malformed upload: {str(exc)[:200]}")
        try:
            frames = await hub.run(frames_from_photos, photos, transforms, fov, hub.max_upload_pixels)
            del photos
            count = await hub.restart_all(hub.world.seed, frames)
        except ValueError as exc:  # SeedError, and frames the world refuses (pose, size)
            return _bad(str(exc))
    return web.json_response({"ok": True, "frames": count})


async def _read_upload(request: web.Request, hub: Hub) -> tuple[dict[str, bytes], bytes | None, float]:
    limit = hub.max_upload_bytes
    photos: dict[str, bytes] = {}
    transforms: bytes | None = None
    fov, used = hub.seed_fov, 0
    reader = await request.multipart()
    while (part := await _in_time(reader.next())) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in ("photo", "transforms", "fov"):
            raise ValueError(f"unexpected form field {getattr(part, 'name', None)!r}")
        data = await _read_part(part, limit - used, limit)
        used += len(data)
        if part.name == "photo":
            name = part.filename or f"photo-{len(photos)}"
            if name in photos:
                raise ValueError(f"two photos named {name!r}")
            photos[name] = data
        elif part.name == "transforms":
            transforms = data
        else:
            try:
                fov = float(data[:FIELD_LIMIT].decode())
            except (UnicodeDecodeError, ValueError):
                raise ValueError("fov must be a number of degrees") from None
    return photos, transforms, fov


def _bad(text: str) -> web.Response:
    return web.json_response({"ok": False, "error": text}, status=400)


async def _close_sockets(app: web.Application) -> None:
    for s in list(app[HUB].sessions):
        await s.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def make_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=hub.max_upload_bytes + (1 << 16))
    app[HUB] = hub
    app.router.add_get("/", index)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/api/seed", seed_upload)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.on_shutdown.append(_close_sockets)
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port); a clear error when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve(hub: Hub, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve on ``sock`` until ``stop`` is set, then close every tab and the worker threads."""
    runner = web.AppRunner(make_app(hub), handle_signals=False, access_log=None, **CONNECTION_LIMITS)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        await stop.wait()
    finally:
        await runner.cleanup()
        hub.executor.shutdown(wait=True)


def describe_url(host: str, port: int, token: str | None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
