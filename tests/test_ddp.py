"""torchrun DDP training, on CPU with the gloo backend (2 processes): gradients are averaged.

Each rank trains on its own examples. If the ranks' gradients are averaged, both end with the
same weights, and those weights differ from training on rank 0's examples alone. Broken
synchronisation fails one of the two: unsynchronised ranks drift apart, and a rank that keeps
(or is handed) only rank 0's gradients ends where the single-shard run ends.

This file is also the launcher: ``python tests/test_ddp.py DATA OUT MODE`` runs `rtfm_ros.learn.train`
and writes the final weights of every process to OUT/weights_rank<R>.safetensors; MODE
``shard0`` trains one process on exactly the examples rank 0 sees in a 2-process run.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch

STEPS, BATCH, WORLD = 3, 2, 2


def _launch(data: Path, out: Path, mode: str) -> None:
    from safetensors.torch import save_file

    import rtfm_ros.learn.train as train_mod

    made, prior = [], train_mod.DepthPrior

    def recording_prior(config):
        made.append(prior(config))
        return made[-1]

    class ShardZero(train_mod.FrameExamples):
        """Example i of one process is the one rank 0 of WORLD processes takes in its place."""

        def __getitem__(self, i):
            step, b = divmod(i, BATCH)
            return super().__getitem__(step * WORLD * BATCH + b)

    train_mod.DepthPrior = recording_prior
    if mode == "shard0":
        train_mod.FrameExamples = ShardZero
    cfg = train_mod.TrainConfig(data=str(data), out=str(out / f"run_{mode}"), steps=STEPS, batch_size=BATCH,
                                warmup=1, save_every=STEPS, device="cpu", amp="off", threads=1)
    train_mod.train(cfg)
    (model,) = made
    rank = int(os.environ.get("RANK", "0"))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(out / f"weights_{mode}_rank{rank}.safetensors"))


def _run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_ranks_average_their_gradients(tmp_path):
    from safetensors.torch import load_file
    from test_training import sim_clip

    from rtfm_ros.data.clips import write_dataset
    from rtfm_ros.learn.checkpoint import load_checkpoint

    data = write_dataset(tmp_path / "data", [sim_clip(5, frames=12), sim_clip(6, frames=12)], info={})
    here = str(Path(__file__).resolve())
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), here,
          str(data), str(tmp_path), "ddp"])
    _run([here, str(data), str(tmp_path), "shard0"])
    r0, r1, alone = (load_file(str(tmp_path / f"weights_{name}.safetensors"))
                     for name in ("ddp_rank0", "ddp_rank1", "shard0_rank0"))
    assert r0.keys() == r1.keys() == alone.keys()
    drift = max((r0[k] - r1[k]).abs().max().item() for k in r0)
    assert drift <= 1e-6, f"ranks ended {drift:.3g} apart: gradients were not averaged"
    moved = max((r0[k] - alone[k]).abs().max().item() for k in r0)
    assert moved > 1e-4, f"DDP weights are within {moved:.3g} of rank 0 trained alone: rank 1's examples did not count"
    saved, meta = load_checkpoint(tmp_path / "run_ddp" / "last")  # rank 0 saves the shared weights
    assert meta["info"]["step"] == STEPS
    assert all(torch.equal(v, r0[k]) for k, v in saved.state_dict().items())


if __name__ == "__main__":
    torch.set_num_threads(1)
    _launch(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
