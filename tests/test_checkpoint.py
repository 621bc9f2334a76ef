"""Checkpoints: round trip, and refusal of corrupt, truncated and mismatched files."""

import json
import os

import pytest
import torch

from rtfm_ros.learn.checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    config_sha256,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from rtfm_ros.learn.config import ConfigError, DepthPriorConfig, preset
from rtfm_ros.learn.depth_prior import DepthPrior

SMALL = DepthPriorConfig(name="test", image_size=16, patch=8, dim=32, heads=2, layers=1)


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DepthPrior(SMALL)
    path = save_checkpoint(tmp_path / "ckpt", model, info={"steps": 3}, model_card="# card\n")
    loaded, meta = load_checkpoint(path)
    assert meta["info"]["steps"] == 3 and meta["model"]["dim"] == 32
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training
    # saving again over the same path replaces it atomically
    save_checkpoint(path, model, info={"steps": 4})
    assert load_checkpoint(path)[1]["info"]["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_truncated_and_corrupt_weights_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", DepthPrior(SMALL))
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_mismatched_config_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", DepthPrior(SMALL))
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["dim"] = 64
    meta["model"]["heads"] = 4
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model section does not match its checksum"):
        load_checkpoint(path)
    meta["config_sha256"] = config_sha256(meta["model"])  # consistently edited: the weights' shapes disagree
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match its config"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, message", [("not json", "not valid JSON"), ("{}", "not an rtfm-checkpoint"),
                                              ('{"format": "rtfm-checkpoint", "version": 99}', "version 99")])
def test_bad_config_is_refused(tmp_path, content, message):
    path = save_checkpoint(tmp_path / "ckpt", DepthPrior(SMALL))
    (path / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(tmp_path / "nothing")


def test_presets_build_and_reject_bad_shapes():
    assert preset("tiny").image_size == 64
    with pytest.raises(ValueError, match="unknown model preset"):
        preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        DepthPriorConfig(dim=30, heads=4)
    model = DepthPrior(SMALL)
    with pytest.raises(ValueError, match="multiple of the model's patch size"):
        model.encode(torch.rand(1, 3, 12, 16), torch.eye(3)[None])


def _edit_model(path, **changes):
    """Rewrite a checkpoint's model section (and its checksum, as a careful hand edit would)."""
    meta = json.loads((path / "config.json").read_text())
    meta["model"].update(changes)
    meta["config_sha256"] = config_sha256(meta["model"])
    (path / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, field", [
    ({"heads": 0}, "heads"), ({"dim": 32.0}, "dim"), ({"layers": 1_000_000}, "layers"),
    ({"min_depth": 50.0, "max_depth": 40.0}, "min_depth < max_depth"), ({"max_depth": float("nan")}, "max_depth"),
    ({"patch": True}, "patch"), ({"mlp_ratio": "4"}, "mlp_ratio"), ({"name": ""}, "name"),
    ({"dim": 8192, "heads": 8, "layers": 128}, "parameters"),
])
def test_out_of_range_model_configs_are_refused_before_building(tmp_path, changes, field):
    path = save_checkpoint(tmp_path / "ckpt", DepthPrior(SMALL))
    _edit_model(path, **changes)
    with pytest.raises(CheckpointError, match=field):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match=field):
        DepthPriorConfig(**{**SMALL.to_dict(), **changes})


def test_model_section_is_covered_by_its_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", DepthPrior(SMALL))
    meta = json.loads((path / "config.json").read_text())
    assert meta["config_sha256"] == config_sha256(SMALL.to_dict())
    meta["model"]["max_depth"] = 80.0  # in range, same weights' shapes: only the checksum notices
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(path)
    assert "config_sha256" in read_checkpoint_config(DEFAULT_CHECKPOINT)  # the bundled model is covered too
    load_checkpoint(DEFAULT_CHECKPOINT)


def test_unreadable_configs_are_refused_with_a_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", DepthPrior(SMALL))
    cfg = path / "config.json"
    cfg.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=str(cfg)):
        load_checkpoint(path)
    cfg.write_bytes(b"\xff\xfe{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    cfg.unlink()
    os.mkfifo(cfg)  # a FIFO would block a plain read forever
    with pytest.raises(CheckpointError, match="missing|not a regular file"):
        load_checkpoint(path)
