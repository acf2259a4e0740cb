"""How many CUDA GPUs this machine shows, without torch or Ray.

The driver decides ``--device cuda`` and ``--gpus N`` before it opens the output, and
must not import torch for it (no second CUDA context beside the classifier's, and a
Ray run's driver never loads torch). Ray counts a node's GPUs the same way: NVIDIA's
management library (``libnvidia-ml``, installed with the driver) gives the count, and
``CUDA_VISIBLE_DEVICES`` narrows it.
"""

from __future__ import annotations

import ctypes
import os

_NVML_SUCCESS = 0


def visible_gpus() -> int:
    """CUDA GPUs a classifier started here could use: 0 without an NVIDIA driver."""
    count = _nvml_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return count
    ids = [d for d in visible.split(",") if d.strip()]
    if visible.strip() in ("", "NoDevFiles") or (ids and ids[0].strip().startswith("-")):
        return 0  # CUDA stops at the first invalid id ("-1" hides every GPU)
    return min(count, len(ids))


def _nvml_count() -> int:
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    try:
        if nvml.nvmlInit_v2() != _NVML_SUCCESS:
            return 0
        n = ctypes.c_uint(0)
        ok = nvml.nvmlDeviceGetCount_v2(ctypes.byref(n)) == _NVML_SUCCESS
        nvml.nvmlShutdown()
    except AttributeError:  # a library without these entry points
        return 0
    return int(n.value) if ok else 0
