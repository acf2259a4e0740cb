"""One colour per emotion, shared by every figure fervid draws (evaluation, reports).

The Okabe-Ito palette (Okabe & Ito, 2008), distinguishable under the common forms of
colour-vision deficiency. Neutral is grey so the emotional classes stand out; the
palette's yellow is left out because it is unreadable as a thin line on white.
"""

from __future__ import annotations

from types import MappingProxyType

#: Hex colour of each of fervid's emotion classes.
EMOTION_COLORS: MappingProxyType[str, str] = MappingProxyType(
    {
        "angry": "#D55E00",  # vermillion
        "disgust": "#009E73",  # bluish green
        "fear": "#CC79A7",  # reddish purple
        "happy": "#E69F00",  # orange
        "neutral": "#999999",  # grey
        "sad": "#0072B2",  # blue
        "surprise": "#56B4E9",  # sky blue
    }
)

#: Colours for class names outside fervid's seven (a custom model's extra classes).
_EXTRA = ("#000000", "#F0E442", "#882255", "#44AA99", "#117733", "#332288", "#AA4499")


def emotion_color(name: str, index: int = 0) -> str:
    """Hex colour of class ``name``; unknown names get a stable extra colour by ``index``."""
    return EMOTION_COLORS.get(name.lower(), _EXTRA[index % len(_EXTRA)])


def class_colors(class_names: tuple[str, ...] | list[str]) -> list[str]:
    """Hex colours for ``class_names`` in order (one per class)."""
    return [emotion_color(n, i) for i, n in enumerate(class_names)]
