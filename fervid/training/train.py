"""Training recipe, readable top to bottom: load_data -> train_one_epoch -> evaluate -> main.

Checkpoints are safetensors (model, EMA model, optimizer moments) with the recipe and
history as JSON metadata, so ``--resume`` never unpickles anything. Each epoch reseeds
its own generator from (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fervid.errors import ConfigError, DataError
from fervid.model import classify
from fervid.model.modelfile import EMOTIONS, ModelSpec, build_network, save_model
from fervid.model.preprocess import resize_faces, standardize
from fervid.output.atomic import atomic_path, write_bytes
from fervid.training.augment import augment
from fervid.training.data import ImageSet, load_dataset
from fervid.training.recipe import DataSource, Recipe

log = logging.getLogger("fervid.train")
CHECKPOINT = "checkpoint.safetensors"
BEST_MODEL = "best.safetensors"
FINAL_MODEL = "model.safetensors"


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """Structural settings of one training run (the recipe holds the tunables)."""

    recipe: Recipe
    data_root: Path
    out_dir: Path
    resume: bool = False
    init: Path | None = None
    epochs: int | None = None  # override the recipe's epoch count
    limit: int | None = None  # images per source (smoke tests)
    device: str = "cpu"


def spec_from_recipe(r: Recipe, temperature: float = 1.0) -> ModelSpec:
    return ModelSpec(
        input_size=r.input_size, channels=r.channels, mean=r.mean, std=r.std,
        class_names=EMOTIONS, dropout=r.dropout, hidden=r.hidden, temperature=temperature,
        tta_flip=r.tta_flip,
    )  # fmt: skip


# ----------------------------------------------------------------------------- data
def load_source(src: DataSource, opts: TrainOptions, spec: ModelSpec) -> ImageSet:
    """Load one source and resize to the model input with the inference code path."""
    path = opts.data_root / src.path
    kw: dict[str, Any] = {}
    if opts.limit is not None:
        kw = (
            {"limit": opts.limit}
            if (path / "label.csv").is_file()
            else {"limit_per_class": max(1, opts.limit // 7)}
        )
    ds = load_dataset(path, ferplus_mode=src.ferplus_mode, size=None, **kw)
    images = resize_faces(list(ds.images), spec)
    return ImageSet(images=images, targets=ds.targets, names=ds.names, source=ds.source)


def load_data(opts: TrainOptions, spec: ModelSpec) -> tuple[list[ImageSet], dict[str, ImageSet]]:
    if not opts.recipe.train:
        raise ConfigError("recipe has no [data] train sources")
    train = [load_source(s, opts, spec) for s in opts.recipe.train]
    val = {s.name: load_source(s, opts, spec) for s in opts.recipe.val}
    for s, ds in zip(opts.recipe.train, train, strict=True):
        log.info("train source %s: %d images", s.name, len(ds))
    return train, val


def class_weights(train: list[ImageSet], mode: str) -> torch.Tensor:
    freq = sum(ds.targets.sum(0) for ds in train)
    freq = np.asarray(freq, np.float64) / max(1e-9, float(np.sum(freq)))
    if mode == "none":
        w = np.ones_like(freq)
    elif mode == "sqrt_inverse":
        w = 1.0 / np.sqrt(np.maximum(freq, 1e-4))
    elif mode == "inverse":
        w = 1.0 / np.maximum(freq, 1e-4)
    else:
        raise ConfigError(f"class_weighting={mode!r}; expected none, sqrt_inverse or inverse")
    w = w / float((w * freq).sum())  # expected weight of a training sample is 1
    return torch.tensor(w, dtype=torch.float32)


def epoch_indices(
    train: list[ImageSet], weights: list[float], n: int, g: torch.Generator
) -> list[tuple[int, int]]:
    """(source, index) pairs for one epoch: ``n`` samples split across sources by weight."""
    total_w = sum(weights)
    pairs: list[tuple[int, int]] = []
    for si, (ds, w) in enumerate(zip(train, weights, strict=True)):
        k = min(len(ds), max(1, round(n * w / total_w)))
        pairs += [(si, int(i)) for i in torch.randperm(len(ds), generator=g)[:k]]
    order = torch.randperm(len(pairs), generator=g)
    return [pairs[i] for i in order]


# ----------------------------------------------------------------------------- model / optim
def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup then cosine decay to 1% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


class Ema:
    """Exponential moving average of weights and buffers, with the usual warm-up of the decay."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = build_network_like(model)
        self.module.load_state_dict(model.state_dict())
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        src = model.state_dict()
        floats, targets = [], []
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                floats.append(v)
                targets.append(src[k])
            else:
                v.copy_(src[k])
        # one fused call instead of ~300 small kernels a step (same arithmetic as lerp_)
        torch._foreach_lerp_(floats, targets, 1 - d)


