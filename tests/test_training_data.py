"""Training-data loaders (folder layout, FER+ votes) and recipe parsing.

The loaders run on tiny generated folders in both layouts (FER-2013 Kaggle class folders,
FER+ ``label.csv``), so they run on a fresh clone; only the checks of the real splits
(counts, hand-read rows, recipe sources) need the shared data (``data_root``)."""

from __future__ import annotations

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


# ----------------------------------------------------------------------------- tiny layouts
def face(seed: int, size: int = 48) -> np.ndarray:
    """A distinct, deterministic uint8 (size, size) "face" (smooth noise, so JPEG keeps it)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def make_fer2013_folder(root: Path, per_class: dict[str, int], *, suffix: str = ".jpg") -> Path:
    """FER-2013 as Kaggle ships it: ``root/<class folder>/<n>.jpg``, 48x48 gray."""
    seed = 0
    for folder, n in per_class.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / folder / f"im{i:04d}{suffix}"), face(seed))
            seed += 1
    return root


#: A FER+ split, row by row: (image name, the 10 votes in FERPLUS_COLUMNS order, image on disk).
FERPLUS_ROWS = [
    ("fer0000001.png", votes(happiness=10), True),  # happy
    ("fer0000002.png", votes(contempt=6, disgust=2, neutral=1, sadness=1), True),  # contempt wins
    ("fer0000003.png", votes(neutral=4, contempt=4, anger=1, unknown=1), True),  # tie -> neutral
    ("fer0000004.png", votes(sadness=7, fear=3), True),  # sad
    ("fer0000005.png", votes(surprise=6, fear=4), False),  # listed, image missing
    ("fer0000006.png", votes(NF=10), True),  # not a face
    ("fer0000007.png", votes(anger=5, disgust=5), True),  # tie -> anger (file order)
]


def make_ferplus_split(root: Path, rows: list = FERPLUS_ROWS) -> Path:
    """A FER+ split folder: the images beside ``label.csv`` (name, box, 10 vote columns)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (name, v, on_disk) in enumerate(rows):
        if on_disk:
            cv2.imwrite(str(root / name), face(100 + i))
        lines.append(",".join([name, '"(0, 0, 48, 48)"', *map(str, v.tolist())]))
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    return root


# ----------------------------------------------------------------------------- folder layout
def test_folder_layout_matches_synonyms_and_skips_contempt(tmp_path: Path) -> None:
    make_fer2013_folder(tmp_path, {"anger": 3, "happiness": 2, "contempt": 4})
    (tmp_path / "anger" / "notes.txt").write_text("not an image")

    ds = load_folder(tmp_path)

    assert len(ds) == 5  # 3 anger + 2 happiness; contempt and the .txt file skipped
    assert ds.names == tuple(f"anger/im{i:04d}.jpg" for i in range(3)) + tuple(
        f"happiness/im{i:04d}.jpg" for i in range(2)
    )
    assert [EMOTIONS[i] for i in ds.labels] == ["angry"] * 3 + ["happy"] * 2
    assert ds.images.shape == (5, 48, 48) and ds.images.dtype == np.uint8
    first = cv2.imread(str(tmp_path / "anger" / "im0000.jpg"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(ds.images[0], first)
    np.testing.assert_array_equal(ds.targets.sum(1), np.ones(5, np.float32))


def test_folder_layout_resizes_to_common_size(tmp_path: Path) -> None:
    (tmp_path / "fear").mkdir()
    cv2.imwrite(str(tmp_path / "fear" / "big.png"), face(1, size=96))
    cv2.imwrite(str(tmp_path / "fear" / "small.jpg"), face(2))
    assert load_folder(tmp_path).images.shape == (2, 48, 48)
    assert load_folder(tmp_path, size=64).images.shape == (2, 64, 64)


def test_limit_per_class_takes_first_files_by_name(tmp_path: Path) -> None:
    val = make_fer2013_folder(tmp_path / "val", dict.fromkeys(EMOTIONS, 6), suffix=".png")
    ds = load_folder(val, limit_per_class=5)
    assert len(ds) == 35
    np.testing.assert_array_equal(ds.targets.sum(0), np.full(7, 5.0))
    assert list(ds.names) == [f"{c}/im{i:04d}.png" for c in EMOTIONS for i in range(5)]
    assert ds.source == str(val)
    np.testing.assert_array_equal(ds.images[5], face(6))  # png: pixels exactly as written


def test_fer2013_val_class_counts(data_root: Path) -> None:
    """The real validation split as the shared data's README describes it."""
    ds = load_dataset(data_root / "fer2013" / "val")
    counts = dict(zip(EMOTIONS, ds.targets.sum(0).astype(int).tolist(), strict=True))
    assert counts == FER2013_VAL_COUNTS
    assert ds.images.shape == (3589, 48, 48)


def test_subset_keeps_rows_together(tmp_path: Path) -> None:
    ds = load_folder(make_fer2013_folder(tmp_path, dict.fromkeys(EMOTIONS, 2)))
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


def test_load_ferplus_split_majority(tmp_path: Path) -> None:
    split = make_ferplus_split(tmp_path / "FER2013Valid")
    ds = load_dataset(split)
    # contempt-won and NF rows dropped, the row without an image skipped, ties by file order
    assert ds.names == ("fer0000001.png", "fer0000003.png", "fer0000004.png", "fer0000007.png")
    assert [EMOTIONS[i] for i in ds.labels] == ["happy", "neutral", "sad", "angry"]
    assert set(np.unique(ds.targets)) == {0.0, 1.0}
    np.testing.assert_array_equal(ds.images[1], face(102))
    assert load_ferplus(split, limit=2).names == ds.names[:2]


def test_load_ferplus_split_soft(tmp_path: Path) -> None:
    ds = load_dataset(make_ferplus_split(tmp_path / "s"), ferplus_mode=FerPlusMode.SOFT)
    # contempt-won rows stay in soft mode (their emotion votes count); NF-only rows do not
    assert ds.names == tuple(n for n, _, on in FERPLUS_ROWS if on and n != "fer0000006.png")
    np.testing.assert_allclose(ds.targets.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(ds.targets[1][[1, 4, 5]], [0.5, 0.25, 0.25])  # disgust, neutral, sad
    np.testing.assert_allclose(ds.targets[4][[0, 1]], [0.5, 0.5])  # angry, disgust


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


def test_validation_faces_are_both_splits_at_the_models_size(data_root: Path) -> None:
    """The model scripts' one source of validation faces: FER-2013 val then FER+ valid,
    resized to the shipped model's input, labels matching the split's own loader."""
    from fervid.model.modelfile import load_model
    from fervid.training.validation import validation_faces

    spec = load_model().spec
    splits = list(validation_faces(data_root, spec))
    assert [v.name for v in splits] == ["fer2013", "ferplus"]
    fer, ferplus = splits
    size = spec.input_size
    assert fer.images.shape == (3589, size, size) and fer.images.dtype == np.uint8
    counts = np.bincount(fer.labels, minlength=len(EMOTIONS))
    assert dict(zip(EMOTIONS, counts.tolist(), strict=True)) == FER2013_VAL_COUNTS
    reference = load_ferplus(data_root / "ferplus" / "FER2013Valid", size=None)
    assert ferplus.names == reference.names
    np.testing.assert_array_equal(ferplus.labels, reference.labels)
    assert ferplus.images.shape[1:] == (size, size)
