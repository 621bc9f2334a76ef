"""`rtfm renderer data|train`: the learned renderer's examples and its training loop.

`rtfm renderer data --out DIR --worlds 60 --photos PHOTO_DIR ...` writes examples
(learn.renderer_data) from procedural training worlds and from real posed photo sets (every
``holdout_every``-th photo of a set is left out of its world and of every example, so the
held-out photos `rtfm eval --holdout` scores are never seen). `rtfm renderer train --data DIR
--out RUN` trains on random crops: L1 + (1 - SSIM) + image-gradient L1, which reward detail and
structure and not only the mean colour. AdamW with warm-up and cosine decay, gradient clipping,
bf16 autocast where the CPU or GPU makes it fast. A run folder holds ``last.safetensors``,
``best.safetensors`` (by validation PSNR gain over the geometric render on procedural worlds
kept out of training), ``optimizer.safetensors``, ``state.json`` and ``log.csv``; run the same
command again to resume. Under torchrun (`torchrun --nproc_per_node N -m rtfm_ros.cli renderer
train ...`) each process draws its own crops and DDP averages the gradients (NCCL on GPUs, gloo
on CPUs); rank 0 validates, logs and saves. Copy ``best.safetensors`` to a checkpoint folder as
``renderer.safetensors`` to ship it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.atomic import write_text_atomic
from rtfm_ros.evaluate.metrics import psnr_torch
from rtfm_ros.learn.distributed import all_agree, init_distributed, leave_distributed
from rtfm_ros.learn.renderer_data import Example, load_example
from rtfm_ros.options import add_options, from_options, setting
from rtfm_ros.render.learned import (
    COHERENT_PLANES,
    GEOMETRIC_AT,
    SLOT_PLANES,
    SLOTS,
    LearnedRenderer,
    LearnedRendererConfig,
    load_weights,
    save_weights,
)
from rtfm_ros.render.warp import COHERENT
from rtfm_ros.runtime import autocast, pick_device

RGB_PLANES = ([k * SLOT_PLANES + c for k in range(SLOTS) for c in range(3)]
              + [SLOTS * SLOT_PLANES + k * COHERENT_PLANES + c for k in range(COHERENT) for c in range(3)]
              + [GEOMETRIC_AT + c for c in range(3)])


@dataclass(frozen=True)
class RendererTrainConfig:
    """How the learned renderer is trained (`rtfm renderer train`: one option per field)."""

    data: str = setting(help="renderer example folder (rtfm renderer data)")
    out: str = setting("runs/renderer", help="run folder (run again to resume)")
    # what a batch is
    crop: int = setting(96, help="crop side in pixels")
    batch_size: int = setting(12, help="crops per step (per process under torchrun)")
    photo_share: float = setting(0.5, help="share of each batch drawn from real photos (the rest: procedural worlds)")
    val_every: int = setting(10, help="every n-th procedural world is validation, never trained on")
    # how long and how fast
    steps: int = setting(3000, help="optimizer steps in all")
    eval_every: int = setting(250, help="steps between validations and saves")
    max_minutes: float | None = setting(None, help="stop (after saving) after this many minutes")
    lr: float = setting(2e-3, help="peak learning rate")
    init: str | None = setting(None, help="start from these renderer weights (fine-tune) instead of the untrained "
                                          "network")
    warmup: int = setting(100, help="warm-up steps", cli=False)
    weight_decay: float = setting(1e-4, help="AdamW weight decay", cli=False)
    # where it runs
    seed: int = setting(0, help="random seed")
    device: str = setting("auto", help="auto, cpu or cuda")
    threads: int = setting(0, help="CPU threads (0: PyTorch's default)")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "crop", "warmup", "eval_every", "val_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"renderer training {name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.photo_share <= 1.0:
            raise ValueError(f"renderer training photo_share must be in [0, 1], got {self.photo_share}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"renderer training lr must be positive, got {self.lr}")


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of two B x 3 x H x W batches in [0, 1] (7x7 box windows)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = F.avg_pool2d(x, 7, 1, 3), F.avg_pool2d(y, 7, 1, 3)
    sxx = F.avg_pool2d(x * x, 7, 1, 3) - mx * mx
    syy = F.avg_pool2d(y * y, 7, 1, 3) - my * my
    sxy = F.avg_pool2d(x * y, 7, 1, 3) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def loss_fn(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + 0.3 (1 - SSIM) + 0.5 L1 of image gradients."""
    grad = (((pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])).abs().mean()
            + ((pred[..., 1:] - pred[..., :-1]) - (target[..., 1:] - target[..., :-1])).abs().mean())
    return (pred - target).abs().mean() + 0.3 * (1 - ssim_map(pred, target)).mean() + 0.5 * grad