def build_network_like(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def soft_ce(logits: torch.Tensor, target: torch.Tensor, cw: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross entropy against a target distribution (N, C)."""
    logp = F.log_softmax(logits.float(), dim=1)
    per_sample = -(target * logp).sum(1)
    w = (target * cw).sum(1)
    return (per_sample * w).sum() / w.sum()


def batch_tensor(images: np.ndarray, spec: ModelSpec) -> torch.Tensor:
    """uint8 (N, S, S) -> float (N, 1, S, S) in [0, 1]."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


def set_trainable(
    model: nn.Module, phase: str, unfreeze_blocks: int, freeze_first: int = 0
) -> list[nn.Parameter]:
    """Phase "head": classifier only; "finetune": head + last blocks; "all": everything.

    In every phase the first ``freeze_first`` feature modules stay frozen."""
    for p in model.parameters():
        p.requires_grad_(phase == "all")
    if phase != "all":
        feats, head = model.features, model.classifier
        assert isinstance(feats, nn.Module) and isinstance(head, nn.Module)
        blocks = list(feats.children())[-unfreeze_blocks:] if phase == "finetune" else []
        for m in [head, *blocks]:
            for p in m.parameters():
                p.requires_grad_(True)
    for m in leading_modules(model, freeze_first):
        for p in m.parameters():
            p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def leading_modules(model: nn.Module, k: int) -> list[nn.Module]:
    """The first ``k`` feature modules (the stem is module 0)."""
    feats = model.features
    assert isinstance(feats, nn.Module)
    return list(feats.children())[:k]


# ----------------------------------------------------------------------------- loops
def train_one_epoch(
    model: nn.Module, ema: Ema, opt: torch.optim.Optimizer, train: list[ImageSet], spec: ModelSpec,
    recipe: Recipe, cw: torch.Tensor, epoch: int, step: int, total_steps: int, base_lr: float,
    device: torch.device, progress: Callable[[str], None], freeze_bn: bool = False,
) -> tuple[int, float]:  # fmt: skip
    o = recipe.optim
    g = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)
    # dropout draws from the global generator: reseed it per epoch so resume is exact
    torch.manual_seed(recipe.seed * 100_003 + epoch)
    mix_rng = np.random.default_rng(recipe.seed * 100_003 + epoch)
    pairs = epoch_indices(train, [s.weight for s in recipe.train], o.samples_per_epoch, g)
    warmup = int(o.warmup_epochs * math.ceil(len(pairs) / o.batch_size))
    model.train()
    if freeze_bn:
        from fervid.training.init import freeze_batchnorm

        freeze_batchnorm(model)
    for m in leading_modules(model, recipe.init.freeze_first):
        m.eval()  # frozen modules keep their BatchNorm statistics too
    losses = []
    eps = recipe.optim.label_smoothing
    t0 = time.time()
    for b0 in range(0, len(pairs), o.batch_size):
        chunk = pairs[b0 : b0 + o.batch_size]
        if len(chunk) < 2:
            continue
        imgs = np.stack([train[s].images[i] for s, i in chunk])
        tgt = torch.from_numpy(np.stack([train[s].targets[i] for s, i in chunk]))
        tgt = tgt * (1 - eps) + eps / tgt.shape[1]
        x = standardize(augment(batch_tensor(imgs, spec), recipe.augment, g), spec)
        if o.mixup_alpha > 0:
            lam = float(mix_rng.beta(o.mixup_alpha, o.mixup_alpha))
            perm = torch.randperm(len(x), generator=g)
            x = lam * x + (1 - lam) * x[perm]
            tgt = lam * tgt + (1 - lam) * tgt[perm]
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        lr = lr_at(step, total_steps, warmup, base_lr)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        loss = soft_ce(logits, tgt.to(device), cw.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model, step)
        step += 1
        losses.append(float(loss.detach()))
        if len(losses) % 20 == 0:
            rate = len(losses) * o.batch_size / (time.time() - t0)
            progress(
                f"epoch {epoch + 1} batch {len(losses)} loss {np.mean(losses[-20:]):.4f} lr {lr:.2e} {rate:.0f} img/s"
            )
    return step, float(np.mean(losses)) if losses else float("nan")


def predict_logits(
    model: nn.Module, ds: ImageSet, spec: ModelSpec, device: torch.device, batch: int = 256
) -> np.ndarray:
    """Logits (N, C) for an evaluation set, through the pipeline's inference function.

    Without test-time flipping: model selection and the temperature fit see one view, so
    turning ``tta_flip`` on in a recipe does not change which weights are kept."""
    return classify.predict_logits(
        model, ds.images, spec, batch_size=batch, device=device, tta_flip=False
    )[0]


def evaluate(
    model: nn.Module, val: dict[str, ImageSet], spec: ModelSpec, device: torch.device
) -> dict[str, float]:
    res = {}
    for name, ds in val.items():
        logits = predict_logits(model, ds, spec, device)
        res[f"{name}_acc"] = float((logits.argmax(1) == ds.labels).mean())
    res["score"] = float(np.mean(list(res.values()))) if res else 0.0
    return res


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T > 0 minimising NLL of softmax(logits / T) (Guo et al., 2017)."""
    z = torch.from_numpy(logits).float()
    y = torch.from_numpy(labels).long()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: Path, model: nn.Module, ema: Ema, opt: torch.optim.Optimizer, meta: dict[str, Any]
) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model/{k}"] = v.detach().cpu().contiguous()
    for k, v in ema.module.state_dict().items():
        tensors[f"ema/{k}"] = v.detach().cpu().contiguous()
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"opt/{i}/{k}"] = t.detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"fervid_checkpoint": json.dumps(meta)})


def load_checkpoint(
    path: Path, model: nn.Module, ema: Ema, opt: torch.optim.Optimizer
) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["fervid_checkpoint"])
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    ema.module.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema/")})
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, i, name = k.split("/", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return meta


# ----------------------------------------------------------------------------- main
@dataclass(frozen=True)
class Phase:
    """One stage of a run: which parameters train, at what base rate, for which epochs."""

    name: str  # "all" (from scratch), "head" or "finetune" (from --init)
    first_epoch: int
    end_epoch: int
    base_lr: float


def plan_phases(r: Recipe, epochs: int, init: bool) -> list[Phase]:
    if not init:
        return [Phase("all", 0, epochs, r.optim.lr)]
    head = min(r.init.head_epochs, epochs)
    return [
        Phase("head", 0, head, r.init.head_lr),
        Phase("finetune", head, epochs, r.init.finetune_lr),
    ]


def make_optimizer(model: nn.Module, phase: Phase, r: Recipe) -> torch.optim.Optimizer:
    from fervid.training.init import param_groups_layer_decay

    set_trainable(model, phase.name, r.init.unfreeze_blocks, r.init.freeze_first)
    if phase.name == "finetune" and r.init.layer_decay < 1:
        groups = param_groups_layer_decay(
            model, phase.base_lr, r.init.layer_decay, r.optim.weight_decay
        )
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {
                "params": [p for p in params if p.ndim > 1],
                "weight_decay": r.optim.weight_decay,
                "lr_scale": 1.0,
            },
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": 1.0},
        ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=phase.base_lr)


def run_training(opts: TrainOptions, progress: Callable[[str], None] = log.info) -> Path:
    """Train (or resume) a recipe; returns the path of the final model file.

    Resume restores the phase the checkpoint was written in, with its weights, EMA and
    optimizer moments, and continues from the next epoch (batches are reseeded per epoch).
    """
    r = opts.recipe
    torch.manual_seed(r.seed)
    np.random.seed(r.seed)
    if r.optim.threads > 0:
        torch.set_num_threads(r.optim.threads)
    device = torch.device(opts.device)
    spec = spec_from_recipe(r)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    train, val = load_data(opts, spec)
    if not val:
        raise DataError("recipe has no [data] val sources; early stopping needs a validation split")
    cw = class_weights(train, r.optim.class_weighting)
    progress(f"class weights {dict(zip(EMOTIONS, [round(float(w), 2) for w in cw], strict=True))}")

    model = build_network(spec).to(device).to(memory_format=torch.channels_last)
    epochs = opts.epochs if opts.epochs is not None else r.optim.epochs
    init_info: dict[str, Any] = {}
    if opts.init is not None:
        from fervid.training.init import load_init, reestimate_batchnorm

        sha = load_init(model, opts.init)
        if r.init.weights_sha256 and sha != r.init.weights_sha256:
            raise ConfigError(
                f"--init {opts.init} has sha256 {sha}, but the recipe was made from "
                f"{r.init.weights_sha256} ([init] weights_sha256); pass the file the recipe names"
            )
        init_info = {"path": opts.init.name, "sha256": sha, "batchnorm": r.init.batchnorm}
        progress(f"init from {opts.init} (sha256 {sha[:12]}), batchnorm {r.init.batchnorm}")
        if r.init.batchnorm == "reestimate":
            g = torch.Generator().manual_seed(r.seed)
            pairs = epoch_indices(train, [s.weight for s in r.train], r.init.bn_images, g)
            imgs = np.stack([train[s].images[i] for s, i in pairs])
            x = standardize(batch_tensor(imgs, spec), spec).to(device)
            reestimate_batchnorm(model, list(x.split(r.optim.batch_size)))
    phases = plan_phases(r, epochs, opts.init is not None)

    ema = Ema(model, r.optim.ema_decay)
    steps_per_epoch = math.ceil(r.optim.samples_per_epoch / r.optim.batch_size)
    ckpt_path = opts.out_dir / CHECKPOINT
    history: list[dict[str, Any]] = []
    start_epoch, best, stale = 0, -1.0, 0
    resume_meta = _meta(ckpt_path) if opts.resume and ckpt_path.is_file() else None
    if resume_meta is not None:
        history, best, stale = resume_meta["history"], resume_meta["best"], resume_meta["stale"]
        start_epoch = resume_meta["epoch"]

    for phase in phases:
        opt = make_optimizer(model, phase, r)
        if resume_meta is not None and resume_meta.get("phase") == phase.name:
            load_checkpoint(ckpt_path, model, ema, opt)
            progress(f"resumed from {ckpt_path} after epoch {start_epoch} ({phase.name} phase)")
        if phase.end_epoch <= start_epoch:
            continue
        n_epochs = phase.end_epoch - phase.first_epoch
        for epoch in range(max(phase.first_epoch, start_epoch), phase.end_epoch):
            if stale >= r.optim.patience or 0 < r.optim.run_epochs <= epoch:
                break
            t0 = time.time()
            local_step = (epoch - phase.first_epoch) * steps_per_epoch
            _, loss = train_one_epoch(
                model, ema, opt, train, spec, r, cw, epoch, local_step,
                steps_per_epoch * n_epochs, phase.base_lr, device, progress,
                freeze_bn=opts.init is not None and (phase.name == "head" or r.init.batchnorm == "frozen"),
            )  # fmt: skip
            metrics = evaluate(ema.module, val, spec, device)
            improved = metrics["score"] > best
            if improved:
                best, stale = metrics["score"], 0
                save_model(
                    opts.out_dir / BEST_MODEL,
                    ema.module,
                    spec,
                    {"epoch": epoch + 1, "val": metrics},
                )
            else:
                stale += 1
            history.append(
                {
                    "epoch": epoch + 1,
                    "phase": phase.name,
                    "loss": loss,
                    "seconds": time.time() - t0,
                    **metrics,
                }
            )
            meta = {"epoch": epoch + 1, "best": best, "stale": stale, "phase": phase.name,
                    "history": history, "recipe": r.to_json(), "init": init_info}  # fmt: skip
            save_checkpoint(ckpt_path, model, ema, opt, json.loads(json.dumps(meta, default=str)))
            write_bytes(opts.out_dir / "history.json", json.dumps(history, indent=2).encode())
            progress(
                f"epoch {epoch + 1}/{epochs} [{phase.name}] loss {loss:.4f} "
                + " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                + (" *" if improved else "")
            )
        start_epoch = max(start_epoch, phase.end_epoch)

    return finalize(opts, spec, val, device, history, progress, init_info)


def _meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["fervid_checkpoint"])


def finalize(
    opts: TrainOptions, spec: ModelSpec, val: dict[str, ImageSet], device: torch.device,
    history: list[dict[str, Any]], progress: Callable[[str], None],
    init_info: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Best EMA weights + a temperature fitted on the validation splits -> final model file."""
    from fervid.model.modelfile import load_model

    best = load_model(opts.out_dir / BEST_MODEL, device=device)
    cal = opts.recipe.optim.calibrate_on
    if cal and cal not in val:
        raise ConfigError(f"[optim] calibrate_on={cal!r}; expected one of {sorted(val)}")
    cal_sets = [val[cal]] if cal else list(val.values())
    logits = np.concatenate([predict_logits(best.network, ds, spec, device) for ds in cal_sets])
    labels = np.concatenate([ds.labels for ds in cal_sets])
    temperature = fit_temperature(logits, labels)
    final_spec = spec_from_recipe(opts.recipe, temperature=temperature)
    info = {
        "name": opts.recipe.name,
        "training_data": [
            {"name": s.name, "path": s.path, "ferplus_mode": s.ferplus_mode.value}
            for s in opts.recipe.train
        ],
        "recipe": opts.recipe.to_json(),
        "init": init_info or None,
        "calibrated_on": cal or "all validation splits",
        "best_epoch": best.info.get("epoch"),
        "val": best.info.get("val"),
        "history": history,
    }
    out = opts.out_dir / FINAL_MODEL
    save_model(out, best.network, final_spec, json.loads(json.dumps(info, default=str)))
    progress(f"final model {out} (temperature {temperature:.3f})")
    return out
