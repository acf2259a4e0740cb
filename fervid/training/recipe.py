"""Training recipes: one readable TOML file per recipe under ``pipelines/``."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from fervid.errors import ConfigError
from fervid.training.augment import AugmentSettings
from fervid.training.data import FerPlusMode


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """One data set: ``path`` relative to the data root; layout detected from its content."""

    name: str
    path: str
    ferplus_mode: FerPlusMode = FerPlusMode.MAJORITY
    weight: float = 1.0


class ClassWeighting(StrEnum):
    """Per-class loss weights from the training class frequencies."""

    NONE = "none"
    SQRT_INVERSE = "sqrt_inverse"
    INVERSE = "inverse"


@dataclass(frozen=True, kw_only=True)
class OptimSettings:
    epochs: int = 18
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    samples_per_epoch: int = 28_000
    ema_decay: float = 0.999
    class_weighting: ClassWeighting = ClassWeighting.SQRT_INVERSE
    patience: int = 6
    threads: int = 0
    #: mixup (Zhang et al., 2018) Beta(alpha, alpha) mixing of images and targets; 0 = off.
    mixup_alpha: float = 0.0
    #: validation split whose NLL fits the temperature ("" = all splits pooled).
    calibrate_on: str = ""
    #: run only the first ``run_epochs`` epochs of the ``epochs``-long schedule, then
    #: finalize (0 = all): how a stage records that it was cut short and continued by the
    #: next stage, so the recipe chain still reproduces what ran.
    run_epochs: int = 0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "class_weighting", ClassWeighting(self.class_weighting))
        except ValueError:
            raise ConfigError(
                f"[optim] class_weighting={self.class_weighting!r}; expected one of "
                f"{[m.value for m in ClassWeighting]}"
            ) from None
        if self.epochs < 1 or self.batch_size < 2 or self.samples_per_epoch < 2:
            raise ConfigError(
                "[optim] epochs >= 1, batch_size >= 2 and samples_per_epoch >= 2 expected"
            )
        if not 0 <= self.run_epochs <= self.epochs:
            raise ConfigError(f"[optim] run_epochs={self.run_epochs}; expected 0..epochs")
        if not self.lr > 0 or not 0 <= self.ema_decay < 1 or self.mixup_alpha < 0:
            raise ConfigError("[optim] lr > 0, 0 <= ema_decay < 1 and mixup_alpha >= 0 expected")


@dataclass(frozen=True, kw_only=True)
class InitSettings:
    """The papers' two phases, used only when ``--init`` gives pretrained weights."""

    head_epochs: int = 3
    head_lr: float = 3e-3
    finetune_lr: float = 5e-4
    #: how many of MobileNetV2's 19 feature blocks (counted from the end) train in phase 2.
    unfreeze_blocks: int = 8
    #: phase-2 learning rate of block i of n is ``finetune_lr * layer_decay ** (n - i)``.
    layer_decay: float = 1.0
    #: "frozen" or "reestimate": how the folded BatchNorm of the shared weights is handled.
    batchnorm: str = "frozen"
    #: training images used to re-estimate BatchNorm statistics.
    bn_images: int = 1024
    #: sha256 the ``--init`` file must have ("" = any): the recipe names its starting point.
    weights_sha256: str = ""
    #: how many feature modules counted from the input (0 = the stem) stay frozen, weights
    #: and BatchNorm statistics, in every phase. At 96 px they carry most of the activations,
    #: so not back-propagating through them is the cheapest step-time saving there is
    #: (benchmarks/bench_train_step.py); useful when continuing a trained fervid model.
    freeze_first: int = 0

    def __post_init__(self) -> None:
        from fervid.training.init import BatchNormMode

        if self.batchnorm not in {m.value for m in BatchNormMode}:
            raise ConfigError(
                f"[init] batchnorm={self.batchnorm!r}; expected one of "
                f"{[m.value for m in BatchNormMode]}"
            )
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"[init] layer_decay={self.layer_decay}; expected in (0, 1]")
        if not 1 <= self.unfreeze_blocks <= 19:
            raise ConfigError(f"[init] unfreeze_blocks={self.unfreeze_blocks}; expected 1..19")
        if not 0 <= self.freeze_first <= 18:
            raise ConfigError(f"[init] freeze_first={self.freeze_first}; expected 0..18")
        if self.head_epochs < 0 or not self.head_lr > 0 or not self.finetune_lr > 0:
            raise ConfigError("[init] head_epochs >= 0 and positive head_lr/finetune_lr expected")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    seed: int = 0
    input_size: int = 64
    channels: str = "gray"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    dropout: float = 0.2
    hidden: int = 0
    #: the shipped model classifies each face and its mirror image (ModelSpec.tta_flip)
    tta_flip: bool = False
    train: tuple[DataSource, ...] = ()
    val: tuple[DataSource, ...] = ()
    optim: OptimSettings = field(default_factory=OptimSettings)
    init: InitSettings = field(default_factory=InitSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_TOP_KEYS = {"name", "seed", "model", "data", "optim", "init", "augment"}
_MODEL_KEYS = {"input_size", "channels", "mean", "std", "dropout", "hidden", "tta_flip"}
_DATA_KEYS = {"train", "val"}
_SOURCE_KEYS = {"name", "path", "ferplus_mode", "weight"}


def _no_unknown(d: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(d) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _sources(items: list[dict[str, Any]], key: str) -> tuple[DataSource, ...]:
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or "path" not in it:
            raise ConfigError(f"[{key}] entry {i} must be a table with a 'path'")
        _no_unknown(it, _SOURCE_KEYS, f"[{key}] entry {i}")
        try:
            mode = FerPlusMode(it.get("ferplus_mode", "majority"))
        except ValueError:
            raise ConfigError(
                f"[{key}] entry {i}: ferplus_mode={it.get('ferplus_mode')!r}; expected one of "
                f"{[m.value for m in FerPlusMode]}"
            ) from None
        out.append(
            DataSource(
                name=it.get("name", it["path"]),
                path=it["path"],
                ferplus_mode=mode,
                weight=float(it.get("weight", 1.0)),
            )
        )
    return tuple(out)


def load_recipe(path: Path) -> Recipe:
    """Parse a recipe TOML file; unknown keys are errors so typos do not pass silently."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        with open(path, "rb") as f:
            d = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"recipe {path} is not valid TOML: {e}") from None
    try:
        _no_unknown(d, _TOP_KEYS, f"recipe {path}")
        model = d.get("model", {})
        data = d.get("data", {})
        _no_unknown(model, _MODEL_KEYS, f"recipe {path} [model]")
        _no_unknown(data, _DATA_KEYS, f"recipe {path} [data]")
        return Recipe(
            name=d["name"],
            seed=int(d.get("seed", 0)),
            input_size=int(model.get("input_size", 64)),
            channels=model.get("channels", "gray"),
            mean=tuple(model.get("mean", (0.5, 0.5, 0.5))),
            std=tuple(model.get("std", (0.25, 0.25, 0.25))),
            dropout=float(model.get("dropout", 0.2)),
            hidden=int(model.get("hidden", 0)),
            tta_flip=bool(model.get("tta_flip", False)),
            train=_sources(data.get("train", []), "data.train"),
            val=_sources(data.get("val", []), "data.val"),
            optim=OptimSettings(**d.get("optim", {})),
            init=InitSettings(**d.get("init", {})),
            augment=AugmentSettings(**d.get("augment", {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"recipe {path}: {e}") from None
