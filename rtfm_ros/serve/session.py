"""One browser tab: its own camera over the shared world, fed by a latest-pose-wins render loop.

The tab sends JSON text messages (pose, settings, reset, save); the server answers with JSON
text (hello, start, map, notice) and binary frames: a little-endian uint32 header length, a
JSON header, then the JPEG or PNG bytes. Each tab holds one pending pose that every new pose
overwrites, and the next render starts only after the previous frame has been handed to the
socket, so neither a slow render nor a slow client builds a backlog. A message that does not
follow the protocol closes that tab's socket and nothing else.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.geometry import camera_from_heading

if TYPE_CHECKING:
    from aiohttp import web

    from rtfm_ros.serve.shared import Rendered, SharedWorld

log = logging.getLogger("rtfm_ros.serve")
FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}
MAX_COORD = 1e4          # metres: a pose further out is a client bug, not a place
MAX_PITCH = math.radians(86)
JPEG_QUALITY = 85
MAX_OUTBOX = 32                # queued JSON messages per tab
WORLD_CHANGE_INTERVAL = 0.5    # seconds between one tab's resets (and between its saves)
# type -> {field: checker}; every field of a message must be listed here.
_BOOL = "bool"
FIELDS: dict[str, dict[str, str]] = {
    "pose": {"seq": "seq", "pos": "pos", "yaw": "angle", "pitch": "pitch"},
    "settings": {"depth": _BOOL, "remember": _BOOL, "format": "format"},
    "reset": {},
    "save": {},
}
REQUIRED = {"pose": {"seq", "pos", "yaw", "pitch"}}


class ProtocolError(ValueError):
    """A client message that does not follow the protocol (the socket is closed with this reason)."""


@dataclass(frozen=True)
class Pose:
    """A tab's camera: position (m, world z up), heading about z and pitch (rad, up positive)."""

    seq: int
    pos: tuple[float, float, float]
    yaw: float
    pitch: float

    def matrix(self) -> np.ndarray:
        """Optical-axes T_world_camera (no roll)."""
        return camera_from_heading(self.pos, self.yaw, self.pitch)


def pose_dict(T: np.ndarray) -> dict[str, Any]:
    """The page's view of an optical T_world_camera: position, yaw, pitch (roll dropped)."""
    fwd = T[:3, 2]
    pitch = max(-MAX_PITCH + 1e-3, min(MAX_PITCH - 1e-3, math.asin(max(-1.0, min(1.0, float(fwd[2]))))))
    return {"pos": [round(float(v), 4) for v in T[:3, 3]], "yaw": math.atan2(float(fwd[1]), float(fwd[0])),
            "pitch": pitch}


