"""Plain values and JSON text: :func:`plain` turns numpy numbers and arrays, paths and bytes
into what JSON, HDF5 attributes and ``torch.load(weights_only=True)`` take; :func:`json_text`
writes JSON without the non-standard ``Infinity`` and ``NaN`` (docs/errors.md).

Python's ``json`` writes them by default, and strict readers (``jq``, JavaScript, Go) refuse
the file. A figure that is not a finite number is written as ``null`` with a sibling
``<name>_reason`` saying what it was and why, e.g. the standard error of a single test record::

    "stderr": null, "stderr_reason": "inf: a spread needs at least two records"
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_text", "plain", "without_nonfinite"]

_REASONS = {"inf": "inf: a spread needs at least two records, or a probability of 0 was met",
            "-inf": "-inf: the logarithm of a probability of 0",
            "nan": "nan: not defined for these records"}


def json_text(value: Any) -> str:
    """``value`` (plain dicts, lists, numbers, strings) as indented standard JSON text, with
    :func:`without_nonfinite` applied.

    Example:
        >>> print(json_text({"nll": {"value": 1.5, "stderr": float("inf")}}))
        {
         "nll": {
          "value": 1.5,
          "stderr": null,
          "stderr_reason": "inf: a spread needs at least two records, or a probability of 0 was met"
         }
        }
    """
    return json.dumps(without_nonfinite(value), indent=1, allow_nan=False)


def without_nonfinite(value: Any) -> Any:
    """A copy of ``value`` where each float that is not finite is None; in a dict, the key
    ``<name>_reason`` beside it says what it was (for a list, the first such entry)."""
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            cleaned[key] = without_nonfinite(item)
            found = _first_nonfinite(item) if not isinstance(item, dict) else None
            if found is not None:
                cleaned[f"{key}_reason"] = _REASONS[found]
        return cleaned
    if isinstance(value, list | tuple):
        return [without_nonfinite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _first_nonfinite(value: Any) -> str | None:
    """"inf", "-inf" or "nan" for the first non-finite float in a number or nested list."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list | tuple):
        for item in value:
            found = _first_nonfinite(item)
            if found is not None:
                return found
    return None


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists, and paths
    into strings, so that ``torch.load(weights_only=True)`` can read it back.

    Example:
        >>> plain({"h": np.float64(1.0), "rows": (0, np.int64(9)), "path": Path("a.h5")})
        {'h': 1.0, 'rows': [0, 9], 'path': 'a.h5'}
    """
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        return plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bytes):
        return value.decode()
    return value
