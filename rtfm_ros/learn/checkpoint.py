"""Checkpoints: a directory with ``model.safetensors`` + ``config.json`` (+ a model card).

No pickle anywhere. ``config.json`` records the weights' SHA-256 and its model section's own
SHA-256, so a truncated, corrupt or edited file is refused before any tensor is used; the
model section is range-checked (DepthPriorConfig) before any layer is built, and every tensor's
name and shape is checked against the model it describes, so a mismatched checkpoint is
refused as a whole. Version 2 holds a DepthPrior; version 1 checkpoints (the earlier network
with a view decoder beside the depth head) are refused with their version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rtfm_ros.atomic import atomic_path
from rtfm_ros.checksum import file_sha256, open_regular
from rtfm_ros.learn.config import DepthPriorConfig
from rtfm_ros.learn.depth_prior import DepthPrior

FORMAT = "rtfm-checkpoint"
VERSION = 2
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "default_model"
MAX_CONFIG_BYTES = 16 << 20  # config.json is a few kB; refuse to parse anything huge


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, truncated or mismatched."""


def config_sha256(model_config: object) -> str:
    """SHA-256 of a model section in canonical JSON (sorted keys, no spaces); any JSON value hashes,
    so a section that is not a mapping simply fails to match its checksum."""
    text = json.dumps(model_config, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(path: str | Path, model: DepthPrior, info: dict[str, Any] | None = None,
                    model_card: str | None = None) -> Path:
    """Write a checkpoint directory atomically (a temp dir renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a folder: replaces an older checkpoint only once complete
        tmp.mkdir()
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        cfg = model.config.to_dict()
        meta = {"format": FORMAT, "version": VERSION, "model": cfg, "config_sha256": config_sha256(cfg),
                "weights_sha256": file_sha256(tmp / WEIGHTS), "info": info or {}}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if model_card:
            (tmp / "MODEL_CARD.md").write_text(model_card)
    return path


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of a checkpoint directory."""
    path = Path(path)
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {CONFIG} is missing")
    try:
        with open_regular(cfg_file) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"{cfg_file} cannot be read: {exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{cfg_file} is larger than {MAX_CONFIG_BYTES} bytes; not a checkpoint config")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_file} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{cfg_file} is not a checkpoint config (nested too deeply)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file} is not an {FORMAT} config")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{cfg_file} has version {meta.get('version')}, this build reads {VERSION}")
    return meta


def load_checkpoint(path: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[DepthPrior, dict[str, Any]]:
    """Load (model in eval mode, config dict); the bundled default model when path is None."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    meta = read_checkpoint_config(path)
    try:
        edited = "config_sha256" in meta and config_sha256(meta.get("model")) != meta["config_sha256"]
    except (TypeError, ValueError, RecursionError):
        edited = True
    if edited:
        raise CheckpointError(f"{path / CONFIG}: its model section does not match its checksum (edited or corrupt)")
    try:
        config = DepthPriorConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad model config: {exc}") from None
    weights = path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path}: {WEIGHTS} is missing")
    try:
        weights_ok = file_sha256(weights) == meta.get("weights_sha256")
    except OSError as exc:
        raise CheckpointError(f"{weights} cannot be read: {exc}") from None
    if not weights_ok:
        raise CheckpointError(f"{weights} is corrupt or truncated (checksum mismatch)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights} cannot be read: {exc}") from None
    with torch.device("meta"):  # shapes only: a mismatched config allocates nothing
        expected = {k: tuple(v.shape) for k, v in DepthPrior(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])[:5]
        raise CheckpointError(f"{weights} does not match its config: missing {missing}, unexpected {extra}, "
                              f"wrong shapes {wrong}")
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise CheckpointError(f"{weights} holds non-finite weights")
    model = DepthPrior(config)
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state as flat tensors (safetensors) and its param groups (JSON)."""
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items()
               for k, v in st.items() if torch.is_tensor(v)}
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict[str, Any]) -> None:
    """The inverse of optimizer_tensors."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups["param_groups"]})
