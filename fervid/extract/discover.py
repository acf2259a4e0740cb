"""Find the input videos: files, directories (walked recursively) and glob patterns.

Every video gets a ``video_id`` that is a fingerprint of its *content*, so a file keeps
its id (and its finished results) when it is moved or renamed, and two copies of the
same recording are recognised as one.

The fingerprint is sampled, not a full hash: blake2b over the file size and three
1 MiB windows (start, middle, end). Hashing every byte of a multi-GB two-hour recording
would cost seconds to minutes per file on network storage, every night; three windows
cost three reads. The caveat: two different files of exactly the same size whose start,
middle and end MiB are identical would collide. Real recordings differ in their first
MiB already (container header: duration, creation time, sample tables), so this needs a
file edited in place between those windows, which a recording workflow does not do.

Files that cannot be read (no permission) are still returned, with a ``path-`` id derived
from their path, so the run records them as failed rows instead of silently skipping them.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fervid.errors import ConfigError, InputError
from fervid.records import VideoInput
from fervid.settings import DiscoverSettings

#: Size of each of the three windows hashed into the content fingerprint.
FINGERPRINT_WINDOW = 1 << 20

#: Suffixes of files still being downloaded or copied (browsers, rsync-like tools).
PARTIAL_SUFFIXES = frozenset(
    {".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".filepart", ".!qb"}
)

_GLOB_MAGIC = re.compile(r"[*?\[]")

log = logging.getLogger(__name__)


class _NoVideos(InputError):
    """An existing folder or a glob that holds no videos: fatal only when every input is."""


# --------------------------------------------------------------------------- public API
def discover(inputs: Sequence[Path | str], settings: DiscoverSettings) -> list[VideoInput]:
    """Expand files, directories and glob patterns into the videos to analyse.

    A directory is walked recursively for files whose extension (case-insensitive) is in
    ``settings.extensions``; hidden files and folders (name starting with ``.``) and
    partial downloads (:data:`PARTIAL_SUFFIXES`) are skipped, and symbolic links to
    folders are not followed (they can loop). A file named explicitly is taken whatever
    its extension: the user asked for it, and decoding will fail it clearly if it is not
    a video. A glob pattern (``"videos/**/*.mp4"``, quoted so the shell leaves it alone)
    keeps the matches that have a video extension or the extension the pattern spells out.

    Returns one :class:`VideoInput` per file, de-duplicated by resolved path (the same
    file reached through two inputs or a symlink counts once), sorted by path. Paths are
    absolute. ``rel_path`` (POSIX separators) is relative to the directory or to the
    literal folder part of the glob it was found under, or the file name for a file input.

    Raises :class:`InputError` for a path that does not exist or a folder that cannot be
    listed; for a glob that matches nothing or a directory or pattern without videos only
    when no other input has videos (otherwise that input is logged as a warning on the
    ``fervid.extract.discover`` logger and the others are returned);
    :class:`ConfigError` for a malformed ``settings.id_pattern``.
    """
    if not inputs:
        raise InputError("no inputs given; pass video files, folders or quoted glob patterns")
    exts = _normalise_extensions(settings.extensions)
    pattern = IdPattern.parse(settings.id_pattern) if settings.id_pattern else None

    found: dict[Path, _Found] = {}
    empty: list[_NoVideos] = []
    for item in inputs:
        try:
            hits = list(_expand(item, exts))
        except _NoVideos as e:  # one empty folder of several (a day without recordings)
            empty.append(e)
            continue
        for hit in hits:
            found.setdefault(hit.path.resolve(), hit)  # the first input that reached it wins
    if not found:
        if len(empty) == 1:
            raise empty[0]
        raise InputError(
            f"no videos found in {', '.join(map(str, inputs))} (looked for "
            f"{_ext_list(exts)}); use --ext to add extensions"
        )
    for err in empty:
        log.warning("%s; the other inputs are processed", err)
    videos = [_video_input(hit, pattern) for hit in found.values()]
    return sorted(videos, key=lambda v: str(v.path))


def fingerprint(path: Path) -> str:
    """Content fingerprint of a file: 16 hex chars of blake2b over size + 3 windows.

    Files up to three windows long are hashed whole. Raises ``OSError`` if the file
    cannot be read.
    """
    size = os.stat(path).st_size
    h = hashlib.blake2b(digest_size=8)
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        if size <= 3 * FINGERPRINT_WINDOW:
            h.update(f.read())
        else:
            for offset in (0, (size - FINGERPRINT_WINDOW) // 2, size - FINGERPRINT_WINDOW):
                f.seek(offset)
                h.update(f.read(FINGERPRINT_WINDOW))
    return h.hexdigest()


def path_id(path: Path) -> str:
    """Stand-in ``video_id`` for a file that cannot be read: ``path-`` + hash of its path."""
    digest = hashlib.blake2b(str(Path(path).resolve()).encode(), digest_size=8).hexdigest()
    return f"path-{digest}"


# --------------------------------------------------------------------------- --id-pattern
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DATE_FORMATS = ("YYYY-MM-DD", "YYYYMMDD", "YYYY_MM_DD")


def is_date_field(name: str) -> bool:
    """Fields named ``date`` or ``*_date`` (e.g. ``session_date``) must hold a date."""
    return name == "date" or name.endswith("_date")


@dataclass(frozen=True)
class IdPattern:
    """A path pattern such as ``"{subject}/{session_date}_{name}.mp4"``.

    ``{field}`` matches the text of one path component or part of it (never a ``/``);
    the first of two fields separated by literal text takes the shortest match.
    Fields named ``date`` or ``*_date`` match only dates written ``YYYY-MM-DD``,
    ``YYYYMMDD`` or ``YYYY_MM_DD`` and are returned as ISO ``YYYY-MM-DD``. Everything
    else is literal text (``{{`` and ``}}`` for literal braces), compared
    case-insensitively. The pattern is matched against the *end* of a path, starting at
    a folder boundary, so it works whatever folder the videos were found under.
    """

    pattern: str
    fields: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, pattern: str) -> IdPattern:
        """Compile a pattern; raises :class:`ConfigError` naming what is wrong."""
        tokens = _tokenise(pattern)
        fields = tuple(text for kind, text in tokens if kind == "field")
        if not fields:
            _bad(pattern, "it has no {field}; write e.g. '{subject}/{session_date}_{name}.mp4'")
        for name in fields:
            if fields.count(name) > 1:
                _bad(pattern, f"field {{{name}}} appears twice; give each field its own name")
        if pattern.startswith("/"):
            _bad(pattern, "it starts with '/'; it is matched against the end of the path, drop it")
        body = []
        for k, (kind, text) in enumerate(tokens):
            if kind == "literal":
                body.append(re.escape(text))
                continue
            if k > 0 and tokens[k - 1][0] == "field":
                _bad(
                    pattern,
                    f"fields {{{tokens[k - 1][1]}}} and {{{text}}} touch, so where one ends is "
                    "ambiguous; put literal text (e.g. '_') between them",
                )
            if is_date_field(text):
                body.append(rf"(?P<{text}>\d{{4}}(?P<_sep{k}>[-_]?)\d{{2}}(?P=_sep{k})\d{{2}})")
            else:
                body.append(rf"(?P<{text}>[^/]+?)")
        regex = re.compile(r"(?:^|/)" + "".join(body) + r"$", re.IGNORECASE)
        return cls(pattern=pattern, fields=fields, regex=regex)

    def match(self, rel_path: str) -> dict[str, str] | None:
        """Field values from the end of ``rel_path``; None if it does not match.

        A date field that looks like a date but is not one (``2024-13-45``) is no match.
        """
        # On POSIX a backslash is an ordinary character of a file name, not a separator.
        m = self.regex.search(rel_path.replace(os.sep, "/") if os.sep != "/" else rel_path)
        if m is None:
            return None
        out: dict[str, str] = {}
        for name in self.fields:
            value = m.group(name)
            if is_date_field(name):
                iso = _iso_date(value)
                if iso is None:
                    return None
                value = iso
            out[name] = value
        return out


def _tokenise(pattern: str) -> list[tuple[str, str]]:
    """Split into ("literal", text) and ("field", name) tokens; ``{{``/``}}`` are braces."""
    tokens: list[tuple[str, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "{}" and pattern.startswith(c * 2, i):
            literal.append(c)
            i += 2
        elif c == "{":
            end = pattern.find("}", i)
            if end < 0:
                _bad(pattern, f"'{{' at position {i} is never closed; write '{{{{' for a brace")
            name = pattern[i + 1 : end]
            if not _FIELD_NAME.fullmatch(name):
                _bad(
                    pattern,
                    f"{{{name}}} is not a field name; use letters, digits and '_', "
                    "starting with a letter",
                )
            if literal:
                tokens.append(("literal", "".join(literal)))
                literal = []
            tokens.append(("field", name))
            i = end + 1
        elif c == "}":
            _bad(pattern, f"'}}' at position {i} has no opening '{{'; write '}}}}' for a brace")
        else:
            literal.append(c)
            i += 1
    if literal:
        tokens.append(("literal", "".join(literal)))
    return tokens


def _iso_date(text: str) -> str | None:
    digits = text.replace("-", "").replace("_", "")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])).isoformat()
    except ValueError:
        return None


def _bad(pattern: str, why: str) -> None:
    raise ConfigError(f"--id-pattern={pattern!r} is malformed: {why}")


# --------------------------------------------------------------------------- expansion
@dataclass(frozen=True)
class _Found:
    path: Path  # absolute, symlinks not resolved
    rel_path: str  # POSIX, relative to the input root
    match_target: str  # what --id-pattern is matched against


def _expand(item: Path | str, exts: frozenset[str]) -> Iterator[_Found]:
    raw = os.path.expanduser(str(item))
    path = Path(raw)
    if path.is_file():
        # An explicit file has no root: its name is its rel_path, and --id-pattern is
        # matched against its whole path so folder fields (e.g. {subject}) still work.
        absolute = _absolute(path)
        yield _Found(absolute, absolute.name, absolute.as_posix())
        return
    if path.is_dir():
        root = _absolute(path)
        hits = [_rel_found(p, root) for p in _walk(root, exts, shown=raw)]
        if not hits:
            raise _NoVideos(
                f"no videos found under {raw} (looked for {_ext_list(exts)}); "
                "use --ext to add extensions"
            )
        yield from hits
        return
    if path.exists():
        raise InputError(f"{raw} is neither a file nor a folder; pass video files or folders")
    if path.is_symlink():
        raise InputError(f"{raw} is a broken symbolic link; fix the link or pass its target")
    if _GLOB_MAGIC.search(raw):
        yield from _glob(raw, exts)
        return
    raise InputError(f"input not found: {raw}; check the path (and quote glob patterns)")


def _glob(pattern: str, exts: frozenset[str]) -> Iterator[_Found]:
    matches = _glob_matches(pattern)
    if not matches:
        raise _NoVideos(
            f"glob {pattern!r} matched no files; check the pattern, and quote it so the "
            "shell does not expand it"
        )
    root = _absolute(_glob_root(pattern))
    # "videos/*.mts": the pattern names an extension, so take it even if not in --ext.
    suffix = Path(pattern).suffix.lower()
    wanted = exts | {suffix} if suffix and not _GLOB_MAGIC.search(suffix) else exts
    hits: list[_Found] = []
    for match in matches:
        path = _absolute(Path(match))
        if path.is_dir():
            if not _skipped(path.name):
                hits.extend(_rel_found(p, root) for p in _walk(path, exts, shown=match))
        elif path.is_file() and not _skipped(path.name) and path.suffix.lower() in wanted:
            hits.append(_rel_found(path, root))
    if not hits:
        raise _NoVideos(
            f"no videos found matching {pattern!r}: {len(matches)} paths matched, none with "
            f"a video extension (looked for {_ext_list(exts)}); use --ext to add extensions"
        )
    yield from hits


def _glob_matches(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``, sorted, but safe from symlink cycles: ``**``
    follows symlinked folders (as glob does) while visiting each real folder once, so a
    link to ``..`` or ``.`` ends the descent instead of recursing until the path is too
    long (exponentially many paths first). Other patterns are glob's own."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    root = str(_glob_root(pattern))
    regex = _glob_regex(pattern)
    seen: set[tuple[int, int]] = set()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = os.stat(dirpath)
        if (here.st_dev, here.st_ino) in seen:  # reached again through a link: a cycle
            dirnames[:] = []
            continue
        seen.add((here.st_dev, here.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            shown = path[2:] if root == "." and not pattern.startswith("./") else path
            if regex.fullmatch(shown):
                out.append(shown)
    return sorted(out)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob with ``**`` as a regex over paths: ``**`` any number of folders, ``*`` and
    ``?`` within one name, ``[...]`` a character class; no name starting with '.' is
    matched by a wildcard (glob's rule)."""
    parts = []
    segments = pattern.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            parts.append(r"(?:[^/.][^/]*(?:/|$))*" if last else r"(?:[^/.][^/]*/)*")
            continue
        rx = r"(?!\.)" if seg[:1] in ("*", "?", "[") else ""
        j = 0
        while j < len(seg):
            c = seg[j]
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[" and (end := seg.find("]", j + 2)) > 0:
                body = seg[j + 1 : end]
                body = "^" + body[1:] if body.startswith("!") else body
                rx += "[" + body.replace("\\", "\\\\") + "]"
                j = end
            else:
                rx += re.escape(c)
            j += 1
        parts.append(rx + ("" if last else "/"))
    return re.compile("".join(parts))


