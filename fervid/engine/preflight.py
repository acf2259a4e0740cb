"""What a run checks before it opens anything for writing.

A run refused for something knowable up front (no CUDA for ``--device cuda``, fewer
GPUs than ``--gpus``, a ``--ray-address`` nothing answers at, an ``--out`` it could
not add to) says so in one line and exits 2 *before* reading a video or writing a
byte: the output stays byte-identical (``tests/test_refusals.py``). The model file is
checked before this, when its header is read (:mod:`fervid.model.spec`).

An attached cluster's GPUs are only known once attached; the runner starts the
executor before it writes any row, so a refusal there leaves the rows alone too.
"""

from __future__ import annotations

from fervid.errors import ConfigError
from fervid.model.spec import ModelSpec
from fervid.settings import Device, RunSettings


def check_before_writing(settings: RunSettings, spec: ModelSpec) -> None:
    """Raise :class:`ConfigError` (one line, with the fix) unless the run can start."""
    from fervid.output.store import check_output

    check_output(settings.out, spec.class_names)
    if settings.ray_address:
        from fervid.engine.ray_setup import check_address

        check_address(settings.ray_address)  # a bounded TCP connect, not Ray's minute
        return  # the cluster's GPUs are checked when attached, before any row is written
    _check_local_gpus(settings)


def _check_local_gpus(settings: RunSettings) -> None:
    device, wanted = settings.classify.device, settings.gpus
    if device is Device.CPU or not (device is Device.CUDA or wanted):
        return
    from fervid.engine.gpus import visible_gpus

    have = visible_gpus()
    if device is Device.CUDA and have == 0:
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu"
        )
    if wanted and wanted > have:
        raise ConfigError(
            f"--gpus={wanted} but this machine shows {have} CUDA GPU(s); pass --gpus {have} "
            "or fewer (0: classify on the CPU)"
        )
