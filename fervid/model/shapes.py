"""The tensor shapes a model file must hold for its spec, computed without torch.

The driver checks a model file's tensors against its spec before a run opens its
output, so weights of another width or class count are refused in one line at load,
never by every classifier after rows were written. The table follows torchvision's
``mobilenet_v2`` plus fervid's head (:func:`fervid.model.modelfile.build_network`);
``tests/test_model_header.py`` compares it with the real network's ``state_dict``.
"""

from __future__ import annotations

from fervid.model.spec import ModelSpec

Shape = tuple[int, ...]

#: MobileNetV2's stages, as torchvision and :mod:`fervid.model.mobilenet_v2` build them:
#: (expansion t, output channels c, repeats n, first stride s).
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_BN = ("weight", "bias", "running_mean", "running_var")


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: channels rounded to a multiple of 8."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn(prefix: str, out_c: int, in_c: int, k: int) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {f"{prefix}.0.weight": (out_c, in_c, k, k)}
    shapes |= {f"{prefix}.1.{n}": (out_c,) for n in _BN}
    shapes[f"{prefix}.1.num_batches_tracked"] = ()
    return shapes


def _bn(prefix: str, c: int) -> dict[str, Shape]:
    return {f"{prefix}.{n}": (c,) for n in _BN} | {f"{prefix}.num_batches_tracked": ()}


def expected_shapes(spec: ModelSpec) -> dict[str, Shape]:
    """State-dict key -> shape of the network :func:`build_network` makes for ``spec``."""
    w = spec.width_mult
    c_in = make_divisible(32 * w)
    last = make_divisible(1280 * max(1.0, w))
    shapes = _conv_bn("features.0", c_in, 3, 3)
    i = 1
    for t, c, n, _ in INVERTED_RESIDUAL_SETTING:
        c_out = make_divisible(c * w)
        for _ in range(n):
            hidden = round(c_in * t)
            p, j = f"features.{i}.conv", 0
            if t != 1:
                shapes |= _conv_bn(f"{p}.0", hidden, c_in, 1)
                j = 1
            shapes |= _conv_bn(f"{p}.{j}", hidden, 1, 3)  # depthwise
            shapes[f"{p}.{j + 1}.weight"] = (c_out, hidden, 1, 1)
            shapes |= _bn(f"{p}.{j + 2}", c_out)
            c_in, i = c_out, i + 1
    shapes |= _conv_bn(f"features.{i}", last, c_in, 1)
    head_in, k = last, 1
    if spec.hidden > 0:
        shapes |= {"classifier.1.weight": (spec.hidden, last), "classifier.1.bias": (spec.hidden,)}
        head_in, k = spec.hidden, 4
    shapes |= {
        f"classifier.{k}.weight": (spec.num_classes, head_in),
        f"classifier.{k}.bias": (spec.num_classes,),
    }
    return shapes
