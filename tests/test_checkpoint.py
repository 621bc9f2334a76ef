"""Checkpoints: round trip, and refusal of corrupt, truncated and mismatched files."""

import json

import pytest
import torch

from rtfm_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rtfm_ros.model.config import ModelConfig, preset
from rtfm_ros.model.renderer import FrameRenderer

SMALL = ModelConfig(name="test", image_size=16, patch=8, dim=32, heads=2, enc_layers=1, dec_layers=1)


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = FrameRenderer(SMALL)
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
    path = save_checkpoint(tmp_path / "ckpt", FrameRenderer(SMALL))
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
    path = save_checkpoint(tmp_path / "ckpt", FrameRenderer(SMALL))
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["dim"] = 64
    meta["model"]["heads"] = 4
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, message", [("not json", "not valid JSON"), ("{}", "not an rtfm-checkpoint"),
                                              ('{"format": "rtfm-checkpoint", "version": 99}', "version 99")])
def test_bad_config_is_refused(tmp_path, content, message):
    path = save_checkpoint(tmp_path / "ckpt", FrameRenderer(SMALL))
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
        ModelConfig(dim=30, heads=4)
    model = FrameRenderer(SMALL)
    with pytest.raises(ValueError, match="multiple of the model's patch size"):
        model.encode(torch.rand(1, 3, 12, 16), torch.eye(3)[None])
