"""Training-data loaders (folder layout, FER+ votes) and recipe parsing, on the shared data."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fervid.errors import ConfigError, DataError
from fervid.model.modelfile import EMOTIONS
from fervid.training.data import (
    FERPLUS_COLUMNS,
    FerPlusMode,
    load_dataset,
    load_ferplus,
    load_folder,
    match_class,
    parse_ferplus_votes,
    votes_to_target,
)
from fervid.training.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]

#: FER-2013 PublicTest ("val") images per class, from the shared data's README.
FER2013_VAL_COUNTS = {
    "angry": 467,
    "disgust": 56,
    "fear": 496,
    "happy": 895,
    "neutral": 607,
    "sad": 653,
    "surprise": 415,
}


def votes(**kw: int) -> np.ndarray:
    """A FER+ vote row (10,) from column names, e.g. votes(neutral=4, contempt=4)."""
    v = np.zeros(len(FERPLUS_COLUMNS), np.int64)
    for k, n in kw.items():
        v[FERPLUS_COLUMNS.index(k)] = n
    return v


def onehot(name: str) -> np.ndarray:
    t = np.zeros(len(EMOTIONS), np.float32)
    t[EMOTIONS.index(name)] = 1
    return t


# ----------------------------------------------------------------------------- class names
@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("angry", "angry"),
        ("Anger", "angry"),
        ("happiness", "happy"),
        ("HAPPY", "happy"),
        ("sadness", "sad"),
        ("surprised", "surprise"),
        ("suprise", "surprise"),
        ("fearful", "fear"),
        ("disgusted", "disgust"),
        (" neutral ", "neutral"),
        ("contempt", None),
        ("unknown", None),
        ("NF", None),
        ("angry_faces", None),
    ],
)
def test_match_class_by_synonyms(folder: str, expected: str | None) -> None:
    assert match_class(folder) == expected


# ----------------------------------------------------------------------------- folder layout
def test_folder_layout_matches_synonyms_and_skips_contempt(tmp_path: Path, data_root: Path) -> None:
    val = data_root / "fer2013" / "val"
    plan = {"anger": ("angry", 3), "happiness": ("happy", 2), "contempt": ("sad", 4)}
    copied: dict[str, list[str]] = {}
    for folder, (source_class, n) in plan.items():
        (tmp_path / folder).mkdir()
        files = sorted((val / source_class).iterdir())[:n]
        for f in files:
            shutil.copy(f, tmp_path / folder / f.name)
        copied[folder] = [f.name for f in files]
    (tmp_path / "anger" / "notes.txt").write_text("not an image")

    ds = load_folder(tmp_path)

    assert len(ds) == 5  # 3 anger + 2 happiness; contempt and the .txt file skipped
    assert ds.names == tuple(f"anger/{n}" for n in copied["anger"]) + tuple(
        f"happiness/{n}" for n in copied["happiness"]
    )
    assert [EMOTIONS[i] for i in ds.labels] == ["angry"] * 3 + ["happy"] * 2
    assert ds.images.shape == (5, 48, 48) and ds.images.dtype == np.uint8
    first = cv2.imread(str(tmp_path / "anger" / copied["anger"][0]), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(ds.images[0], first)
    np.testing.assert_array_equal(ds.targets.sum(1), np.ones(5, np.float32))


def test_folder_layout_resizes_to_common_size(tmp_path: Path, data_root: Path) -> None:
    src = sorted((data_root / "fer2013" / "val" / "fear").iterdir())[0]
    (tmp_path / "fear").mkdir()
    img = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / "fear" / "big.png"), cv2.resize(img, (96, 96)))
    shutil.copy(src, tmp_path / "fear" / "small.jpg")
    assert load_folder(tmp_path).images.shape == (2, 48, 48)
    assert load_folder(tmp_path, size=64).images.shape == (2, 64, 64)


def test_fer2013_val_limit_per_class_takes_first_files_by_name(data_root: Path) -> None:
    val = data_root / "fer2013" / "val"
    ds = load_folder(val, limit_per_class=5)
    assert len(ds) == 35
    np.testing.assert_array_equal(ds.targets.sum(0), np.full(7, 5.0))
    expected = [f"{c}/{f.name}" for c in EMOTIONS for f in sorted((val / c).iterdir())[:5]]
    assert list(ds.names) == expected
    assert ds.source == str(val)


def test_fer2013_val_class_counts(data_root: Path) -> None:
    ds = load_dataset(data_root / "fer2013" / "val")
    counts = dict(zip(EMOTIONS, ds.targets.sum(0).astype(int).tolist(), strict=True))
    assert counts == FER2013_VAL_COUNTS
    assert ds.images.shape == (3589, 48, 48)


def test_subset_keeps_rows_together(data_root: Path) -> None:
    ds = load_folder(data_root / "fer2013" / "val", limit_per_class=2)
    sub = ds.subset(np.array([13, 0]))
    assert sub.names == (ds.names[13], ds.names[0])
    np.testing.assert_array_equal(sub.images, ds.images[[13, 0]])
    np.testing.assert_array_equal(sub.labels, [6, 0])


# ----------------------------------------------------------------------------- FER+ votes
@pytest.mark.parametrize(
    ("row", "name", "expected"),
    [
        (
            ["fer0000000.png", "(0, 0, 48, 48)", "4", "0", "0", "1", "3", "2", "0", "0", "0", "0"],
            "fer0000000.png",
            votes(neutral=4, sadness=1, anger=3, disgust=2),
        ),
        (
            ["x.png", "(0, 0, 48, 48)", "0", "0", "0", "0", "0", "0", "0", "1", "2", "7"],
            "x.png",
            votes(contempt=1, unknown=2, NF=7),
        ),
        (
            ["y.png", "", "1.0", "2", "0", "0", "0", "0", "0", "0", "0", "0"],
            "y.png",
            votes(neutral=1, happiness=2),
        ),
    ],
)
def test_parse_ferplus_votes(row: list[str], name: str, expected: np.ndarray) -> None:
    got_name, got = parse_ferplus_votes(row)
    assert got_name == name
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n_fields", [0, 11, 13])
def test_parse_ferplus_votes_rejects_wrong_field_count(n_fields: int) -> None:
    with pytest.raises(DataError, match="fields"):
        parse_ferplus_votes(["0"] * n_fields)


@pytest.mark.parametrize(
    ("v", "expected"),
    [
        (votes(happiness=10), "happy"),
        (votes(neutral=4, anger=3, disgust=2, sadness=1), "neutral"),
        (votes(neutral=2, anger=7, unknown=1), "angry"),
        (votes(surprise=6, fear=4), "surprise"),
        # ties go to the first column in file order: neutral, happiness, surprise, sadness, ...
        (votes(neutral=5, happiness=5), "neutral"),
        (votes(sadness=3, fear=3, anger=3, unknown=1), "sad"),
        (votes(neutral=4, contempt=4, anger=1, unknown=1), "neutral"),
        # won by a non-FER-2013 column: dropped
        (votes(contempt=6, disgust=2, neutral=1, sadness=1), None),
        (votes(unknown=6, happiness=4), None),
        (votes(NF=10), None),
        (votes(), None),
    ],
)
def test_majority_targets(v: np.ndarray, expected: str | None) -> None:
    t = votes_to_target(v, FerPlusMode.MAJORITY)
    if expected is None:
        assert t is None
    else:
        np.testing.assert_array_equal(t, onehot(expected))


@pytest.mark.parametrize(
    ("v", "expected"),
    [
        (votes(happiness=10), {"happy": 1.0}),
        (votes(neutral=4, anger=1, contempt=4, unknown=1), {"neutral": 0.8, "angry": 0.2}),
        (
            votes(neutral=1, sadness=1, disgust=2, contempt=6),
            {"neutral": 0.25, "sad": 0.25, "disgust": 0.5},
        ),
        (votes(neutral=5, happiness=5), {"neutral": 0.5, "happy": 0.5}),
        (votes(fear=1, surprise=2, NF=7), {"fear": 1 / 3, "surprise": 2 / 3}),
        (votes(contempt=3, unknown=3, NF=4), None),
        (votes(), None),
    ],
)
def test_soft_targets(v: np.ndarray, expected: dict[str, float] | None) -> None:
    t = votes_to_target(v, FerPlusMode.SOFT)
    if expected is None:
        assert t is None
        return
    want = np.zeros(len(EMOTIONS), np.float32)
    for k, p in expected.items():
        want[EMOTIONS.index(k)] = p
    np.testing.assert_allclose(t, want, rtol=1e-6)
    assert t.sum() == pytest.approx(1.0)


def test_load_ferplus_valid_majority(data_root: Path) -> None:
    split = data_root / "ferplus" / "FER2013Valid"
    ds = load_ferplus(split, limit=10)
    # Hand-read from the first 12 rows of label.csv: fer0028639 is won by contempt (6 of 10
    # votes) and dropped; fer0028638 ties neutral/contempt 4-4 and fer0028641
    # neutral/happiness 5-5, both resolved to neutral.
    assert ds.names == tuple(f"fer00286{i}.png" for i in (38, 40, 41, 42, 43, 44, 45, 46, 47, 48))
    assert [EMOTIONS[i] for i in ds.labels] == [
        "neutral",
        "neutral",
        "neutral",
        "happy",
        "happy",
        "sad",
        "neutral",
        "neutral",
        "neutral",
        "happy",
    ]
    assert set(np.unique(ds.targets)) == {0.0, 1.0}
    assert ds.images.shape == (10, 48, 48) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(
        ds.images[0], cv2.imread(str(split / "fer0028638.png"), cv2.IMREAD_GRAYSCALE)
    )


def test_load_ferplus_valid_soft(data_root: Path) -> None:
    ds = load_dataset(
        data_root / "ferplus" / "FER2013Valid", ferplus_mode=FerPlusMode.SOFT, limit=200
    )
    assert len(ds) == 200
    assert ds.names[:2] == ("fer0028638.png", "fer0028639.png")  # contempt rows stay in soft mode
    np.testing.assert_allclose(ds.targets.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ds.targets[1][[1, 4, 5]], [0.5, 0.25, 0.25])  # disgust, neutral, sad
    assert (ds.targets > 0).sum(1).max() > 1  # real distributions, not one-hot


# ----------------------------------------------------------------------------- bad layouts
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BAD_LAYOUTS = {
    "missing folder": lambda root: root / "nope",
    "no class folders": lambda root: (root / "cats").mkdir() or root,
    "only contempt": lambda root: (root / "contempt").mkdir() or root,
    "unreadable image": lambda root: _write(root / "happy" / "broken.jpg", "not a jpeg").parents[1],
    "label.csv short rows": lambda root: _write(root / "label.csv", "a.png,box,1,2,3\n").parent,
    "label.csv no usable rows": lambda root: (
        _write(root / "label.csv", 'a.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,0,10\n').parent
    ),
    "label.csv images missing": lambda root: (
        _write(root / "label.csv", 'a.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n').parent
    ),
}


@pytest.mark.parametrize("case", list(BAD_LAYOUTS))
def test_bad_layouts_raise_data_error(tmp_path: Path, case: str) -> None:
    path = BAD_LAYOUTS[case](tmp_path)
    with pytest.raises(DataError):
        load_dataset(path)


def test_load_ferplus_without_label_csv(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"label\.csv"):
        load_ferplus(tmp_path)


# ----------------------------------------------------------------------------- recipes
def test_default_recipe_parses() -> None:
    r = load_recipe(REPO / "pipelines" / "train_default.toml")
    assert r.name == "fervid-mobilenetv2-fer"
    assert (r.input_size, r.channels) == (64, "gray")
    assert [(s.name, s.path, s.ferplus_mode) for s in r.train] == [
        ("fer2013", "fer2013/train", FerPlusMode.MAJORITY),
        ("ferplus", "ferplus/FER2013Train", FerPlusMode.SOFT),
    ]
    assert [(s.name, s.ferplus_mode) for s in r.val] == [
        ("fer2013", FerPlusMode.MAJORITY),
        ("ferplus", FerPlusMode.MAJORITY),
    ]
    assert r.optim.epochs == 24 and r.optim.class_weighting == "sqrt_inverse"
    assert r.augment.erase_p == 0.25
    assert r.to_json()["optim"]["batch_size"] == 128


def test_default_recipe_sources_exist(data_root: Path) -> None:
    r = load_recipe(REPO / "pipelines" / "train_default.toml")
    for s in (*r.train, *r.val):
        assert (data_root / s.path).is_dir(), s.path


RECIPE_HEAD = 'name = "t"\n'
BAD_RECIPES = {
    "unknown optim key": RECIPE_HEAD + "[optim]\nepochz = 3\n",
    "unknown augment key": RECIPE_HEAD + "[augment]\nflipp = 0.5\n",
    "unknown init key": RECIPE_HEAD + "[init]\nhead_epoch = 2\n",
    "bad ferplus_mode": RECIPE_HEAD + '[data]\ntrain = [{path = "x", ferplus_mode = "vote"}]\n',
    "bad val ferplus_mode": RECIPE_HEAD + '[data]\nval = [{path = "x", ferplus_mode = "Soft"}]\n',
    "source without path": RECIPE_HEAD + '[data]\ntrain = [{name = "x"}]\n',
    "no name": "[optim]\nepochs = 3\n",
}


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_bad_recipes_raise_config_error(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path / "r.toml", BAD_RECIPES[case])
    with pytest.raises(ConfigError):
        load_recipe(path)


def test_bad_ferplus_mode_lists_valid_values(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.toml", BAD_RECIPES["bad ferplus_mode"])
    with pytest.raises(ConfigError, match=r"'vote'.*majority.*soft"):
        load_recipe(path)


def test_missing_recipe_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")


# Typos anywhere in a recipe and malformed values are ConfigErrors, never silent.
LOOSE_RECIPES = {
    "unknown model key": RECIPE_HEAD + "[model]\ndropuot = 0.1\n",
    "unknown top-level table": RECIPE_HEAD + "[optimm]\nepochs = 3\n",
    "unknown source key": RECIPE_HEAD + '[data]\ntrain = [{path = "x", wieght = 2}]\n',
    "non-numeric weight": RECIPE_HEAD + '[data]\ntrain = [{path = "x", weight = "heavy"}]\n',
    "invalid TOML": "name = \n",
}


@pytest.mark.parametrize("case", list(LOOSE_RECIPES))
def test_loose_recipes_should_raise_config_error(tmp_path: Path, case: str) -> None:
    path = _write(tmp_path / "r.toml", LOOSE_RECIPES[case])
    with pytest.raises(ConfigError):
        load_recipe(path)
