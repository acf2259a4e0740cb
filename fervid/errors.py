"""Error hierarchy: every error names what was wrong, what was expected and the fix."""


class FervidError(Exception):
    """Base class of every error fervid raises on purpose."""


class ConfigError(FervidError):
    """A setting or command-line option has an invalid value."""


class InputError(FervidError):
    """An input path does not exist, is unreadable, or holds no videos."""


class DecodeError(FervidError):
    """A video could not be opened or decoded (corrupt, truncated, audio-only...)."""


class ModelError(FervidError):
    """A model file is missing, is not safetensors, or lacks the required metadata."""


class DetectorError(FervidError):
    """The face detector's weights are missing or do not match their checksum."""


class DataError(FervidError):
    """A training or evaluation data set is missing or not in a known layout."""


class MissingExtraError(FervidError, ImportError):
    """An optional feature's package is not installed; the message names the extra to
    install (``pip install 'fervid[decord]'``)."""


class ClusterLost(FervidError):
    """The attached Ray cluster lost the node this run's driver attached to, or its GCS,
    mid-run. :func:`fervid.engine.runner.run` finalizes what finished and re-raises it
    with ``summary`` (a ``RunSummary``) set."""

    summary: object = None
