"""The depth prior's training loop: single process or torchrun DDP, resumable, evaluated on held-out worlds.

`rtfm train --model tiny --data DIR --eval-data DIR --out runs/tiny` trains (or resumes) a run.
The loss is L1 on log depth (the prior's depth code) over every pixel with depth. A run
directory holds ``last/`` and ``best/`` checkpoints (safetensors + JSON; best by held-out depth
error), the optimizer state (safetensors), ``state.json``, ``log.csv`` and ``eval.jsonl``. Kill it
at any time and run the same command again to resume from the last save.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import torch

from rtfm_ros.atomic import atomic_path, write_text_atomic
from rtfm_ros.data.clips import open_dataset
from rtfm_ros.learn.checkpoint import load_checkpoint, load_optimizer, optimizer_tensors, save_checkpoint
from rtfm_ros.learn.config import preset
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.learn.distributed import init_distributed, leave_distributed
from rtfm_ros.learn.examples import ExampleConfig, FrameExamples, collate
from rtfm_ros.options import add_options, from_options, setting
from rtfm_ros.runtime import autocast, autocast_dtype, pick_device

AMP_CHOICES = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """A training run; `rtfm train`'s options are made from these fields (rtfm_ros.options)."""

    data: str = setting(help="clip dataset directory (rtfm data generate / import)")
    out: str = setting("runs/tiny", "run directory: checkpoints, optimizer state, logs (run again to resume)")
    model: str = setting("tiny", "preset: tiny, small, base")
    init: str | None = setting(None, "checkpoint to fine-tune from instead of training from scratch")
    eval_data: str | None = setting(None, "clip dataset of held-out worlds for periodic evaluation")
    steps: int = setting(20000, "optimizer steps in all (a resumed run continues to this step)")
    batch_size: int = setting(8, "examples per step (per process under torchrun)")
    lr: float = setting(6e-4, "peak learning rate")
    min_lr_ratio: float = setting(0.05, "the cosine decay ends at this share of lr")
    warmup: int = setting(300, "linear warm-up steps")
    weight_decay: float = setting(0.05, "AdamW weight decay")
    grad_clip: float = setting(1.0, "gradient norm clip")
    eval_every: int = setting(500, "steps between held-out evaluations")
    eval_examples: int = setting(64, "held-out examples per evaluation")
    save_every: int = setting(200, "steps between saves of last/")
    seed: int = setting(0, "random seed")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N")
    amp: str = setting("auto", "bf16 autocast: auto (where the hardware makes it fast), bf16, off",
                       choices=AMP_CHOICES)
    compile: bool = setting(False, "torch.compile the model")
    threads: int = setting(0, "CPU threads (0: default; 1 is faster on a CPU shared with other busy processes)")
    max_minutes: float | None = setting(None, "stop (after saving) when this much wall-clock time has passed")
    examples: ExampleConfig = setting(ExampleConfig(), cli=False)

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return ValueError(f"train config {name} must be {want}, got {getattr(self, name)!r}")

        for name in ("steps", "batch_size", "eval_every", "eval_examples", "save_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "an integer >= 1")
        for name in ("warmup", "seed", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, "an integer >= 0")
        for name, lo_open, hi in (("lr", True, 1.0), ("min_lr_ratio", False, 1.0), ("weight_decay", False, 10.0),
                                  ("grad_clip", True, 1e6)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not (0 < v if lo_open else 0 <= v) or v > hi:
                raise bad(name, f"a number in {'(' if lo_open else '['}0, {hi:g}]")
        if self.amp not in AMP_CHOICES:
            raise bad("amp", f"one of {', '.join(AMP_CHOICES)}")
        if self.max_minutes is not None and not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise bad("max_minutes", "a positive number of minutes or None")
        if not self.data:
            raise bad("data", "a clip dataset directory")


class TrainState(TypedDict):
    """What a resumed run continues from (state.json beside the checkpoints)."""

    step: int
    best_depth_error: float | None   # lowest held-out mean |log depth error| so far (None: not evaluated)
    examples_seen: int
    train_seconds: float


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def compute_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 between predicted and true depth codes (log depth, DepthPrior.depth_code) over pixels with depth."""
    raw = cast(DepthPrior, getattr(model, "module", model))  # the DepthPrior inside DDP / torch.compile
    pred = model(batch["rgb"], batch["K"]).float()
    valid = (batch["depth"] > 0).float()
    err = (raw.depth_code(pred) - raw.depth_code(batch["depth"].clamp_min(1e-3))).abs()
    loss = (err * valid).sum() / valid.sum().clamp_min(1)
    return loss, {"loss": loss.item()}


@torch.no_grad()
def evaluate_examples(model: DepthPrior, batches: list[dict[str, torch.Tensor]],
                      device: torch.device) -> dict[str, float]:
    """Held-out depth error over fixed examples: mean |log(pred / true)| and mean |pred - true| / true."""
    model.eval()
    log_err, rel_err, n = 0.0, 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        pred = model(batch["rgb"], batch["K"]).float()
        true = batch["depth"]
        ok = true > 0
        log_err += float((pred[ok].log() - true[ok].log()).abs().sum())
        rel_err += float(((pred[ok] - true[ok]).abs() / true[ok]).sum())
        n += int(ok.sum())
    model.train()
    return {"depth_log_error": log_err / max(n, 1), "depth_abs_rel": rel_err / max(n, 1)}


def train(cfg: TrainConfig) -> TrainState:
    """Run (or resume) training; returns the final state dict written to state.json."""
    from safetensors.torch import load_file, save_file

    rank, world = init_distributed()
    distributed = world > 1
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device if not (distributed and torch.cuda.is_available()) else "cuda")
    amp = autocast_dtype(device) if cfg.amp == "auto" else (torch.bfloat16 if cfg.amp == "bf16" else None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    clips = [c for c in open_dataset(cfg.data)]
    if cfg.init:
        model, _ = load_checkpoint(cfg.init, device)
        model.train()
    else:
        model = DepthPrior(preset(cfg.model)).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    state = TrainState(step=0, best_depth_error=None, examples_seen=0, train_seconds=0.0)
    if (out / "state.json").exists() and (out / "last").exists():
        resumed, _ = load_checkpoint(out / "last", device)
        model.load_state_dict(resumed.state_dict())
        model.train()
        load_optimizer(opt, load_file(str(out / "optimizer.safetensors")),
                        json.loads((out / "optimizer.json").read_text()))
        state.update(json.loads((out / "state.json").read_text()))
        if rank == 0:
            print(f"resuming {out} at step {state['step']}")
    net: torch.nn.Module = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model)
    if cfg.compile:
        net = cast(torch.nn.Module, torch.compile(net))

    data = FrameExamples(clips, cfg.examples, seed=cfg.seed)
    eval_batches: list[dict[str, torch.Tensor]] = []
    if cfg.eval_data and rank == 0:
        held = FrameExamples(list(open_dataset(cfg.eval_data)), ExampleConfig(), seed=12345)
        ex = [held[i] for i in range(cfg.eval_examples)]
        eval_batches = [collate(ex[i:i + 16]) for i in range(0, len(ex), 16)]

    def save(tag: str, metrics: dict[str, Any]) -> None:
        info = {"train_config": json.loads(json.dumps(asdict(cfg), default=str)), **state, "metrics": metrics}
        save_checkpoint(out / tag, model, info=info)

    log_file = out / "log.csv"
    fields = ["step", "lr", "loss", "examples_per_s", "seconds"]
    start = time.time()
    seconds_before = state["train_seconds"]
    t_last, metrics = time.time(), {}
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=state["step"], disable=rank != 0, desc="train", dynamic_ncols=True)
    while state["step"] < cfg.steps:
        step = state["step"]
        base = (step * world + rank) * cfg.batch_size
        batch = collate([data[base + b] for b in range(cfg.batch_size)])
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with autocast(device, amp):
            loss, parts = compute_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        state["step"] = step + 1
        state["examples_seen"] += cfg.batch_size * world
        state["train_seconds"] = seconds_before + time.time() - start
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}")
        if rank != 0:
            continue
        done = state["step"] >= cfg.steps
        out_of_time = cfg.max_minutes is not None and time.time() - start > cfg.max_minutes * 60
        if state["step"] % 20 == 0 or done:
            rate = 20 * cfg.batch_size * world / max(1e-9, time.time() - t_last)
            t_last = time.time()
            new = not log_file.exists()
            with open(log_file, "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields + ["eval"])
                if new:
                    w.writeheader()
                w.writerow({"step": state["step"], "lr": f"{lr_at(step, cfg):.3g}", "examples_per_s": f"{rate:.1f}",
                            "seconds": f"{state['train_seconds']:.0f}", "eval": "",
                            **{k: f"{v:.5f}" for k, v in parts.items()}})
        if eval_batches and (state["step"] % cfg.eval_every == 0 or done or out_of_time):
            metrics = evaluate_examples(model, eval_batches, device)
            with open(out / "eval.jsonl", "a") as f:
                f.write(json.dumps({"step": state["step"], **metrics}) + "\n")
            score = metrics["depth_log_error"]
            if state["best_depth_error"] is None or score < state["best_depth_error"]:
                state["best_depth_error"] = score
                save("best", metrics)
            bar.write(f"step {state['step']}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if state["step"] % cfg.save_every == 0 or done or out_of_time:
            save("last", metrics)
            tensors, groups = optimizer_tensors(opt)
            with atomic_path(out / "optimizer.safetensors") as tmp:
                save_file(tensors, str(tmp))
            write_text_atomic(out / "optimizer.json", json.dumps(groups))
            write_text_atomic(out / "state.json", json.dumps(state, indent=2))
        if out_of_time:
            bar.write(f"time limit reached at step {state['step']}; run again to resume")
            break
    bar.close()
    leave_distributed(world)
    return state


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train or fine-tune the depth prior (resumable; torchrun for DDP)")
    add_options(p, TrainConfig)
    p.add_argument("--photometric", type=float, default=ExampleConfig.photometric,
                   help="chance each frame gets random exposure, gamma, white balance, noise and blur "
                        "(default %(default)s)")
    p.set_defaults(func=lambda a: _run(a))


def _run(a: argparse.Namespace) -> int:
    cfg = from_options(TrainConfig, a, examples=ExampleConfig(photometric=a.photometric))
    state = train(cfg)
    print(json.dumps(state, indent=2))
    return 0
