"""Helpers the benchmarks share: percentiles, medians and library versions."""

from __future__ import annotations

import importlib.metadata
import math
import platform
import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], q: float) -> float:
    """Return the q-quantile (0..1) of values, nearest rank (nan when empty)."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def med(values: Sequence[float]) -> float:
    """Return the median of the values that are not nan (nan when none)."""
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def package_versions(*dists: str) -> dict[str, str]:
    """Return Python's version and each distribution's ('?' when not installed)."""
    out = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "?"
    return out
