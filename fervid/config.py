"""The settings of ``fervid process``, declared once, and where each value comes from.

:data:`OPTIONS` names every setting a user can give: its key (the config file's key,
the Python API's keyword, ``FERVID_PROCESS_<KEY>`` in the environment), the field of
:class:`~fervid.settings.RunSettings` it fills (whose default it shows), its type, one
line of help and the help panel it is listed in. The CLI builds ``fervid process``'s
options from it, ``fervid config init`` writes the commented template from it and
``fervid config show`` lists it; the settings classes still validate every value.

Precedence, highest first: the command line (or the API's keywords), the environment,
the config file (``--config PATH``, else ``fervid.toml`` in the working directory; the
API reads a file only when given ``config=``), the defaults of the settings classes.
``--fps`` and ``--every-n`` are one choice: the one given at the higher level wins.

No numpy, no torch: a bad value answers before the heavy imports.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

from fervid import settings as s
from fervid.errors import ConfigError

#: The file read from the working directory when no ``--config`` is given.
DEFAULT_CONFIG = "fervid.toml"
#: The config file's table holding ``fervid process``'s settings.
SECTION = "process"
#: The config file's table holding the longitudinal settings (``summarize``, ``trends``,
#: ``report``, ``nightly``): :data:`LONGITUDINAL_KEYS`.
LONGITUDINAL_SECTION = "longitudinal"
ENV_PREFIX = "FERVID_PROCESS_"

# Help panels of `fervid process --help`, in the order they are shown.
PANEL_INPUT = "Input and sampling"
PANEL_DETECT = "Detection"
PANEL_MODEL = "Model"
PANEL_SMOOTH = "Tracking and smoothing"
PANEL_ENGINE = "Engine"
PANEL_OUTPUT = "Output"


class Source(IntEnum):
    """Where a value came from; a higher one wins."""

    DEFAULT = 0
    FILE = 1
    ENV = 2
    GIVEN = 3  # the command line, or the API's keywords

    def describe(self, option: Option, config: Path | None) -> str:
        if self is Source.FILE:
            return f"{config} [{SECTION}] {option.key}"
        if self is Source.ENV:
            return option.env
        if self is Source.GIVEN:
            return option.flag
        return "default"


@dataclass(frozen=True, kw_only=True)
class Option:
    """One setting of ``fervid process``.

    ``field``: ``"stage.name"`` of a per-stage settings class in :class:`RunSettings`, or
    ``"name"`` of RunSettings itself; its default is the option's default. ``kind``:
    ``float``, ``int``, ``str``, ``bool``, ``path``, ``list`` (of strings), ``choice``
    (``enum``'s values) or ``onoff`` (a bool spelled on/off).
    """

    key: str
    field: str
    kind: str
    help: str
    panel: str
    enum: type[Enum] | None = None
    short: str | None = None
    #: shown as the default when the field's default is None (e.g. "all cores")
    default_text: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def choices(self) -> tuple[str, ...]:
        if self.kind == "onoff":
            return ("on", "off")
        return tuple(str(m.value) for m in self.enum) if self.enum is not None else ()

    @property
    def default(self) -> Any:
        """The settings class's default, as the user would write it (enum value, on/off)."""
        value = _field_default(self.field)
        if isinstance(value, Enum):
            return value.value
        if self.kind == "onoff":
            return "on" if value else "off"
        if isinstance(value, tuple):
            return list(value)
        return value


def _field_default(path: str) -> Any:
    cls: Any = s.RunSettings
    *stages, name = path.split(".")
    for stage in stages:
        cls = _fields(cls)[stage].type
        cls = getattr(s, cls) if isinstance(cls, str) else cls  # postponed annotations
    f = _fields(cls)[name]
    if f.default is dataclasses.MISSING:
        assert callable(f.default_factory)  # every setting has a default
        return f.default_factory()
    return f.default


def _fields(cls: Any) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


OPTIONS: tuple[Option, ...] = (
    # input and sampling
    Option(key="fps", field="sample.fps", kind="float", panel=PANEL_INPUT,
           help="Frames per second to sample, by timestamp."),
    Option(key="every_n", field="sample.every_n", kind="int", panel=PANEL_INPUT,
           help="Sample every n-th frame instead of --fps."),
    Option(key="ext", field="discover.extensions", kind="list", panel=PANEL_INPUT,
           help="Video extension to look for (repeatable), e.g. --ext .mts"),
    Option(key="id_pattern", field="discover.id_pattern", kind="str", panel=PANEL_INPUT,
           help='Fields from the path, e.g. "{subject}/{session_date}_{name}.mp4".'),
    Option(key="settle_seconds", field="discover.settle_seconds", kind="float",
           panel=PANEL_INPUT,
           help="A file modified more recently than this and not complete is still being "
           "copied: left for a later run, listed as pending (0: off)."),
    # detection
    Option(key="detector", field="detect.detector", kind="choice", enum=s.Detector,
           panel=PANEL_DETECT,
           help="Face detector: yunet (5 landmarks, OpenCV 4.8+/5) or res10 (OpenCV 4)."),
    Option(key="det_threshold", field="detect.score_threshold", kind="float",
           panel=PANEL_DETECT, help="Face detector score threshold (0-1)."),
    Option(key="det_nms", field="detect.nms_iou", kind="float", panel=PANEL_DETECT,
           help="Boxes overlapping more than this IoU are one face."),
    Option(key="det_long_side", field="detect.long_side", kind="int", panel=PANEL_DETECT,
           help="YuNet sees frames scaled to this longer side (px)."),
    Option(key="min_face", field="detect.min_face_px", kind="int", panel=PANEL_DETECT,
           help="Ignore faces smaller than this many pixels."),
    Option(key="align", field="crop.align", kind="onoff", panel=PANEL_DETECT,
           help="on: warp faces onto the FER landmark template; off: square box crop."),
    Option(key="margin", field="crop.margin", kind="float", panel=PANEL_DETECT,
           help="Crop margin, fraction of the face box on each side."),
    # model
    Option(key="model", field="classify.model_path", kind="path", panel=PANEL_MODEL,
           default_text="the shipped model, or $FERVID_MODEL",
           help="Model file (.safetensors)."),
    Option(key="device", field="classify.device", kind="choice", enum=s.Device,
           panel=PANEL_MODEL, help="Where the classifier runs."),
    Option(key="batch_size", field="classify.batch_size", kind="int", panel=PANEL_MODEL,
           help="Faces per classifier batch."),
    # tracking and smoothing
    Option(key="smoothing", field="smooth.method", kind="choice", enum=s.Smoothing,
           panel=PANEL_SMOOTH, help="Smoothing over time."),
    Option(key="smoothing_seconds", field="smooth.seconds", kind="float", panel=PANEL_SMOOTH,
           help="Smoothing time constant (s)."),
    Option(key="min_segment_seconds", field="smooth.min_segment_s", kind="float",
           panel=PANEL_SMOOTH, help="Shortest emotion segment (s)."),
    Option(key="hysteresis", field="smooth.hysteresis", kind="float", panel=PANEL_SMOOTH,
           help="Probability margin a new emotion needs to start a segment."),
    Option(key="max_gap_seconds", field="track.max_gap_s", kind="float", panel=PANEL_SMOOTH,
           help="A face unseen longer than this starts a new track."),
    # engine
    Option(key="executor", field="executor", kind="choice", enum=s.ExecutorKind,
           panel=PANEL_ENGINE,
           help="auto (in-process up to 30 minutes of video, Ray above), local or ray."),
    Option(key="workers", field="workers", kind="int", panel=PANEL_ENGINE,
           default_text="all cores", help="Parallel video workers."),
    Option(key="gpus", field="gpus", kind="int", panel=PANEL_ENGINE,
           default_text="every GPU", help="Classifier actors, one per GPU (0: CPU)."),
    Option(key="ray_address", field="ray_address", kind="str", panel=PANEL_ENGINE,
           help="Attach to a running Ray cluster (host:port of its GCS)."),
    Option(key="chunk_seconds", field="chunk_seconds", kind="float", panel=PANEL_ENGINE,
           help="Split videos longer than this into chunks run in parallel (0: never)."),
    # output
    Option(key="overwrite", field="overwrite", kind="bool", panel=PANEL_OUTPUT,
           help="Redo videos already in the output."),
    Option(key="keep_empty_frames", field="keep_empty_frames", kind="bool",
           panel=PANEL_OUTPUT,
           help="Also write a frames row (face_found false) for sampled frames without a face."),
    Option(key="save_crops", field="save_crops", kind="path", panel=PANEL_OUTPUT,
           help="Also write the face crops the model saw, as PNG, under this folder."),
)  # fmt: skip

BY_KEY: dict[str, Option] = {o.key: o for o in OPTIONS}


# --------------------------------------------------------------------------- errors
def unknown_key_message(key: str, where: str, valid: list[str]) -> str:
    """``where: unknown setting 'fsp'; did you mean 'fps'?`` (the closest valid name)."""
    guess = key.replace("-", "_").lstrip("_").lower()
    close = difflib.get_close_matches(guess, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(valid)}"
    return f"{where}: unknown setting {key!r}; {hint} (`fervid config init` lists them all)"


def check_keys(values: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` for the first key of ``values`` that is no setting."""
    for key in values:
        if key not in BY_KEY:
            raise ConfigError(unknown_key_message(key, where, list(BY_KEY)))


# --------------------------------------------------------------------------- values
def coerce(option: Option, value: Any, where: str, *, base: Path | None = None) -> Any:
    """``value`` (from TOML, the environment or Python) as the option's type: a float,
    int, bool, str, Path (relative ones against ``base`` when given), tuple of
    extensions, or the enum member. Raises :class:`ConfigError` naming ``where``."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}={value!r}; expected {expected}")

    kind, text = option.kind, isinstance(value, str)
    if value is None:
        if _field_default(option.field) is None:
            return None
        raise bad(f"a value (default {option.default!r})")
    if kind == "float":
        if text:
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if kind == "int":
        if text:
            try:
                return int(value)
            except ValueError:
                raise bad("an integer") from None
        integral = isinstance(value, float) and math.isfinite(value) and value.is_integer()
        if isinstance(value, bool) or not (isinstance(value, int) or integral):
            raise bad("an integer")
        return int(value)
    if kind in ("bool", "onoff"):
        if isinstance(value, bool):
            return value
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad("true or false" if kind == "bool" else "on or off")
    if kind == "choice":
        assert option.enum is not None
        if isinstance(value, option.enum):
            return value
        try:
            return option.enum(value)
        except ValueError:
            raise bad(f"one of {list(option.choices)}") from None
    if kind == "path":
        if not isinstance(value, str | os.PathLike):
            raise bad("a path")
        path = Path(value).expanduser()
        return base / path if base is not None and not path.is_absolute() else path
    if kind == "list":
        items = value.split(",") if text else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise bad("a list of extensions, e.g. ['.mp4', '.mts']")
        return tuple(e if e.startswith(".") else f".{e}" for e in (i.strip() for i in items) if e)
    if not text:  # str
        raise bad("a string")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --------------------------------------------------------------------------- the file
def find_config(path: Path | None, cwd: Path | None = None) -> Path | None:
    """The config file a CLI run reads: ``path`` (``--config``; must exist), else
    ``fervid.toml`` in ``cwd`` (the working directory) when there is one, else None."""
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"--config={path}: no such file; expected a TOML file")
        return Path(path)
    found = (cwd or Path.cwd()) / DEFAULT_CONFIG
    return found if found.is_file() else None


def load_config(path: Path) -> dict[str, Any]:
    """The ``[process]`` settings of the TOML file at ``path``, each checked and
    converted (:func:`coerce`); relative paths in it are relative to the file's folder.
    Raises :class:`ConfigError` for a file that is no TOML, an unknown table or key
    (naming the closest valid one) and a value of the wrong type."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--config={path}: cannot read it ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    for key, value in data.items():
        if key in (SECTION, LONGITUDINAL_SECTION):
            continue
        if key in BY_KEY and not isinstance(value, dict):
            raise ConfigError(
                f"{path}: setting {key!r} is outside a table; put it under [{SECTION}]"
            )
        close = difflib.get_close_matches(key, [SECTION, LONGITUDINAL_SECTION], n=1, cutoff=0.5)
        hint = (
            f"did you mean [{close[0]}]?"
            if close
            else f"expected [{SECTION}] or [{LONGITUDINAL_SECTION}]"
        )
        raise ConfigError(f"{path}: unknown table [{key}]; {hint}")
    section = data.get(SECTION, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: {SECTION} must be a table, [{SECTION}]")
    check_keys(section, f"{path} [{SECTION}]")
    base = path.resolve().parent
    return {
        k: coerce(BY_KEY[k], v, f"{path} [{SECTION}] {k}", base=base) for k, v in section.items()
    }


# --------------------------------------------------------------------------- longitudinal
@dataclass(frozen=True, kw_only=True)
class LongitudinalKey:
    """One key of the ``[longitudinal]`` table: the option of ``fervid summarize`` /
    ``trends`` / ``report`` / ``nightly`` it stands for, and its TOML type (``int``,
    ``float``, ``str``, ``bool``, ``path``; ``region``: "x0,y0,x1,y1" or four numbers).
    The values are checked by the settings classes (fervid.longitudinal)."""

    key: str
    kind: str
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


LONGITUDINAL_KEYS: tuple[LongitudinalKey, ...] = (
    LongitudinalKey(key="baseline_n", kind="int", help="Sessions in each subject's baseline."),
    LongitudinalKey(key="window", kind="int", help="Sessions in the rolling mean."),
    LongitudinalKey(key="threshold", kind="float",
                    help="A departure lies more than this many baseline SDs away."),
    LongitudinalKey(key="min_face_s", kind="float",
                    help="Sessions with less patient-face time (s) are not judged."),
    LongitudinalKey(key="sd_floor", kind="float", help="Smallest baseline SD used."),
    LongitudinalKey(key="patient_face", kind="str",
                    help="longest, largest, left, right, top, bottom, region or override."),
    LongitudinalKey(key="patient_region", kind="region",
                    help='The patient\'s tile for patient_face = "region": "x0,y0,x1,y1".'),
    LongitudinalKey(key="patient_override", kind="path",
                    help="JSON or CSV file naming the patient face per video_id."),
    LongitudinalKey(key="min_track_frames", kind="int",
                    help="Shorter tracks with a low detector score are spurious."),
    LongitudinalKey(key="join_tracks", kind="bool",
                    help="Join the pieces of a face that left the frame and came back."),
)  # fmt: skip
LONGITUDINAL_BY_KEY = {k.key: k for k in LONGITUDINAL_KEYS}


def load_longitudinal(path: Path) -> dict[str, Any]:
    """The ``[longitudinal]`` settings of the TOML file at ``path`` (empty when it has
    none), by key, type-checked; relative paths are relative to the file's folder.
    Raises :class:`ConfigError` naming the file and key."""
    path = Path(path)
    load_config(path)  # the same checks of the file and its tables
    data = tomllib.loads(path.read_text(encoding="utf-8")).get(LONGITUDINAL_SECTION, {})
    where = f"{path} [{LONGITUDINAL_SECTION}]"
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: {LONGITUDINAL_SECTION} must be a table, [{LONGITUDINAL_SECTION}]"
        )
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in LONGITUDINAL_BY_KEY:
            raise ConfigError(unknown_key_message(key, where, list(LONGITUDINAL_BY_KEY)))
        kind = LONGITUDINAL_BY_KEY[key].kind
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "path": isinstance(value, str),
            "region": isinstance(value, str | list),
        }[kind]
        if not ok:
            expected = {"int": "an integer", "float": "a number", "str": "a string",
                        "bool": "true or false", "path": "a path",
                        "region": '"x0,y0,x1,y1" or [x0, y0, x1, y1]'}[kind]  # fmt: skip
            raise ConfigError(f"{where} {key}={value!r}; expected {expected}")
        if kind == "path":
            p = Path(value).expanduser()
            value = p if p.is_absolute() else path.resolve().parent / p
        out[key] = float(value) if kind == "float" else value
    return out


def read_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings given as ``FERVID_PROCESS_<KEY>`` environment variables, converted.
    An unknown ``FERVID_PROCESS_*`` name is refused like an unknown config key."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or text == "":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in BY_KEY:
            raise ConfigError(unknown_key_message(key, f"environment {name}", list(BY_KEY)))
        values[key] = coerce(BY_KEY[key], text, name)
    return values


# --------------------------------------------------------------------------- layering
@dataclass(frozen=True)
class Resolved:
    """Every option's value and where it came from."""

    values: dict[str, Any]
    sources: dict[str, Source]
    config: Path | None = None

    def origin(self, key: str) -> str:
        return self.sources[key].describe(BY_KEY[key], self.config)


def layer(
    *,
    given: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    file: Mapping[str, Any] | None = None,
    config: Path | None = None,
) -> Resolved:
    """The value of every option from the highest level that has it: ``given`` (the
    command line or the API's keywords), ``env``, ``file``, else the default. Each
    level holds converted values (:func:`coerce`)."""
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    levels = ((Source.GIVEN, given), (Source.ENV, env), (Source.FILE, file))
    for option in OPTIONS:
        values[option.key] = coerce(option, option.default, option.key)
        sources[option.key] = Source.DEFAULT
        for source, level in levels:
            if level and option.key in level:
                values[option.key], sources[option.key] = level[option.key], source
                break
    # fps and every_n are one choice: the higher level wins; fps's default gives way to
    # any every_n (both at one level stays an error, from SampleSettings)
    if values["every_n"] is not None and sources["every_n"] > sources["fps"]:
        values["fps"], sources["fps"] = None, sources["every_n"]
    elif values["fps"] is not None and sources["fps"] > sources["every_n"]:
        values["every_n"], sources["every_n"] = None, sources["fps"]
    return Resolved(values=values, sources=sources, config=config)


def run_settings(inputs: Any, out: Any, resolved: Resolved) -> s.RunSettings:
    """:class:`RunSettings` for ``inputs`` (paths) and ``out`` from resolved values; the
    settings classes validate them. A value that came from the environment or the
    config file is named in the error."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    v = resolved.values
    try:
        return s.RunSettings(
            inputs=tuple(Path(p) for p in inputs),
            out=Path(out),
            discover=s.DiscoverSettings(extensions=v["ext"], id_pattern=v["id_pattern"],
                                        settle_seconds=v["settle_seconds"]),
            sample=s.SampleSettings(fps=v["fps"], every_n=v["every_n"]),
            detect=s.DetectSettings(
                detector=v["detector"], score_threshold=v["det_threshold"],
                min_face_px=v["min_face"], nms_iou=v["det_nms"], long_side=v["det_long_side"],
            ),
            crop=s.CropSettings(margin=v["margin"], align=v["align"]),
            classify=s.ClassifySettings(
                model_path=v["model"], device=v["device"], batch_size=v["batch_size"]
            ),
            track=s.TrackSettings(max_gap_s=v["max_gap_seconds"]),
            smooth=s.SmoothSettings(
                method=v["smoothing"], seconds=v["smoothing_seconds"],
                min_segment_s=v["min_segment_seconds"], hysteresis=v["hysteresis"],
            ),
            overwrite=v["overwrite"], workers=v["workers"], ray_address=v["ray_address"],
            executor=v["executor"], gpus=v["gpus"], chunk_seconds=v["chunk_seconds"],
            save_crops=v["save_crops"], keep_empty_frames=v["keep_empty_frames"],
        )  # fmt: skip
    except ConfigError as e:
        raise ConfigError(_with_origin(str(e), resolved)) from None


def _with_origin(message: str, resolved: Resolved) -> str:
    """The settings classes name the flag (``--fps=0.0; ...``); add where a value that
    was not on the command line came from."""
    for option in OPTIONS:
        source = resolved.sources[option.key]
        if message.startswith(f"{option.flag}=") and source in (Source.ENV, Source.FILE):
            return f"{message} (set by {resolved.origin(option.key)})"
    return message


# --------------------------------------------------------------------------- templates
def template() -> str:
    """A commented config file holding every setting at its default
    (``fervid config init``)."""
    lines = [
        "# fervid settings for `fervid process` (read from ./fervid.toml, or --config FILE).",
        "# Precedence: command line > FERVID_PROCESS_<KEY> environment > this file > defaults.",
        "# Relative paths are relative to this file's folder. Uncomment to change a value.",
        "",
        f"[{SECTION}]",
    ]
    panel = None
    for option in OPTIONS:
        if option.panel != panel:
            panel = option.panel
            lines += ["", f"# --- {panel}"]
        lines.append(
            f"# {option.help}"
            + (f" One of: {', '.join(option.choices)}." if option.choices else "")
        )
        default = option.default
        if default is None:
            shown = f" (default: {option.default_text})" if option.default_text else ""
            lines.append(f"# {option.key}: not set{shown}")
        else:
            lines.append(f"# {option.key} = {toml_value(default)}")
    lines += [
        "",
        "# Settings of fervid summarize, trends, report and nightly (the same for all four;",
        "# their command line wins). Defaults: docs/indices.md.",
        f"[{LONGITUDINAL_SECTION}]",
    ]
    lines += [f"# {k.key}: {k.help}" for k in LONGITUDINAL_KEYS]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """``value`` written as TOML (strings quoted, lists in brackets, bools lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return toml_value(value.value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str | Path):
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return repr(value)


def show_value(option: Option, value: Any) -> str:
    """A resolved value as ``fervid config show`` prints it."""
    if value is None:
        return option.default_text or "-"
    if option.kind == "onoff":
        return "on" if value else "off"
    return toml_value(value)
