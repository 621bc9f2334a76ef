"""RenderCore: what every world rendering on one device shares.

A world (rtfm_ros.world.WorldModel) is one memory of posed frames; the render core is the learned
depth prior on its device (rtfm_ros.learn.depth_prior, for frames with no stereo neighbour) plus
the cache of frames made ready to render (depth + pyramid, rtfm_ros.render.prepare.PreparedFrame)
of every world that uses it. Keeping the two apart lets a vector env run one world per sub-env
over weights loaded once, batch their views through one call, and lets a node swap its world for
another without touching the core.

Why the cache lives here and not in the memory: a prepared frame is derived data (stereo or prior
depth, pyramid), not part of the world; one byte budget over all worlds bounds what the core
holds however many worlds share it.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rtfm_ros.learn.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.render.learned import RENDERER_FILE, LearnedRenderer, load_weights
from rtfm_ros.runtime import pick_device

if TYPE_CHECKING:
    from rtfm_ros.render.prepare import PreparedFrame

# Prepared frames are rebuilt on demand (stereo again), so the budget only trades RAM for
# time; 2 GiB holds ~700 frames at 640x480 or ~60k at 128x128.
DEFAULT_CACHE_BYTES = 2 << 30
CacheKey = tuple[int, int]  # (world key, frame id)


class PreparedCache:
    """Least-recently-used prepared frames of many worlds, keyed by (world key, frame id)."""

    def __init__(self, budget_bytes: int | None = DEFAULT_CACHE_BYTES) -> None:
        if budget_bytes is not None and budget_bytes < 0:
            raise ValueError(f"cache budget must be >= 0 bytes, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[CacheKey, PreparedFrame] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: CacheKey, *, touch: bool = True) -> PreparedFrame | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and touch:
                self._items.move_to_end(key)
            return item

    def put(self, key: CacheKey, prepared: PreparedFrame) -> None:
        """Cache ``prepared``; older entries go beyond the budget (never the one just put)."""
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += prepared.nbytes - (old.nbytes if old is not None else 0)
            self._items[key] = prepared
            while self.budget_bytes is not None and self._bytes > self.budget_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def drop(self, key: CacheKey) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes

    def drop_world(self, world_key: int) -> None:
        """Forget every frame of one world (it was reset or is gone)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == world_key]:
                self._bytes -= self._items.pop(key).nbytes

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class RenderCore:
    """The depth prior on a device, with the prepared-frame cache of the worlds that share it."""

    def __init__(self, depth_prior: DepthPrior, *, device: str | torch.device = "auto",
                 checkpoint_info: dict[str, Any] | None = None,
                 cache_bytes: int | None = DEFAULT_CACHE_BYTES,
                 learned_renderer: LearnedRenderer | None = None) -> None:
        if not isinstance(depth_prior, DepthPrior):
            raise TypeError(f"depth_prior must be a DepthPrior, got {type(depth_prior).__name__}")
        self.device = pick_device(device)
        self.depth_prior = depth_prior.to(self.device).eval()
        self.learned_renderer = None if learned_renderer is None else learned_renderer.to(self.device).eval()
        self.checkpoint_info = checkpoint_info or {}
        self.cache = PreparedCache(cache_bytes)
        self._world_keys = itertools.count()
        self._keys_lock = threading.Lock()

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, *, device: str | torch.device = "auto",
             cache_bytes: int | None = DEFAULT_CACHE_BYTES) -> RenderCore:
        """With the bundled default depth prior, or a checkpoint directory `rtfm train` wrote."""
        dev = pick_device(device)
        folder = Path(checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT)
        prior, meta = load_checkpoint(folder, dev)
        weights = folder / RENDERER_FILE
        learned = load_weights(weights, dev) if weights.is_file() else None
        return cls(prior, device=dev, checkpoint_info=meta, cache_bytes=cache_bytes, learned_renderer=learned)

    @property
    def name(self) -> str:
        """The checkpoint's model name ('' for a depth prior that was never saved)."""
        return str(self.checkpoint_info.get("model", {}).get("name", ""))

    def new_world_key(self) -> int:
        """A key no other world of this core has, for its entries in the cache."""
        with self._keys_lock:
            return next(self._world_keys)
