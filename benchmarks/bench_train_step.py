"""Training images/s of one step of the real loop (fervid.training.train.train_one_epoch),
before and after the v3 speed-ups, at 72 and 96 px, on this machine's CPU.

Not a test: prints numbers. Synthetic uint8 faces stand in for the data (a step costs the
same whatever the pixels); the recipe is pipelines/train_v3.toml with one change per row:

- ``v2 loop``: all 19 feature modules train, per-tensor EMA (the v2 code), v2 augmentation;
- ``+ fused EMA``: one ``torch._foreach_lerp_`` per step instead of ~300 ``lerp_``;
- ``+ freeze stem + 3 blocks``: ``[init] freeze_first = 4`` (no backward through the
  largest activations);
- ``+ video corruptions``: the v3 recipe as shipped (what its augmentation costs).

Also a raw step (forward + backward + AdamW, no data, no EMA) for what was tried and not
kept: NCHW instead of channels-last, and ``torch.compile`` (inductor), with ``--compile``.

    python benchmarks/bench_train_step.py [--sizes 72 96] [--batches 6] [--compile]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fervid.model.modelfile import EMOTIONS, build_network
from fervid.training import train as T
from fervid.training.augment import AugmentSettings
from fervid.training.data import ImageSet
from fervid.training.recipe import Recipe, load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "pipelines" / "train_v3.toml"


@torch.no_grad()
def legacy_ema_update(self: T.Ema, model: torch.nn.Module, step: int) -> None:
    """The v2 EMA update, kept here as the "before" of the benchmark."""
    d = min(self.decay, (1 + step) / (10 + step))
    src = model.state_dict()
    for k, v in self.module.state_dict().items():
        if v.is_floating_point():
            v.lerp_(src[k], 1 - d)
        else:
            v.copy_(src[k])


def loop_rate(recipe: Recipe, batches: int, legacy_ema: bool) -> float:
    """images/s of train_one_epoch over ``batches`` batches, after a 2-batch warm-up."""
    spec = T.spec_from_recipe(recipe)
    bs = recipe.optim.batch_size
    rng = np.random.default_rng(0)
    n = bs * batches
    images = rng.integers(0, 256, (n, spec.input_size, spec.input_size), dtype=np.uint8)
    targets = np.eye(len(EMOTIONS), dtype=np.float32)[rng.integers(0, len(EMOTIONS), n)]
    train = [ImageSet(images=images, targets=targets, names=tuple(map(str, range(n))))]
    r = dataclasses.replace(recipe, train=recipe.train[:1])
    model = build_network(spec).to(memory_format=torch.channels_last)
    phase = T.Phase("finetune", 0, 1, recipe.init.finetune_lr)
    opt = T.make_optimizer(model, phase, r)
    ema = T.Ema(model, r.optim.ema_decay)
    original = T.Ema.update
    if legacy_ema:
        T.Ema.update = legacy_ema_update  # type: ignore[method-assign]
    try:
        cw = torch.ones(len(EMOTIONS))
        dev = torch.device("cpu")

        def run(k: int) -> float:
            rr = dataclasses.replace(
                r, optim=dataclasses.replace(r.optim, samples_per_epoch=k * bs)
            )
            t0 = time.perf_counter()
            T.train_one_epoch(model, ema, opt, train, spec, rr, cw, 0, 0, 1000, 1e-4, dev,
                              lambda _m: None)  # fmt: skip
            return time.perf_counter() - t0

        run(2)
        return batches * bs / run(batches)
    finally:
        T.Ema.update = original  # type: ignore[method-assign]


def raw_rate(size: int, channels_last: bool, compiled: bool, batches: int) -> float:
    net = build_network(T.spec_from_recipe(load_recipe(RECIPE)))
    x = torch.randn(128, 3, size, size)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fwd = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    y = torch.randint(0, 7, (128,))
    net.train()

    def step() -> None:
        loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * 128 / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[72, 96])
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow start)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    base = load_recipe(RECIPE)
    print(
        f"torch {torch.__version__}, {a.threads} threads, {platform.processor() or platform.machine()}"
    )
    print(f"{'size':>4}  {'configuration':<32} {'img/s':>7} {'vs v2 loop':>10}")
    for size in a.sizes:
        v3 = dataclasses.replace(base, input_size=size)
        plain_aug = AugmentSettings()  # v2's augmentation: corruptions off
        no_freeze = dataclasses.replace(v3.init, freeze_first=0)
        rows = [
            ("v2 loop", dataclasses.replace(v3, augment=plain_aug, init=no_freeze), True),
            ("+ fused EMA", dataclasses.replace(v3, augment=plain_aug, init=no_freeze), False),
            ("+ freeze stem + 3 blocks", dataclasses.replace(v3, augment=plain_aug), False),
            ("+ video corruptions (v3 recipe)", v3, False),
        ]
        ref = math.nan
        for name, recipe, legacy in rows:
            rate = loop_rate(recipe, a.batches, legacy)
            ref = rate if name == "v2 loop" else ref
            print(f"{size:>4}  {name:<32} {rate:7.1f} {rate / ref:9.2f}x", flush=True)
        for name, cl, comp in [
            ("raw step, NCHW", False, False),
            ("raw step, channels-last", True, False),
        ] + ([("raw step, channels-last + compile", True, True)] if a.compile else []):
            print(f"{size:>4}  {name:<32} {raw_rate(size, cl, comp, a.batches):7.1f}", flush=True)


if __name__ == "__main__":
    main()
