"""Terminal progress and the end-of-run summary (the CLI's hooks; the library never prints)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fervid.engine.runner import RunSummary
from fervid.records import VideoInput

#: Progress bar redraws per second (its elapsed and ETA columns change once a second).
REFRESH_PER_SECOND = 2


class RichHooks:
    """Progress on the terminal (stderr): a status line while Ray starts, then a bar over
    video-seconds (chunks advance it, so one long video moves too) with an ETA, and one
    line per video as it finishes."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._videos = (0, 0)  # (finished, total)

    def __enter__(self) -> RichHooks:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, e, tb)

    def status(self, message: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=escape(message))
        else:
            self.console.print(f"[dim]{escape(message)}[/]", highlight=False, soft_wrap=True)

    def start(self, total: int, skipped: int, seconds: float) -> None:
        # The bar appears only once the videos are found and planned, so a usage error
        # before that leaves stderr with its one line and no empty bar.
        if not self.enabled or self._progress is not None:
            return
        self._videos = (0, total)
        self._progress = Progress(
            TextColumn("[bold]fervid[/]"), BarColumn(), TextColumn("{task.fields[videos]}"),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"),
            console=self.console, transient=True,  # logs keep the per-video lines only
            # 2 redraws a second, not rich's 10: on a terminal the bar's thread cost 2 % of
            # a core at 10 (0.4 % at 2) while the driver otherwise waits at ~0.4 %
            refresh_per_second=REFRESH_PER_SECOND,
            # a library's print must not land above the bar (fervid.engine.log_capture
            # sends it to the log instead)
            redirect_stdout=False, redirect_stderr=False,
        )  # fmt: skip
        self._progress.__enter__()
        note = f"{skipped} already done" if skipped else ""
        self._task = self._progress.add_task(
            note, total=max(seconds, 1e-9), videos=f"0/{total} videos"
        )

    def chunk_done(self, video: VideoInput, seconds: float) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, advance=seconds)

    def video_done(self, video: VideoInput, status: str, detail: str) -> None:
        if self._progress is None or self._task is None:
            return
        done, total = self._videos[0] + 1, self._videos[1]
        self._videos = (done, total)
        self._progress.update(self._task, videos=f"{done}/{total} videos", description="")
        if status != "ok":
            _print_failed(self._progress.console, video.rel_path, detail)
        else:
            self._progress.console.print(
                f"[green]done[/] {escape(video.rel_path)}: {escape(detail)}",
                highlight=False, soft_wrap=True,
            )  # fmt: skip


def print_summary(console: Console, s: RunSummary) -> None:
    t = Table(title="fervid run", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("videos ok", str(s.ok))
    t.add_row("videos failed", str(len(s.failed)))
    t.add_row("videos skipped", str(s.skipped))
    if s.pending:
        t.add_row("videos pending", str(len(s.pending)))
    if s.id_pattern_unmatched:
        t.add_row("not matching --id-pattern", str(len(s.id_pattern_unmatched)))
    t.add_row("frames sampled", str(s.frames))
    t.add_row("face rows", str(s.faces))  # a face in one sampled frame
    t.add_row("faces (tracked people)", str(s.tracks))
    t.add_row("video time", f"{s.video_seconds:.1f} s")
    t.add_row("wall time", f"{s.wall_s:.1f} s")
    t.add_row("real-time factor", f"{s.realtime_factor:.2f}x")
    console.print(t)
    print_failures(console, s)
    if s.replaced:  # the file at a path changed: its new result is the current one
        console.print(
            f"replaced {len(s.replaced)} changed recording(s) (earlier results moved to the "
            f"output's .history/): {escape(', '.join(s.replaced))}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    if s.pending:  # not failures: still being copied, the next run takes them
        console.print(
            f"pending {len(s.pending)} recording(s) still being written (modified within "
            f"--settle-seconds and not complete), left for a later run: "
            f"{escape(', '.join(s.pending))}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
    for line in s.warnings:  # logged when found; repeated here so the end of a log has it
        console.print(f"[yellow]warning[/] {escape(line)}", highlight=False, soft_wrap=True)
    if s.id_pattern_unmatched:  # these rows have no subject: they never enter a trend
        console.print(
            f"[yellow]warning[/] {len(s.id_pattern_unmatched)} recording(s) do not match "
            "--id-pattern (no subject / session date; listed as unassigned):",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        for unmatched in s.id_pattern_unmatched:
            console.print(f"  {escape(unmatched)}", highlight=False, soft_wrap=True)
    for name, written in s.outputs.items():
        console.print(f"{name}: {escape(str(written))}", highlight=False, soft_wrap=True)


def print_failures(console: Console, s: RunSummary) -> None:
    """The failed videos, one line each, and the earlier results kept for them: all
    that ``--quiet`` prints of a run."""
    for path, err in s.failed:
        _print_failed(console, path, err)
    if s.kept:  # failed in this run, but the result an earlier run made is still there
        console.print(
            f"[yellow]kept[/] previous result for {len(s.kept)} video(s) whose rerun failed: "
            f"{escape(', '.join(s.kept))}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip


def _print_failed(console: Console, path: str, error: str) -> None:
    # One unwrapped line per file, so logs can be grepped; file names and messages are
    # escaped because "[...]" in them would be read as rich markup (or crash the print).
    console.print(
        f"[red]failed[/] {escape(path)}: {escape(error)}", highlight=False, soft_wrap=True
    )
