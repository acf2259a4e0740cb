"""Missing values: the one place that decides what counts as "no value".

Rows read through pandas carry missing values as ``None``, ``NaN`` (float or numpy),
``NaT`` or ``pd.NA`` depending on the column type; summaries, trends and the report all
need the same answer, so they all ask :func:`is_missing` / :func:`plain`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def is_missing(x: Any) -> bool:
    """True for None, NaN, NaT and pd.NA (scalars); False for any other value, arrays
    included."""
    if x is None:
        return True
    if np.ndim(x) != 0:
        return False
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def plain(x: Any) -> Any:
    """``x`` as a plain Python value for a table row: None when missing, ``float`` for
    numpy floats, ``datetime`` for pandas timestamps, anything else unchanged."""
    if is_missing(x):
        return None
    if isinstance(x, float | np.floating):
        return float(x)
    if isinstance(x, pd.Timestamp):
        return x.to_pydatetime()
    return x