def _walk(root: Path, exts: frozenset[str], *, shown: str) -> list[Path]:
    """Video files under ``root``; ``shown``: ``root`` as the user wrote it (messages name
    folders from there, not by their absolute path)."""

    def onerror(err: OSError) -> None:
        rel = os.path.relpath(err.filename, root) if err.filename else "."
        where = shown if rel == "." else os.path.join(shown, rel)
        raise InputError(
            f"cannot list folder {where}: {err.strerror}; fix its permissions or "
            "leave it out of the inputs"
        )

    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        for name in filenames:
            path = Path(dirpath) / name
            # is_file(): skips broken links, fifos and sockets that merely look like videos
            if not _skipped(name) and path.suffix.lower() in exts and path.is_file():
                out.append(path)
    return out


def _skipped(name: str) -> bool:
    """Hidden entries, partial downloads and Office-style lock files."""
    return (
        name.startswith(".")
        or name.startswith("~$")
        or Path(name).suffix.lower() in PARTIAL_SUFFIXES
    )


def _glob_root(pattern: str) -> Path:
    """The literal folder part of a glob: ``videos/2024`` for ``videos/2024/**/*.mp4``."""
    parts = Path(pattern).parts
    literal: list[str] = []
    for part in parts[:-1]:
        if _GLOB_MAGIC.search(part):
            break
        literal.append(part)
    return Path(*literal) if literal else Path(".")


