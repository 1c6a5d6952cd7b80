"""Classical metrics of a model Q against the true distribution P, from held-out test records.

Every test record a ~ P carries its exact ln P(a) (dataset ``/log_prob``); the model supplies
ln Q(a). With n test records and sample means ``mean`` over them (expectations over P)::

    NLL        = E_P[-ln Q]                      ± std(-ln Q) / √n
    KL(P‖Q)    = E_P[ln P - ln Q]                ± std(ln P - ln Q) / √n
    F_c        = (Σ_a √(P(a) Q(a)))² = m²,  m = E_P[√(Q/P)],   ± 2 |m| std(√(Q/P)) / √n

(the F_c error is the delta method). KL is the forward divergence KL(P‖Q): the expectation is over
the *true* distribution, which is what the test records sample. For a model whose ``log_prob`` is
an estimate (flows, ``exact_log_prob = False``) all three are estimates of the same quantities
with that model's ln Q; the noisy estimate of F_c may exceed 1 by a few standard errors.

Every number is an :class:`Estimate` ``(value, stderr)``; exact quantities carry ``stderr = 0``.

Example:
    >>> log_p = np.log(np.array([0.5, 0.25, 0.25]))
    >>> kl_divergence(log_p, log_p)
    Estimate(value=0.0, stderr=0.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from qtomo.distribution import Distribution, log_prob_batched
from qtomo.errors import QtomoError

__all__ = [
    "ClassicalMetrics",
    "Estimate",
    "classical_fidelity",
    "classical_metrics",
    "kl_divergence",
    "nll",
]


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
    def from_samples(cls, samples: np.ndarray, axis: int = 0) -> Estimate:
        """Sample mean along ``axis`` ± sample standard deviation (ddof = 1) / √n.

        A single sample gives ``stderr = inf`` (no spread to estimate it from).
        """
        samples = np.asarray(samples, dtype=np.float64)
        n = samples.shape[axis]
        mean = samples.mean(axis=axis)
        if n < 2:
            return cls._wrap(mean, np.full_like(mean, np.inf))
        return cls._wrap(mean, samples.std(axis=axis, ddof=1) / np.sqrt(n))

    @classmethod
    def _wrap(cls, value: np.ndarray, stderr: np.ndarray) -> Estimate:
        if np.ndim(value) == 0:
            return cls(float(value), float(stderr))
        return cls(np.asarray(value, dtype=np.float64), np.asarray(stderr, dtype=np.float64))

    def __iter__(self) -> Iterator[float | np.ndarray]:
        return iter((self.value, self.stderr))

    def __getitem__(self, index) -> Estimate:
        return Estimate._wrap(np.asarray(self.value)[index], np.asarray(self.stderr)[index])

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


def nll(log_q: np.ndarray) -> Estimate:
    """Negative log-likelihood E_P[-ln Q(a)] per record (nats), over test records a ~ P.

    Args:
        log_q: (n,) float, the model's ln Q of each test record.
    """
    return Estimate.from_samples(-np.asarray(log_q, dtype=np.float64))


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> Estimate:
    """Forward divergence KL(P‖Q) = E_P[ln P(a) - ln Q(a)] (nats), over test records a ~ P.

    Args:
        log_p: (n,) float, exact ln P of each test record.
        log_q: (n,) float, the model's ln Q of the same records.

    Example:
        >>> log_p = np.log([0.5, 0.5])
        >>> round(kl_divergence(log_p, np.log([0.25, 0.25])).value, 6)    # ln 2
        0.693147
    """
    return Estimate.from_samples(np.asarray(log_p, np.float64) - np.asarray(log_q, np.float64))


def classical_fidelity(log_p: np.ndarray, log_q: np.ndarray) -> Estimate:
    """F_c = (Σ_a √(P(a) Q(a)))² = (E_P[√(Q/P)])², error by the delta method (2 |m| σ_m).

    Args:
        log_p: (n,) float, exact ln P of each test record.
        log_q: (n,) float, the model's ln Q of the same records.

    Example:
        >>> log_p = np.log([0.5, 0.5])
        >>> round(classical_fidelity(log_p, np.log([0.5, 0.5])).value, 12)
        1.0
    """
    ratio = np.exp(0.5 * (np.asarray(log_q, np.float64) - np.asarray(log_p, np.float64)))
    mean, stderr = Estimate.from_samples(ratio)
    return Estimate(mean**2, 2 * abs(mean) * stderr)


@dataclass(frozen=True)
class ClassicalMetrics:
    """NLL, KL(P‖Q), F_c of a model and the entropy H(P), over ``n_test`` test records a ~ P.

    Attributes:
        nll: E_P[−ln Q] (nats per record).
        kl: E_P[ln P − ln Q], the forward divergence.
        classical_fidelity: (E_P[√(Q/P)])².
        entropy: E_P[−ln P], the floor of the NLL (NLL − H = KL record by record).
        n_test: the number of test records.
    """

    nll: Estimate
    kl: Estimate
    classical_fidelity: Estimate
    entropy: Estimate
    n_test: int

    def as_dict(self) -> dict:
        """``{"nll", "kl" (with its direction), "classical_fidelity", "entropy", "n_test"}``."""
        return {"nll": self.nll.as_dict(),
                "kl": {**self.kl.as_dict(), "direction": "KL(P||Q) = E_P[ln P - ln Q]"},
                "classical_fidelity": self.classical_fidelity.as_dict(),
                "entropy": self.entropy.as_dict(), "n_test": self.n_test}


def classical_metrics(model: Distribution, chunks: Iterable[tuple[np.ndarray, np.ndarray]], *,
                      batch_size: int = 65536) -> ClassicalMetrics:
    """NLL, KL(P‖Q), F_c of ``model`` and the entropy H(P) = E_P[-ln P] over test records.

    H(P) is the floor of the NLL: NLL − H(P) = KL(P‖Q) record by record.

    Args:
        model: the model Q (model interface).
        chunks: iterable of ``(outcomes (b, L) ints, log_p (b,) float64)`` test records a ~ P
            with their exact ln P, e.g. ``dataset.iter_chunks(size, start, stop)``.
        batch_size: rows per forward pass.

    Returns:
        :class:`ClassicalMetrics`.

    Raises:
        QtomoError: if there are no test records.

    Example:
        >>> import torch
        >>> class Uniform:                        # Q = 1/4 on two 2-outcome sites
        ...     L, K = 2, 2
        ...     def log_prob(self, a):
        ...         return torch.full((a.shape[0],), float(np.log(0.25)), dtype=torch.float64)
        >>> records = np.array([[0, 0], [1, 1]])
        >>> out = classical_metrics(Uniform(), [(records, np.log([0.5, 0.5]))])
        >>> round(out.kl.value, 6), round(out.classical_fidelity.value, 6), out.n_test
        (0.693147, 0.5, 2)
    """
    log_p_parts, log_q_parts = [], []
    for outcomes, log_p in chunks:
        log_p_parts.append(np.asarray(log_p, dtype=np.float64))
        log_q_parts.append(log_prob_batched(model, outcomes, batch_size=batch_size))
    if not log_p_parts:
        raise QtomoError("no test records: the classical metrics need at least one")
    log_p, log_q = np.concatenate(log_p_parts), np.concatenate(log_q_parts)
    return ClassicalMetrics(nll=nll(log_q), kl=kl_divergence(log_p, log_q),
                            classical_fidelity=classical_fidelity(log_p, log_q),
                            entropy=Estimate.from_samples(-log_p), n_test=int(log_p.shape[0]))