def _number(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError(f"{name} must be a finite number")
    try:
        f = float(v)  # an integer of 3000 digits overflows here
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ProtocolError(f"{name} must be a finite number")
    return f


def parse_message(text: str) -> dict[str, Any]:
    """A validated message: {'type': ..., fields...}; ProtocolError says what is wrong.

    Any value of any JSON type in any field gets a ProtocolError, never another exception: a
    list where a name is expected, a number too long for Python's int parser or a float.
    """
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, and integers past Python's digit limit
        raise ProtocolError("message is not JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str) or msg["type"] not in FIELDS:
        raise ProtocolError(f"message type must be one of {', '.join(FIELDS)}")
    kind = msg.pop("type")
    allowed = FIELDS[kind]
    extra = set(msg) - set(allowed)
    if extra:
        raise ProtocolError(f"{kind}: unknown fields {', '.join(sorted(map(str, extra)))}")
    missing = REQUIRED.get(kind, set()) - set(msg)
    if missing:
        raise ProtocolError(f"{kind}: missing fields {', '.join(sorted(missing))}")
    out: dict[str, Any] = {"type": kind}
    for name, value in msg.items():
        check = allowed[name]
        if check == _BOOL:
            if not isinstance(value, bool):
                raise ProtocolError(f"{name} must be true or false")
            out[name] = value
        elif check == "format":
            if not isinstance(value, str) or value not in FORMATS:
                raise ProtocolError(f"format must be one of {', '.join(FORMATS)}")
            out[name] = value
        elif check == "seq":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
                raise ProtocolError("seq must be a non-negative integer")
            out[name] = value
        elif check == "pos":
            if not isinstance(value, list) or len(value) != 3:
                raise ProtocolError("pos must be [x, y, z]")
            pos = tuple(_number(v, "pos") for v in value)
            if max(map(abs, pos)) > MAX_COORD:
                raise ProtocolError(f"pos must be within {MAX_COORD:g} m of the origin")
            out[name] = pos
        else:
            out[name] = _number(value, name)
            if check == "pitch" and abs(out[name]) > MAX_PITCH:
                raise ProtocolError(f"pitch must be within +-{math.degrees(MAX_PITCH):.0f} degrees")
    if kind == "settings" and len(out) == 1:
        raise ProtocolError("settings: nothing to set")
    return out


_DEPTH_LUT: np.ndarray | None = None


def colour_depth(depth: np.ndarray) -> np.ndarray:
    """Depth (m) as a picture: inverse depth from 0.25 m to 10 m through matplotlib's turbo map."""
    global _DEPTH_LUT
    if _DEPTH_LUT is None:
        from matplotlib import colormaps

        _DEPTH_LUT = (colormaps["turbo"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    d = np.nan_to_num(np.asarray(depth, np.float32), nan=np.inf, posinf=np.inf)
    near, far = 0.25, 10.0
    t = (1 / np.clip(d, near, far) - 1 / far) / (1 / near - 1 / far)
    return _DEPTH_LUT[(t * 255).astype(np.uint8)]


def encode_frame(r: Rendered, fmt: str, depth: bool) -> bytes:
    """JPEG or PNG bytes of the colour view (or the coloured depth)."""
    from PIL import Image

    img = Image.fromarray(colour_depth(r.depth) if depth and r.depth is not None else r.rgb)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    else:
        img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def pack_frame(header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(head)) + head + payload


class Session:
    """A tab's camera and settings; its send loop is the only writer to its socket."""

    def __init__(self, ws: web.WebSocketResponse, world: SharedWorld,
                 run: Callable[..., Awaitable[Any]], on_world_grew: Callable[[], None]) -> None:
        self.ws, self.world, self._run, self._on_world_grew = ws, world, run, on_world_grew
        self.pose: Pose | None = None
        self.settings: dict[str, Any] = {"depth": False, "remember": True, "format": "jpeg"}
        self._render_due = False
        self._outbox: list[dict[str, Any]] = []
        self._map_seen = (-1, 0)   # (generation, rows sent)
        self._wake = asyncio.Event()
        self._last_change: dict[str, float] = {}

    def post(self, msg: dict[str, Any]) -> None:
        """Queue a JSON message for the send loop; a newer "start" replaces one not yet sent, and
        only the newest MAX_OUTBOX messages are kept (a tab that stops reading holds no backlog)."""
        if msg["type"] == "start":
            self._outbox = [m for m in self._outbox if m["type"] != "start"]
        self._outbox.append(msg)
        del self._outbox[:-MAX_OUTBOX]
        self._wake.set()

    def may_change_world(self, kind: str) -> bool:
        """Whether this tab may reset or save now: each at most once per WORLD_CHANGE_INTERVAL, so
        thousands of queued resets cost one reset, not minutes of work after the tab has gone."""
        now = time.monotonic()
        if now - self._last_change.get(kind, -math.inf) < WORLD_CHANGE_INTERVAL:
            return False
        self._last_change[kind] = now
        return True

    def wake(self) -> None:
        """Something changed (the map, the world): let the send loop look."""
        self._wake.set()

    def handle(self, msg: dict[str, Any]) -> None:
        """Apply a pose or settings message (reset and save are the server's: they touch every tab)."""
        if msg["type"] == "pose":
            self.pose = Pose(msg["seq"], msg["pos"], msg["yaw"], msg["pitch"])
        else:
            self.settings.update({k: v for k, v in msg.items() if k != "type"})
        self._render_due = True
        self._wake.set()

    async def send_loop(self) -> None:
        """Until cancelled: queued messages, map rows the tab has not seen, then the latest pose."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                await self.ws.send_str(json.dumps(self._outbox.pop(0)))
            await self._send_map()
            if self._render_due and self.pose is not None:
                self._render_due = False
                await self._send_frame(self.pose, dict(self.settings))

    async def _send_map(self) -> None:
        generation, rows = self.world.map_state
        seen_gen, seen = self._map_seen
        fresh = generation != seen_gen
        count = len(rows)
        if fresh or count > seen:
            new = rows[: count] if fresh else rows[seen:count]
            await self.ws.send_str(json.dumps({"type": "map", "reset": fresh, "rows": new}))
            self._map_seen = (generation, count)

    async def _send_frame(self, pose: Pose, settings: dict[str, Any]) -> None:
        from rtfm_ros.render.views import EmptyWorldError

        before = self.world.frames()
        try:
            r = await self._run(self.world.render, pose.matrix(), settings["remember"], settings["depth"])
            payload = await self._run(encode_frame, r, settings["format"], settings["depth"])
        except (EmptyWorldError, ValueError) as exc:
            self.post({"type": "notice", "level": "error", "text": f"cannot render this view: {exc}"})
            return
        except Exception as exc:  # a bug or a device error: say so on the page and in the log, keep serving
            log.exception("render failed")
            self.post({"type": "notice", "level": "error", "text": f"render failed: {type(exc).__name__}: {exc}"})
            return
        header = {"seq": pose.seq, "ms": round(r.seconds * 1000, 2), "frames": r.frames,
                  "w": int(r.rgb.shape[1]), "h": int(r.rgb.shape[0]), "mime": FORMATS[settings["format"]],
                  "depth": bool(settings["depth"])}
        await self.ws.send_bytes(pack_frame(header, payload))
        if r.frames != before:
            self._on_world_grew()