def _rel_found(path: Path, root: Path) -> _Found:
    rel = Path(os.path.relpath(path, root)).as_posix()
    return _Found(path, rel, rel)


def _absolute(path: Path) -> Path:
    # abspath normalises "a/../b" without resolving symlinks, so paths stay as the user
    # sees them (and are valid in worker processes with another working directory).
    return Path(os.path.abspath(path))


def _video_input(hit: _Found, pattern: IdPattern | None) -> VideoInput:
    try:
        size = hit.path.stat().st_size
    except OSError:
        size = 0
    try:
        video_id = fingerprint(hit.path)
    except OSError:  # unreadable: kept, so decode fails it as a recorded row
        video_id = path_id(hit.path)
    fields = pattern.match(hit.match_target) if pattern is not None else None
    return VideoInput(
        path=hit.path,
        video_id=video_id,
        rel_path=hit.rel_path,
        size_bytes=size,
        fields=fields or {},
        id_pattern_matched=None if pattern is None else fields is not None,
    )


def _normalise_extensions(extensions: Sequence[str]) -> frozenset[str]:
    out = set()
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext or ext == ".":
            raise ConfigError(f"--ext={ext!r}; expected an extension such as .mp4")
        out.add(ext if ext.startswith(".") else f".{ext}")
    if not out:
        raise ConfigError("--ext is empty; give at least one extension such as .mp4")
    return frozenset(out)


def _ext_list(exts: frozenset[str]) -> str:
    return ", ".join(sorted(exts))
