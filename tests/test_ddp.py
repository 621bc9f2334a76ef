"""torchrun DDP training path, on CPU with the gloo backend (2 processes)."""

import json
import os
import subprocess
import sys

from rtfm_ros.data.clips import write_dataset
from rtfm_ros.model.checkpoint import load_checkpoint

from test_training import sim_clip


def test_torchrun_two_processes(tmp_path):
    data = write_dataset(tmp_path / "data", [sim_clip(5, frames=12), sim_clip(6, frames=12)], info={})
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "rtfm_ros.cli", "train", "--data", str(data), "--out", str(out), "--steps", "3", "--batch-size", "2",
           "--warmup", "1", "--save-every", "3", "--device", "cpu", "--amp", "off"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 3 and state["examples_seen"] == 3 * 2 * 2  # both ranks' examples count
    model, meta = load_checkpoint(out / "last")
    assert meta["info"]["step"] == 3
