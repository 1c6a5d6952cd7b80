"""A number with its standard error, the currency of every estimator in qtomo (a leaf module).

Exact quantities carry ``stderr = 0`` (:meth:`Estimate.exact`); Monte Carlo ones the standard error
of their mean (:meth:`Estimate.from_samples`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Estimate"]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo (or exact, ``stderr = 0``) estimate: value ± one standard error.

    ``value`` and ``stderr`` are floats or float64 arrays of one shape. Unpacks as
    ``value, stderr = estimate``; indexing an array estimate gives an element estimate.

    Example:
        >>> est = Estimate.from_samples(np.array([1.0, 2.0, 3.0, 4.0]))
        >>> value, stderr = est
        >>> value, round(stderr, 6)
        (2.5, 0.645497)
        >>> print(est)
        2.5 ± 0.6455
    """

    value: float | np.ndarray
    stderr: float | np.ndarray

    @classmethod
    def exact(cls, value: float | np.ndarray) -> Estimate:
        """A value known exactly (a contraction, an enumeration): ``stderr = 0``.

        Example:
            >>> Estimate.exact(0.25)
            Estimate(value=0.25, stderr=0.0)
        """
        return cls.of(np.asarray(value, dtype=np.float64),
                         np.zeros(np.shape(value), dtype=np.float64))

    @classmethod
    def from_samples(cls, samples: np.ndarray, axis: int = 0) -> Estimate:
        """Sample mean along ``axis`` ± sample standard deviation (ddof = 1) / √n.

        A single sample gives ``stderr = inf`` (no spread to estimate it from).
        """
        samples = np.asarray(samples, dtype=np.float64)
        n = samples.shape[axis]
        mean = samples.mean(axis=axis)
        if n < 2:
            return cls.of(mean, np.full_like(mean, np.inf))
        return cls.of(mean, samples.std(axis=axis, ddof=1) / np.sqrt(n))

    @classmethod
    def of(cls, value: float | np.ndarray, stderr: float | np.ndarray) -> Estimate:
        """``value ± stderr`` as plain floats (0-d input) or float64 arrays of one shape."""
        if np.ndim(value) == 0:
            return cls(float(value), float(stderr))
        return cls(np.asarray(value, dtype=np.float64), np.asarray(stderr, dtype=np.float64))

    def __iter__(self) -> Iterator[float | np.ndarray]:
        return iter((self.value, self.stderr))

    def __getitem__(self, index) -> Estimate:
        return Estimate.of(np.asarray(self.value)[index], np.asarray(self.stderr)[index])

    def __str__(self) -> str:
        if np.ndim(self.value) == 0:
            return f"{self.value:.6g} ± {self.stderr:.4g}"
        value, stderr = (np.array2string(np.asarray(x), precision=4) for x in self)
        return f"{value} ± {stderr}"

    @property
    def relative_error(self) -> float | np.ndarray:
        """stderr / |value| (inf where the value is 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(np.asarray(self.stderr)) / np.abs(np.asarray(self.value))

    def as_dict(self) -> dict:
        """``{"value": …, "stderr": …}`` with plain floats or nested lists (JSON-ready)."""
        if np.ndim(self.value) == 0:
            return {"value": float(self.value), "stderr": float(self.stderr)}
        return {"value": np.asarray(self.value).tolist(),
                "stderr": np.asarray(self.stderr).tolist()}
