"""Emotion-classifier CPU throughput: faces/s at batch 1, 16, 64 and 256.

Not a test: prints numbers. Each batch size runs preprocessing (resize of synthetic
96x96 BGR crops, grayscale, normalisation) + network + softmax for ``--seconds`` after
a warm-up batch, through :func:`fervid.training.evaluate.measure_inference_speed`.

    python benchmarks/bench_classifier.py [--model PATH] [--threads N] [--seconds 5]

Without ``--model`` the shipped default model is used; if it is not installed yet, a
random-weights network with the default architecture is timed instead (speed does not
depend on the weights) and the output says so.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from fervid.model.modelfile import DEFAULT_MODEL_PATH, ModelSpec, build_network, save_model
from fervid.training.evaluate import measure_inference_speed

BATCH_SIZES = (1, 16, 64, 256)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, default=None, help="fervid .safetensors model file")
    p.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch default)"
    )
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per batch size")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    a = p.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model = a.model
        note = str(model)
        if model is None and DEFAULT_MODEL_PATH.is_file():
            model, note = DEFAULT_MODEL_PATH, f"{DEFAULT_MODEL_PATH.name} (default)"
        elif model is None:
            spec = ModelSpec()
            model = Path(tmp) / "random.safetensors"
            save_model(model, build_network(spec).eval(), spec)
            note = "random weights, default architecture (no default model installed)"
        print(f"model    {note}")
        print(f"cpu      {platform.processor() or platform.machine()}, torch {torch.__version__}")
        print(f"threads  {torch.get_num_threads()} (torch intra-op)")
        print(f"{'batch':>6} {'faces/s':>10} {'ms/face':>9}")
        for bs in a.batch_sizes:
            fps = measure_inference_speed(model, batch_size=bs, seconds=a.seconds)
            print(f"{bs:>6d} {fps:>10.1f} {1000.0 / fps:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
