"""The shipped default emotion model: accuracy on a fixed FER-2013 sample and its metadata.

Environment:

- ``FERVID_MODEL=PATH`` tests another model file instead of the shipped one.
- ``FERVID_ALLOW_NO_MODEL=1`` turns a missing model file into a skip; otherwise a missing
  default model fails the suite (a release without its model is broken).
- ``FERVID_DATA=DIR`` points at the shared data folder (default ``../shared/data``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from fervid.modelfile import DEFAULT_MODEL_PATH, EMOTIONS, LoadedModel, load_model
from fervid.training.data import FerPlusMode
from fervid.training.evaluate import EvalReport, evaluate_model, format_table

REPO = Path(__file__).resolve().parents[1]
#: First 100 files per class by name in fer2013/val (disgust has only 56): 656 faces.
PER_CLASS = 100
SAMPLE_SIZE = 6 * PER_CLASS + 56
MIN_ACCURACY = 0.60


@pytest.fixture(scope="module")
def model_path() -> Path:
    path = Path(os.environ.get("FERVID_MODEL", DEFAULT_MODEL_PATH))
    if not path.is_file():
        if os.environ.get("FERVID_ALLOW_NO_MODEL") == "1":
            pytest.skip(f"no model file at {path} and FERVID_ALLOW_NO_MODEL=1")
        pytest.fail(
            f"the default model {path} is missing: ship it (fervid train ... then copy "
            "model.safetensors there), point FERVID_MODEL at a model file, or set "
            "FERVID_ALLOW_NO_MODEL=1 to skip these tests"
        )
    return path


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = Path(os.environ.get("FERVID_DATA", REPO.parent / "shared" / "data"))
    if not (root / "fer2013" / "val").is_dir():
        pytest.fail(f"shared data not found at {root}; set FERVID_DATA to its folder")
    return root


@pytest.fixture(scope="module")
def model(model_path: Path) -> LoadedModel:
    return load_model(model_path)


@pytest.fixture(scope="module")
def report(model_path: Path, data_root: Path) -> EvalReport:
    # limit // 7 files per class folder = the first 100 of each class by file name.
    return evaluate_model(model_path, data_root / "fer2013" / "val", limit=7 * PER_CLASS)


def test_sample_is_the_fixed_one(report: EvalReport) -> None:
    assert report.num_images == SAMPLE_SIZE
    assert report.metrics.per_class.support.tolist() == [100, 56, 100, 100, 100, 100, 100]


def test_accuracy_on_fer2013_val_sample(report: EvalReport) -> None:
    assert report.metrics.accuracy > MIN_ACCURACY, "\n" + format_table(report)


def test_every_class_is_predicted(report: EvalReport) -> None:
    # A collapsed model can pass an accuracy bar on easy classes while never saying
    # "fear" or "disgust"; every class must be recalled at least sometimes.
    assert (report.metrics.per_class.recall > 0.05).all(), "\n" + format_table(report)


def test_metadata_names_classes_and_validation_metrics(model: LoadedModel) -> None:
    assert model.spec.class_names == EMOTIONS
    assert model.spec.temperature > 0
    val = model.info.get("val")
    assert isinstance(val, dict), "model info lacks the validation metrics ('val')"
    for key in ("fer2013_acc", "ferplus_acc"):
        assert key in val, f"model info 'val' lacks {key!r}: {sorted(val)}"
        assert 0.0 < val[key] <= 1.0, key


def test_temperature_is_fitted(model: LoadedModel, report: EvalReport) -> None:
    t = model.spec.temperature
    assert t != 1.0, "temperature is exactly 1: the model was saved before calibration"
    assert 0.2 < t < 5.0
    # Fitted on the validation splits, so it must not make NLL worse on this sample.
    assert report.metrics.nll <= report.metrics_t1.nll + 0.005


@pytest.mark.slow
@pytest.mark.parametrize(
    ("split", "mode", "key"),
    [
        ("fer2013/val", FerPlusMode.MAJORITY, "fer2013_acc"),
        ("ferplus/FER2013Valid", FerPlusMode.MAJORITY, "ferplus_acc"),
    ],
)
def test_recorded_val_accuracy_reproduces(
    model: LoadedModel, model_path: Path, data_root: Path, split: str, mode: FerPlusMode, key: str
) -> None:
    """The evaluation path (inference preprocessing) reproduces training's own numbers.

    Training scored the fp32 EMA weights; the file stores fp16, so a handful of borderline
    faces may flip: 0.5 % tolerance.
    """
    recorded = model.info["val"][key]
    got = evaluate_model(model_path, data_root / split, ferplus_mode=mode).metrics.accuracy
    assert math.isclose(got, recorded, abs_tol=0.005), (
        f"{key}: evaluated {got:.4f}, recorded {recorded:.4f}"
    )
