"""One place for settings: the config file, the environment and the command line, in
that order of precedence over the settings classes' defaults; unknown keys refused with
the closest valid name; the template `fervid config init` writes reads back as the
defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fervid import config as c
from fervid.cli import EXIT_OK, EXIT_USAGE, app
from fervid.errors import ConfigError
from fervid.settings import Device, RunSettings


def cli(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def shown(result: Result) -> dict[str, tuple[str, str]]:
    """`fervid config show` as key -> (value, source)."""
    assert result.exit_code == EXIT_OK, result.output
    rows = {}
    for line in result.stdout.splitlines()[1:]:
        m = re.match(r"(\w+)\s+= (.*?)\s+# (.*)$", line)
        assert m, line
        rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith(c.ENV_PREFIX)]:
        monkeypatch.delenv(name)
    return tmp_path


# --------------------------------------------------------------------------- precedence
@pytest.mark.parametrize(
    ("file", "env", "flag", "expected", "source"),
    [
        (None, None, None, "2.0", "default"),
        ("fps = 3", None, None, "3.0", "fervid.toml [process] fps"),
        ("fps = 3", "4", None, "4.0", "FERVID_PROCESS_FPS"),
        ("fps = 3", "4", "5", "5.0", "--fps"),
        (None, "4", None, "4.0", "FERVID_PROCESS_FPS"),
        (None, None, "5", "5.0", "--fps"),
        ("fps = 3", None, "5", "5.0", "--fps"),
    ],
)
def test_each_level_overrides_the_ones_below(
    workdir: Path, file: str | None, env: str | None, flag: str | None, expected: str, source: str
) -> None:
    if file is not None:
        (workdir / "fervid.toml").write_text(f"[process]\n{file}\n")
    args = ["config", "show", *(["--fps", flag] if flag else [])]
    rows = shown(cli(*args, env={"FERVID_PROCESS_FPS": env} if env else None))
    assert rows["fps"][0] == expected
    assert rows["fps"][1].endswith(source)
    assert rows["det_threshold"] == ("0.6", "default")  # the others untouched


def test_config_option_names_the_file_and_relative_paths_follow_it(workdir: Path) -> None:
    (workdir / "fervid.toml").write_text("[process]\nfps = 9\n")  # not read: --config wins
    other = workdir / "etc" / "clinic.toml"
    other.parent.mkdir()
    other.write_text('[process]\nmodel = "models/m.safetensors"\ndevice = "cpu"\n')
    rows = shown(cli("config", "show", "--config", other))
    assert rows["fps"] == ("2.0", "default")
    assert rows["model"][0] == f'"{workdir.resolve() / "etc/models/m.safetensors"}"'
    assert rows["device"] == ('"cpu"', f"{other} [process] device")


def test_every_n_at_a_higher_level_replaces_the_files_fps(workdir: Path) -> None:
    (workdir / "fervid.toml").write_text("[process]\nfps = 3\n")
    rows = shown(cli("config", "show", "--every-n", "5"))
    assert rows["every_n"] == ("5", "--every-n")
    assert rows["fps"][0] == "-"
    resolved = c.layer(given={"every_n": 5}, file={"fps": 3.0})
    settings = c.run_settings(["x.mp4"], "r.parquet", resolved)
    assert (settings.sample.fps, settings.sample.every_n) == (None, 5)


def test_both_sampling_modes_at_one_level_are_refused(workdir: Path) -> None:
    (workdir / "fervid.toml").write_text("[process]\nfps = 3\nevery_n = 2\n")
    result = cli("process", "x.mp4", "--out", "r.parquet")
    assert result.exit_code == EXIT_USAGE
    assert "expected exactly one of --fps or --every-n" in result.stderr


def test_a_bad_value_from_a_lower_level_names_where_it_came_from(workdir: Path) -> None:
    (workdir / "fervid.toml").write_text("[process]\ndet_threshold = 1.5\n")
    result = cli("process", "x.mp4", "--out", "r.parquet")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.count("\n") == 1
    assert "--det-threshold=1.5; expected a value in (0, 1)" in result.stderr
    assert "fervid.toml [process] det_threshold" in result.stderr
    result = cli("process", "x.mp4", "--out", "r.parquet", env={"FERVID_PROCESS_WORKERS": "two"})
    assert result.exit_code == EXIT_USAGE
    assert "FERVID_PROCESS_WORKERS='two'; expected an integer" in result.stderr


# --------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[process]\nfsp = 3\n", "unknown setting 'fsp'; did you mean 'fps'?"),
        ("[process]\ndet-threshold = 0.5\n", "unknown setting 'det-threshold'; did you mean 'det_threshold'?"),
        ("[process]\nsmoothing_second = 2\n", "did you mean 'smoothing_seconds'?"),
        ("[proces]\nfps = 3\n", "unknown table [proces]; did you mean [process]?"),
        ("fps = 3\n", "setting 'fps' is outside a table; put it under [process]"),
        ("[process]\nfps = \n", "not valid TOML"),
        ('[process]\nfps = "fast"\n', "fps='fast'; expected a number"),
        ("[process]\nworkers = 1.5\n", "workers=1.5; expected an integer"),
        ('[process]\ndevice = "gpu"\n', "device='gpu'; expected one of ['auto', 'cpu', 'cuda']"),
    ],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_and_exit_2(workdir: Path, text: str, message: str) -> None:
    (workdir / "fervid.toml").write_text(text)
    result = cli("process", "x.mp4", "--out", "r.parquet")
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr


def test_an_unknown_environment_setting_names_the_closest(workdir: Path) -> None:
    result = cli("process", "x.mp4", "--out", "r.parquet", env={"FERVID_PROCESS_DEVCE": "cpu"})
    assert result.exit_code == EXIT_USAGE
    assert "environment FERVID_PROCESS_DEVCE: unknown setting 'devce'; did you mean 'device'?" in (
        result.stderr
    )


def test_a_missing_config_file_is_a_usage_error(workdir: Path) -> None:
    result = cli("process", "x.mp4", "--out", "r.parquet", "--config", "nope.toml")
    assert result.exit_code == EXIT_USAGE
    assert "--config=nope.toml: no such file" in result.stderr


# --------------------------------------------------------------------------- the table
def test_every_option_fills_a_run_settings_field_and_shows_its_default() -> None:
    """OPTIONS reads each default from the settings classes: the table cannot drift."""
    defaults = c.run_settings(["x.mp4"], "r.parquet", c.layer())
    assert defaults == RunSettings(inputs=(Path("x.mp4"),), out=Path("r.parquet"))
    for option in c.OPTIONS:
        c._field_default(option.field)  # raises for a field that does not exist
    assert c.BY_KEY["device"].default == "auto" and c.BY_KEY["align"].default == "on"


def test_config_init_writes_every_default_and_reads_back(workdir: Path) -> None:
    result = cli("config", "init")
    assert result.exit_code == EXIT_OK, result.output
    text = (workdir / "fervid.toml").read_text()
    for option in c.OPTIONS:
        assert re.search(rf"^# {option.key}( = |: not set)", text, flags=re.M), option.key
    assert c.load_config(workdir / "fervid.toml") == {}  # all commented out
    # uncommenting every value gives the defaults back
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", text, flags=re.M)
    values = c.load_config(_write(workdir / "all.toml", uncommented))
    assert values["device"] is Device.AUTO and values["fps"] == 2.0
    assert c.run_settings(["x"], "r.parquet", c.layer(file=values)) == c.run_settings(
        ["x"], "r.parquet", c.layer()
    )
    assert cli("config", "init").exit_code == EXIT_USAGE  # never overwritten silently


def test_unknown_keyword_in_code_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'smoothing_seconds'"):
        c.check_keys({"smooth_seconds": 2}, "fervid.process()")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
