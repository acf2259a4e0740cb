"""evaluate_model on shared data with a small random-weights model file (plumbing, not skill)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fervid.errors import ConfigError, DataError, ModelError
from fervid.model.classify import EmotionClassifier
from fervid.model.modelfile import EMOTIONS, ModelSpec, build_network, load_model, save_model
from fervid.model.preprocess import resize_faces, to_model_input
from fervid.settings import ClassifySettings, Device
from fervid.training.data import FerPlusMode, load_folder
from fervid.training.evaluate import (
    EvalReport,
    evaluate_model,
    format_table,
    measure_inference_speed,
)

SPEC = ModelSpec(input_size=32, width_mult=0.25, temperature=2.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def input_sensitive_network(spec: ModelSpec, data_root: Path) -> torch.nn.Module:
    """Random weights whose outputs depend on the face.

    A freshly initialised MobileNetV2 in eval mode gives near-constant logits (its BatchNorm
    statistics do not match real activations), which would let flip and parity checks pass
    vacuously. Fit the BatchNorm statistics on 140 training faces and widen the head.
    """
    torch.manual_seed(0)
    net = build_network(spec)
    faces = load_folder(data_root / "fer2013" / "train", limit_per_class=20, size=None).images
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the one batch
    net.train()
    with torch.no_grad():
        net(to_model_input(list(faces), spec))
        net.classifier[-1].weight.mul_(5.0)
    return net.eval()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    history = [
        {
            "epoch": e,
            "phase": "all",
            "loss": 2.0 - 0.1 * e,
            "seconds": 1.0,
            "fer2013_acc": 0.2 + 0.05 * e,
            "score": 0.2 + 0.05 * e,
        }
        for e in (1, 2, 3)
    ]
    net = input_sensitive_network(SPEC, data_root)
    save_model(path, net, SPEC, {"name": "tiny", "history": history})
    return path


@pytest.fixture(scope="module")
def folder_report(
    model_path: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> EvalReport:
    out = tmp_path_factory.mktemp("eval")
    return evaluate_model(model_path, data_root / "fer2013" / "val", limit=70, out_dir=out)


def test_folder_report_describes_the_run(folder_report: EvalReport, model_path: Path) -> None:
    r = folder_report
    assert r.num_images == 70 and r.layout == "folder" and r.ferplus_mode is None
    assert r.metrics.per_class.support.tolist() == [10] * 7
    assert r.model_path == str(model_path) and r.model_sha256 == load_model(model_path).sha256
    assert r.model_name == "tiny" and r.temperature == 2.0 and r.class_names == EMOTIONS
    assert r.probs.shape == (70, 7) and r.labels.shape == (70,)
    np.testing.assert_allclose(r.probs.sum(1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(r.labels, np.repeat(np.arange(7), 10))
    assert r.metrics.accuracy == pytest.approx(float(np.mean(r.probs.argmax(1) == r.labels)))


def test_temperature_changes_calibration_not_predictions(folder_report: EvalReport) -> None:
    m, m1 = folder_report.metrics, folder_report.metrics_t1
    assert m.accuracy == m1.accuracy
    np.testing.assert_array_equal(m.confusion, m1.confusion)
    # T = 2 flattens the distribution: lower mean confidence than at T = 1.
    conf = np.nansum(m.reliability.confidence * m.reliability.count) / 70
    conf1 = np.nansum(m1.reliability.confidence * m1.reliability.count) / 70
    assert conf < conf1
    assert m.nll != m1.nll


def test_probabilities_match_the_inference_classifier(
    folder_report: EvalReport, model_path: Path, data_root: Path
) -> None:
    """Same pixels and temperature as `fervid process`: the classifier gives the same probs."""
    ds = load_folder(data_root / "fer2013" / "val", limit_per_class=10, size=None)
    clf = EmotionClassifier(settings=ClassifySettings(model_path=model_path, device=Device.CPU))
    probs = clf(resize_faces(list(ds.images), clf.spec))
    np.testing.assert_allclose(folder_report.probs, probs, rtol=1e-4, atol=1e-6)
    assert folder_report.probs.std(axis=0).min() > 0.01  # the model does look at the faces


def test_report_json_and_figures(
    folder_report: EvalReport, tmp_path: Path, model_path: Path, data_root: Path
) -> None:
    evaluate_model(model_path, data_root / "fer2013" / "val", limit=14, out_dir=tmp_path)
    text = (tmp_path / "report.json").read_text()

    def no_nan(c: str) -> None:
        raise AssertionError(f"report.json holds {c}, which is not JSON")

    doc = json.loads(text, parse_constant=no_nan)
    assert doc["model"]["sha256"] == folder_report.model_sha256
    assert doc["data"]["num_images"] == 14 and doc["data"]["class_counts"]["fear"] == 2
    assert doc["settings"] == {
        "ferplus_mode": None,
        "tta_flip": False,
        "limit": 14,
        "batch_size": 256,
    }
    per_class = doc["metrics"]["per_class"]
    assert [c["class"] for c in per_class] == list(EMOTIONS)
    assert len(doc["metrics"]["confusion"]) == 7
    assert len(doc["metrics"]["reliability"]["count"]) == 15
    for name in ("confusion.png", "roc.png", "reliability.png", "training_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
    assert set(doc["figures"]) == {
        "confusion.png",
        "roc.png",
        "reliability.png",
        "training_curves.png",
    }


def test_format_table(folder_report: EvalReport) -> None:
    text = format_table(folder_report)
    lines = text.splitlines()
    for name in EMOTIONS:
        assert any(line.startswith(name) for line in lines), name
    assert f"accuracy  {folder_report.metrics.accuracy:.4f}" in text
    assert "macro-F1" in text and "ECE" in text and "NLL" in text and "T = 1:" in text


def test_ferplus_soft_mode_with_tta(model_path: Path, data_root: Path) -> None:
    r = evaluate_model(
        model_path,
        data_root / "ferplus" / "FER2013Valid",
        limit=30,
        ferplus_mode=FerPlusMode.SOFT,
        tta_flip=True,
    )
    assert r.layout == "ferplus" and r.ferplus_mode is FerPlusMode.SOFT and r.tta_flip
    assert r.num_images == 30
    assert "FER+ soft" in format_table(r) and "flip TTA" in format_table(r)


def test_flip_tta_is_mirror_invariant(model_path: Path, data_root: Path, tmp_path: Path) -> None:
    """With TTA, a set and its mirror image give the same probabilities; without, not."""
    src = data_root / "fer2013" / "val"
    for d in ("plain", "mirror"):
        (tmp_path / d / "happy").mkdir(parents=True)
    for f in sorted((src / "happy").iterdir())[:6]:
        shutil.copy(f, tmp_path / "plain" / "happy" / f.name)
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(tmp_path / "mirror" / "happy" / (f.stem + ".png")), cv2.flip(img, 1))
    a = evaluate_model(model_path, tmp_path / "plain", tta_flip=True)
    b = evaluate_model(model_path, tmp_path / "mirror", tta_flip=True)
    np.testing.assert_allclose(a.probs, b.probs, rtol=1e-4, atol=1e-6)
    assert math.isnan(a.metrics.auc[0])  # only one class present: one-vs-rest AUC undefined
    c = evaluate_model(model_path, tmp_path / "plain")
    d = evaluate_model(model_path, tmp_path / "mirror")
    assert np.abs(c.probs - d.probs).max() > 1e-4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ConfigError, "batch_size"),
        ({"limit": 0}, ConfigError, "limit"),
        ({"ferplus_mode": "vote"}, ConfigError, r"'vote'.*majority.*soft"),
        ({"data": "no/such/folder"}, DataError, "does not exist"),
        ({"model_path": "missing.safetensors"}, ModelError, "does not exist"),
    ],
)
def test_bad_arguments(
    model_path: Path, data_root: Path, kwargs: dict, error: type, match: str
) -> None:
    args = {"model_path": model_path, "data": data_root / "fer2013" / "val", "limit": 7, **kwargs}
    with pytest.raises(error, match=match):
        evaluate_model(args.pop("model_path"), Path(args.pop("data")), **args)


def test_model_with_other_classes_is_refused(tmp_path: Path, data_root: Path) -> None:
    spec = ModelSpec(input_size=32, width_mult=0.25, class_names=("happy", "sad", "other"))
    path = tmp_path / "three.safetensors"
    save_model(path, build_network(spec).eval(), spec)
    with pytest.raises(ModelError, match="classes"):
        evaluate_model(path, data_root / "fer2013" / "val", limit=7)


def test_measure_inference_speed_returns_a_rate(model_path: Path) -> None:
    rate = measure_inference_speed(model_path, batch_size=4, seconds=0.05, crop_size=40)
    assert math.isfinite(rate) and rate > 0
    with pytest.raises(ConfigError, match="batch_size"):
        measure_inference_speed(model_path, batch_size=0)
