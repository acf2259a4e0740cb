"""Every tunable is validated in its settings class: a ConfigError naming the option,
the expected and the actual value, raised when the settings are built (before any
video), NaN and inf included."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest

from fervid import settings as s
from fervid.errors import ConfigError
from fervid.longitudinal.patient import PatientSettings
from fervid.longitudinal.summary import IndexSettings
from fervid.longitudinal.trends import TrendSettings

#: Every per-stage settings class that holds numbers.
STAGE_CLASSES = (
    s.SampleSettings,
    s.DetectSettings,
    s.CropSettings,
    s.ClassifySettings,
    s.TrackSettings,
    s.SmoothSettings,
    IndexSettings,  # fervid summarize
    TrendSettings,  # fervid trends / report
    PatientSettings,  # which face is the patient (summarize / trends / report / nightly)
)


def float_fields(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    return [
        f.name
        for f in dataclasses.fields(cls)
        if hints[f.name] is float or hints[f.name] == float | None
    ]


FLOAT_FIELDS = [(cls, name) for cls in STAGE_CLASSES for name in float_fields(cls)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("cls", "name"), FLOAT_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FLOAT_FIELDS]
)
def test_non_finite_numbers_are_refused_everywhere(cls: type, name: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=f"={bad}; expected"):
        cls(**{name: bad})


def test_every_float_tunable_is_covered() -> None:
    """The generic test above really sees the tunables (guards against a typing change)."""
    names = {f"{c.__name__}.{n}" for c, n in FLOAT_FIELDS}
    assert {
        "SampleSettings.fps",
        "DetectSettings.score_threshold",
        "DetectSettings.nms_iou",
        "DetectSettings.max_aspect",
        "CropSettings.margin",
        "TrackSettings.min_iou",
        "TrackSettings.max_center_dist",
        "TrackSettings.max_gap_s",
        "SmoothSettings.seconds",
        "SmoothSettings.min_segment_s",
        "SmoothSettings.hysteresis",
        "IndexSettings.surprise_weight",
        "TrendSettings.threshold",
        "TrendSettings.sd_floor",
        "TrendSettings.min_face_s",
        "PatientSettings.near_tie",
        "PatientSettings.phantom_det",
    } <= names


# (settings class, keyword arguments, phrase the one-line message must contain)
BAD_SETTINGS = {
    "fps 0": (s.SampleSettings, {"fps": 0.0}, "--fps=0.0; expected a positive"),
    "fps negative": (s.SampleSettings, {"fps": -2.0}, "--fps=-2.0"),
    "fps and every_n": (s.SampleSettings, {"fps": 2.0, "every_n": 3}, "exactly one of --fps"),
    "every_n 0": (s.SampleSettings, {"fps": None, "every_n": 0}, "--every-n=0"),
    "every_n float": (s.SampleSettings, {"fps": None, "every_n": 2.5}, "--every-n=2.5"),
    "max_side 0": (s.SampleSettings, {"max_side": 0}, "max_side=0"),
    "threshold 0": (s.DetectSettings, {"score_threshold": 0.0}, "--det-threshold=0.0"),
    "threshold 1": (s.DetectSettings, {"score_threshold": 1.0}, "--det-threshold=1.0"),
    "min face 0": (s.DetectSettings, {"min_face_px": 0}, "--min-face=0"),
    "nms 0": (s.DetectSettings, {"nms_iou": 0.0}, "=0.0; expected a value in (0, 1)"),
    "aspect below 1": (s.DetectSettings, {"max_aspect": 0.5}, "max_aspect=0.5"),
    "margin negative": (s.CropSettings, {"margin": -0.1}, "--margin=-0.1"),
    "batch 0": (s.ClassifySettings, {"batch_size": 0}, "--batch-size=0"),
    "batch bool": (s.ClassifySettings, {"batch_size": True}, "--batch-size=True"),
    "device string": (s.ClassifySettings, {"device": "gpu"}, "--device='gpu'"),
    "min_iou above 1": (
        s.TrackSettings,
        {"min_iou": 1.5},
        "min_iou=1.5; expected a value in [0, 1]",
    ),
    "min_iou negative": (s.TrackSettings, {"min_iou": -0.1}, "min_iou=-0.1"),
    "center dist negative": (s.TrackSettings, {"max_center_dist": -1.0}, "max_center_dist=-1.0"),
    "max gap 0": (s.TrackSettings, {"max_gap_s": 0.0}, "--max-gap-seconds=0.0"),
    "max gap negative": (s.TrackSettings, {"max_gap_s": -1.0}, "--max-gap-seconds=-1.0"),
    "smoothing negative": (s.SmoothSettings, {"seconds": -1.0}, "--smoothing-seconds=-1.0"),
    "min segment negative": (s.SmoothSettings, {"min_segment_s": -0.5}, "--min-segment-seconds"),
    "hysteresis negative": (s.SmoothSettings, {"hysteresis": -0.1}, "--hysteresis=-0.1"),
    "hysteresis 1": (s.SmoothSettings, {"hysteresis": 1.0}, "--hysteresis=1.0"),
    "method string": (s.SmoothSettings, {"method": "gauss"}, "--smoothing='gauss'"),
}


@pytest.mark.parametrize(("cls", "kwargs", "phrase"), BAD_SETTINGS.values(), ids=BAD_SETTINGS)
def test_bad_settings_name_the_option_and_the_value(cls: type, kwargs: dict, phrase: str) -> None:
    with pytest.raises(ConfigError) as e:
        cls(**kwargs)
    message = str(e.value)
    assert phrase in message and "expected" in message and "\n" not in message, message


# Values at the edges of each range are accepted (validation is not stricter than the
# stages need).
GOOD_SETTINGS = [
    (s.SampleSettings, {"fps": 0.1}),
    (s.SampleSettings, {"fps": None, "every_n": 1}),
    (s.CropSettings, {"margin": 0.0}),
    (s.TrackSettings, {"min_iou": 0.0, "max_center_dist": 0.0}),
    (s.TrackSettings, {"min_iou": 1.0}),
    (s.SmoothSettings, {"seconds": 0.0, "min_segment_s": 0.0, "hysteresis": 0.0}),
    (s.SmoothSettings, {"hysteresis": 0.99}),
    (s.SmoothSettings, {"method": s.Smoothing.NONE}),
    (s.ClassifySettings, {"batch_size": 1, "device": s.Device.CPU}),
]


@pytest.mark.parametrize(("cls", "kwargs"), GOOD_SETTINGS)
def test_edge_values_are_accepted(cls: type, kwargs: dict) -> None:
    obj = cls(**kwargs)
    for k, v in kwargs.items():
        assert getattr(obj, k) == v


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"workers": -1}, "--workers=-1"),
        ({"workers": 0}, "--workers=0"),
        ({"chunk_seconds": math.nan}, "--chunk-seconds=nan"),
        ({"chunk_seconds": math.inf}, "--chunk-seconds=inf"),
        ({"chunk_seconds": 0.5}, "--chunk-seconds=0.5"),
    ],
)
def test_bad_run_settings(kwargs: dict, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        s.RunSettings(inputs=(Path("x.mp4"),), out=Path("r.parquet"), **kwargs)


def test_defaults_are_valid_and_hash_stably() -> None:
    a = s.RunSettings(inputs=(Path("x.mp4"),), out=Path("r.parquet"))
    b = s.RunSettings(inputs=(Path("y.mp4"),), out=Path("other/"), workers=3)
    # structural settings (inputs, out, workers) stay out of the hash
    assert a.settings_hash("m") == b.settings_hash("m") != a.settings_hash("other model")


@pytest.mark.parametrize(
    ("sample", "video_fps", "expected"),
    [
        ({"fps": 2.0}, 29.97, 0.5),
        ({"fps": 2.0}, 0.0, 0.5),  # unknown video rate: the grid step
        ({"fps": 50.0}, 25.0, 0.04),  # fewer frames than asked: every frame is sampled
        ({"fps": None, "every_n": 10}, 25.0, 0.4),
        ({"fps": None, "every_n": 10}, 0.0, None),  # unknown: consumers use median spacing
    ],
)
def test_sample_interval(sample: dict, video_fps: float, expected: float | None) -> None:
    got = s.SampleSettings(**sample).interval_s(video_fps)
    assert got == (pytest.approx(expected) if expected is not None else None)