def split_examples(folder: Path, val_every: int) -> tuple[list[Path], list[Path]]:
    """(train, validation) files: validation is every ``val_every``-th procedural world."""
    train, val = [], []
    for p in sorted(folder.glob("*.safetensors")):
        parts = p.stem.split("-")
        if parts[0] == "procedural" and int(parts[1]) % val_every == 0:
            val.append(p)
        else:
            train.append(p)
    if not train:
        raise ValueError(f"{folder}: no renderer examples to train on (rtfm renderer data)")
    return train, val


def example_tensors(ex: Example) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    def rgb(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(2, 0, 1).float() / 255

    return ex.planes, rgb(ex.target), rgb(ex.geometric)


Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def sample_batch(examples: list[Tensors], cfg: RendererTrainConfig, rng: np.random.Generator,
                 photos: list[Tensors] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops with flips and one photometric change (gain, gamma) applied to inputs and target
    alike; ``cfg.photo_share`` of them from ``photos`` when given."""
    xs, ys = [], []
    for _ in range(cfg.batch_size):
        pool = photos if photos and (not examples or rng.random() < cfg.photo_share) else examples
        x, y, _ = pool[int(rng.integers(len(pool)))]
        H, W = y.shape[-2:]
        c = min(cfg.crop, H, W)
        i, j = int(rng.integers(0, H - c + 1)), int(rng.integers(0, W - c + 1))
        x, y = x[:, i:i + c, j:j + c].clone(), y[:, i:i + c, j:j + c].clone()
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, 3)).float()[:, None, None]
        gamma = float(rng.uniform(0.8, 1.25))
        for k in range(0, len(RGB_PLANES), 3):
            planes = RGB_PLANES[k:k + 3]
            x[planes] = (x[planes].clamp(0, 1) ** gamma * gain).clamp(0, 1)
        xs.append(x)
        ys.append((y ** gamma * gain).clamp(0, 1))
    return torch.stack(xs), torch.stack(ys)


@torch.no_grad()
def validate(model: LearnedRenderer, examples: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
             device: torch.device) -> dict[str, float]:
    """Mean PSNR of the model and of the geometric render on whole validation views."""
    model.eval()
    ours, geo = [], []
    for x, y, g in examples:
        with autocast(device):
            pred = model(x[None].to(device)).float().clamp(0, 1).cpu()[0]
        ours.append(float(psnr_torch(pred[None], y[None])[0]))
        geo.append(float(psnr_torch(g[None], y[None])[0]))
    model.train()
    return {"psnr": float(np.mean(ours)) if ours else 0.0, "geometric_psnr": float(np.mean(geo)) if geo else 0.0}


def train(cfg: RendererTrainConfig) -> dict[str, float]:
    """Train (or resume) a run; the last validation figures."""
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from rtfm_ros.atomic import atomic_path
    from rtfm_ros.learn.checkpoint import load_optimizer, optimizer_tensors

    rank, world = init_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = pick_device("cuda" if world > 1 and torch.cuda.is_available() else cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_files, val_files = split_examples(Path(cfg.data), cfg.val_every)
    train_set = [example_tensors(load_example(p)) for p in tqdm(train_files, desc="loading examples", unit="ex",
                                                                 disable=rank != 0)
                 if not p.name.startswith("photos-")]
    photo_set = [example_tensors(load_example(p)) for p in train_files if p.name.startswith("photos-")]
    val_set = [example_tensors(load_example(p)) for p in val_files]
    state_path = out / "state.json"
    step, best = 0, -math.inf
    model = _initial_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        step, best = int(state["step"]), float(state["best_gain"])
        model = load_weights(out / "last.safetensors").train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        load_optimizer(opt, load_file(str(out / "optimizer.safetensors")),
                       json.loads((out / "optimizer.json").read_text()))
    model.to(device).train()
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    rng = np.random.default_rng([cfg.seed, step, rank])  # each process its own crops
    log = out / "log.csv"
    new_log = not log.exists()
    t0 = time.monotonic()
    metrics: dict[str, float] = {}
    with open(log, "a", newline="") as f, tqdm(total=cfg.steps, initial=step, desc="training renderer",
                                               unit="step", disable=rank != 0) as bar:
        writer = csv.writer(f)
        if new_log and rank == 0:
            writer.writerow(["step", "loss", "lr", "val_psnr", "val_geometric_psnr", "seconds"])
        run_loss = 0.0
        while step < cfg.steps:
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = sample_batch(train_set, cfg, rng, photo_set)
            with autocast(device):
                pred = net(x.to(device))
            loss = loss_fn(pred.float(), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            run_loss = float(loss.detach()) if step == 1 else 0.95 * run_loss + 0.05 * float(loss.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss:.4f}")
            timed_out = all_agree(cfg.max_minutes is not None and time.monotonic() - t0 > 60 * cfg.max_minutes,
                                   world)
            if rank == 0 and (step % cfg.eval_every == 0 or step == cfg.steps or timed_out):
                metrics = validate(model, val_set, device)
                gain = metrics["psnr"] - metrics["geometric_psnr"]
                writer.writerow([step, f"{run_loss:.5f}", f"{lr:.3g}", f"{metrics['psnr']:.3f}",
                                 f"{metrics['geometric_psnr']:.3f}", f"{time.monotonic() - t0:.0f}"])
                f.flush()
                save_weights(model, out / "last.safetensors")
                tensors, groups = optimizer_tensors(opt)
                with atomic_path(out / "optimizer.safetensors") as tmp:
                    save_file(tensors, str(tmp))
                write_text_atomic(out / "optimizer.json", json.dumps(groups))
                if gain > best or not val_set:
                    best = gain
                    save_weights(model, out / "best.safetensors")
                write_text_atomic(state_path, json.dumps({"step": step, "best_gain": best, "config": asdict(cfg)}))
            if timed_out:
                break
    leave_distributed(world)
    return metrics


def _initial_model(cfg: RendererTrainConfig) -> LearnedRenderer:
    """The untrained network, or ``cfg.init``'s weights to fine-tune."""
    return load_weights(cfg.init).train() if cfg.init else LearnedRenderer(LearnedRendererConfig())


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("renderer", help="the learned renderer: build its examples, train it")
    cmd = p.add_subparsers(dest="renderer_command", required=True)
    d = cmd.add_parser("data", help="write training examples (procedural worlds, real posed photos)")
    add_options(d, RendererDataOptions)
    d.add_argument("--photos", nargs="*", default=[], help="posed photo sets (transforms.json folders or bags)")
    d.set_defaults(func=_data)
    t = cmd.add_parser("train", help="train (or resume) the learned renderer")
    add_options(t, RendererTrainConfig)
    t.set_defaults(func=_train)


def _train(a: argparse.Namespace) -> int:
    print(json.dumps(train(from_options(RendererTrainConfig, a))))
    return 0


@dataclass(frozen=True)
class RendererDataOptions:
    """What `rtfm renderer data` writes (one option per field; the photo sets are given apart)."""

    out: str = setting(help="example folder (run again to add what is missing)")
    worlds: int = setting(60, "procedural training worlds")
    first_seed: int = setting(1000, "the first training world's seed")
    depth_worlds: int = setting(0, "further procedural worlds (after those) seeded with their depth, exact or as a "
                                   "depth camera measures it")
    holdout_every: int = setting(4, "every n-th photo of a set stays out of the examples (0: use all)")
    width: int = setting(320, "width of the photo examples (their own aspect)")
    round_trips: int = setting(3, "round-trip examples per photo")
    sparse_worlds: int = setting(0, "worlds per photo set made of a random part of its photos, the others "
                                    "their targets")
    photos: tuple[str, ...] = setting((), "posed photo sets", cli=False)

    def __post_init__(self) -> None:
        for name in ("worlds", "first_seed", "depth_worlds", "holdout_every", "round_trips", "sparse_worlds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"renderer data {name} must be an integer >= 0, got {v!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 8 <= self.width <= 4096:
            raise ValueError(f"renderer data width must be in 8..4096, got {self.width!r}")
        if self.holdout_every == 1:
            raise ValueError("renderer data holdout_every must be 0 (keep all) or >= 2")


def _data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtfm_ros.data.importers import import_any
    from rtfm_ros.learn.renderer_data import photo_examples, procedural_examples, save_example
    from rtfm_ros.world import WorldModel

    a = from_options(RendererDataOptions, args, photos=tuple(args.photos))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = WorldModel.load()
    n = 0
    end = a.first_seed + a.worlds
    for seed in tqdm(range(a.first_seed, end + a.depth_worlds), desc="procedural worlds", unit="world"):
        if any(out.glob(f"procedural-{seed}-*.safetensors")):
            continue  # resumable: a world's examples are written together
        for j, ex in enumerate(procedural_examples(base, seed, with_depth=seed >= end)):
            save_example(ex, out / f"procedural-{seed}-{j:02d}.safetensors")
            n += 1
    for folder in a.photos:
        name = Path(folder).name
        clip = import_any(folder)
        keep = [i for i in range(len(clip.rgb)) if not a.holdout_every or i % a.holdout_every]
        depths = [clip.depth[i] if clip.depth is not None and np.isfinite(clip.depth[i]).any() else None
                  for i in keep]
        for j, ex in enumerate(tqdm(photo_examples(base, [clip.rgb[i] for i in keep], [clip.camera(i) for i in keep],
                                                   np.asarray(clip.T_world_camera)[keep], width=a.width, name=name,
                                                   round_trips=a.round_trips, depths=depths,
                                                   sparse_worlds=a.sparse_worlds),
                                    desc=f"photos {name}", unit="ex")):
            save_example(ex, out / f"photos-{name}-{j:03d}.safetensors")
            n += 1
    print(f"{n} examples written to {out}")
    return 0
