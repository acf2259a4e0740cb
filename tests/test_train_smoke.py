"""A short real training run on a few hundred shared images, then a resumed one.

Tiny recipe (32 px input, no augmentation, one intra-op thread so a busy 2-core machine
does not oversubscribe), 2 epochs, then ``resume`` to 3 epochs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fervid.model.modelfile import EMOTIONS, load_model
from fervid.training.evaluate import evaluate_model
from fervid.training.recipe import load_recipe
from fervid.training.train import BEST_MODEL, CHECKPOINT, FINAL_MODEL, TrainOptions, run_training

pytestmark = pytest.mark.slow

LIMIT = 224  # images per source: 32 per class from fer2013/train, the first 224 FER+ rows

RECIPE = """
name = "smoke"
seed = 0

[model]
input_size = 32
dropout = 0.0

[data]
train = [
  { name = "fer2013", path = "fer2013/train" },
  { name = "ferplus", path = "ferplus/FER2013Train", ferplus_mode = "soft" },
]
val = [{ name = "fer2013", path = "fer2013/val" }]

[optim]
epochs = 3
batch_size = 32
lr = 3e-3
warmup_epochs = 0.3
label_smoothing = 0.0
samples_per_epoch = 448
ema_decay = 0.9
class_weighting = "none"
patience = 10
threads = 1

[augment]
flip = 0.0
rotate_deg = 0.0
shift = 0.0
zoom = 0.0
brightness = 0.0
contrast = 0.0
erase_p = 0.0
"""


@pytest.fixture(scope="module", autouse=True)
def restore_threads() -> Iterator[None]:
    """The recipe's ``threads = 1`` sets torch's global thread count; give it back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _options(
    tmp: Path, data_root: Path, out: Path, *, epochs: int, resume: bool = False
) -> TrainOptions:
    recipe_path = tmp / "smoke.toml"
    if not recipe_path.is_file():
        recipe_path.write_text(RECIPE)
    return TrainOptions(
        recipe=load_recipe(recipe_path),
        data_root=data_root,
        out_dir=out,
        limit=LIMIT,
        epochs=epochs,
        resume=resume,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, Path]:
    """(tmp folder, run folder) of a finished 2-epoch run."""
    tmp = tmp_path_factory.mktemp("smoke")
    out = tmp / "run"
    messages: list[str] = []
    final = run_training(_options(tmp, data_root, out, epochs=2), progress=messages.append)
    assert final == out / FINAL_MODEL
    assert any("final model" in m for m in messages)  # progress goes through the hook
    return tmp, out


def _history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())


def test_run_writes_checkpoint_models_and_history(first_run: tuple[Path, Path]) -> None:
    _, out = first_run
    for name in (CHECKPOINT, BEST_MODEL, FINAL_MODEL, "history.json"):
        assert (out / name).is_file(), name
    history = _history(out)
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"epoch", "phase", "loss", "seconds", "fer2013_acc", "score"} <= set(history[0])


def test_final_model_loads_with_calibration_and_info(first_run: tuple[Path, Path]) -> None:
    _, out = first_run
    model = load_model(out / FINAL_MODEL)
    assert model.spec.input_size == 32 and model.spec.channels == "gray"
    assert model.spec.class_names == EMOTIONS
    assert model.spec.temperature > 0 and model.spec.temperature != 1.0  # fitted on val
    assert model.info["name"] == "smoke"
    assert model.info["history"] == _history(out)
    assert "fer2013_acc" in model.info["val"]
    with torch.inference_mode():
        logits = model.network(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


def test_training_loss_falls(first_run: tuple[Path, Path]) -> None:
    losses = [h["loss"] for h in _history(first_run[1])]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]


def test_resume_continues_from_checkpoint(first_run: tuple[Path, Path], data_root: Path) -> None:
    tmp, out = first_run
    resumed = tmp / "resumed"
    shutil.copytree(out, resumed)
    before = _history(resumed)
    messages: list[str] = []
    run_training(_options(tmp, data_root, resumed, epochs=3, resume=True), progress=messages.append)
    after = _history(resumed)
    assert any("resumed from" in m and "after epoch 2" in m for m in messages)
    assert [h["epoch"] for h in after] == [1, 2, 3]  # grew; did not restart at epoch 1
    assert after[:2] == before
    assert after[2]["loss"] < after[0]["loss"] - 0.1
    assert load_model(resumed / FINAL_MODEL).info["history"] == after


def test_evaluate_trained_model(
    first_run: tuple[Path, Path], data_root: Path, tmp_path: Path
) -> None:
    _, out = first_run
    report = evaluate_model(
        out / FINAL_MODEL, data_root / "fer2013" / "val", limit=70, out_dir=tmp_path
    )
    assert report.num_images == 70
    assert report.temperature == load_model(out / FINAL_MODEL).spec.temperature
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "report.json",
        "confusion.png",
        "roc.png",
        "reliability.png",
        "training_curves.png",
    } <= names
