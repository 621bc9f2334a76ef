"""The learned renderer's training loop: fine-tuning from given weights and resuming, and under
torchrun DDP (gloo, 2 CPU processes).

Each rank draws its own crops; if DDP averages the gradients, both ranks end with the same
weights, and those differ from one process trained on rank 0's crops alone (a single process
draws exactly rank 0's crops). Unsynchronised ranks drift apart; a rank that ignores rank 1's
gradients ends where the single process ends: either failure fails the test.

This file is also the launcher: ``python tests/test_train_renderer.py DATA OUT TAG`` trains and
writes each process's final weights to OUT/weights_TAG_rank<R>.safetensors.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

STEPS, BATCH, WORLD = 3, 2, 2


def _launch(data: Path, out: Path, tag: str) -> None:
    from safetensors.torch import save_file

    import rtfm_ros.learn.train_renderer as train_mod

    made, cls = [], train_mod.LearnedRenderer

    def recording(config):
        made.append(cls(config))
        return made[-1]

    train_mod.LearnedRenderer = recording
    cfg = train_mod.RendererTrainConfig(data=str(data), out=str(out / f"run_{tag}"), crop=24, batch_size=BATCH,
                                        steps=STEPS, eval_every=STEPS, warmup=1, device="cpu", threads=1)
    train_mod.train(cfg)
    (model,) = made
    rank = int(os.environ.get("RANK", "0"))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(out / f"weights_{tag}_rank{rank}.safetensors"))


def _examples(folder: Path) -> Path:
    from rtfm_ros.learn.renderer_data import Example, save_example
    from rtfm_ros.render.learned import IN_CHANNELS

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(["procedural-1-00", "procedural-2-00", "photos-a-000", "photos-a-001"]):
        planes = torch.from_numpy(rng.random((IN_CHANNELS, 32, 40), dtype=np.float32))
        target = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
        save_example(Example(planes, target, target[::-1].copy(), f"test:{i}"), folder / f"{name}.safetensors")
    return folder


def _run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_renderer_ranks_average_their_gradients(tmp_path):
    from safetensors.torch import load_file

    from rtfm_ros.render.learned import load_weights

    data = _examples(tmp_path / "data")
    here = str(Path(__file__).resolve())
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), here,
          str(data), str(tmp_path), "ddp"])
    _run([here, str(data), str(tmp_path), "alone"])
    r0, r1, alone = (load_file(str(tmp_path / f"weights_{name}.safetensors"))
                     for name in ("ddp_rank0", "ddp_rank1", "alone_rank0"))
    drift = max((r0[k] - r1[k]).abs().max().item() for k in r0)
    assert drift <= 1e-6, f"ranks ended {drift:.3g} apart: gradients were not averaged"
    moved = max((r0[k] - alone[k]).abs().max().item() for k in r0)
    assert moved > 1e-5, f"DDP weights within {moved:.3g} of rank 0 alone: rank 1's crops did not count"
    saved = load_weights(tmp_path / "run_ddp" / "last.safetensors")  # rank 0 saved the shared weights
    assert all(torch.equal(v, r0[k]) for k, v in saved.state_dict().items())


def test_training_starts_from_given_weights_and_resumes(tmp_path):
    import json

    from rtfm_ros.learn.train_renderer import RendererTrainConfig, train
    from rtfm_ros.render.learned import LearnedRenderer, load_weights, save_weights

    data = _examples(tmp_path / "data")
    start = LearnedRenderer()
    with torch.no_grad():
        start.head.bias[0] = 5.0  # not what an untrained network starts with
    save_weights(start, tmp_path / "start.safetensors")
    cfg = RendererTrainConfig(data=str(data), out=str(tmp_path / "run"), crop=24, batch_size=2, steps=2,
                              eval_every=2, lr=1e-9, warmup=1, device="cpu", threads=1,
                              init=str(tmp_path / "start.safetensors"))
    train(cfg)
    after = load_weights(tmp_path / "run" / "last.safetensors")
    assert abs(float(after.head.bias.detach()[0]) - 5.0) < 1e-3
    train(RendererTrainConfig(**{**cfg.__dict__, "steps": 4}))  # the same run folder: resumes at step 2
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 4


if __name__ == "__main__":
    torch.set_num_threads(1)
    _launch(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
