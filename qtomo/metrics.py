"""Classical metrics of a model Q against the true distribution P, from held-out test records.

Every test record a ~ P carries its exact ln P(a) (dataset ``/log_prob``); the model supplies
ln Q(a). With n test records and sample means ``mean`` over them (expectations over P)::

    NLL        = E_P[-ln Q]                      ± std(-ln Q) / √n
    KL(P‖Q)    = E_P[ln P - ln Q]                ± std(ln P - ln Q) / √n
    F_c        = (Σ_a √(P(a) Q(a)))² = m²,  m = E_P[√(Q/P)],   ± 2 |m| std(√(Q/P)) / √n

(the F_c error is the delta method). A model without ``log_prob`` (``gan``, sampling only)
gets F_c from a histogram of n_Q of its samples, Q̂(a) = c(a)/n_Q, in the same formula
(:func:`histogram_classical_fidelity`), and no NLL or KL. KL is the forward divergence
KL(P‖Q): the expectation is over the *true* distribution, which is what the test records
sample. For a model whose ``log_prob`` is an estimate (flows, ``exact_log_prob = False``) all
three are estimates of the same quantities with that model's ln Q; the noisy estimate of F_c may
exceed 1 by a few standard errors.

Every number is an :class:`Estimate` ``(value, stderr)``; exact quantities carry ``stderr = 0``.

Example:
    >>> log_p = np.log(np.array([0.5, 0.25, 0.25]))
    >>> kl_divergence(log_p, log_p)
    Estimate(value=0.0, stderr=0.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from qtomo.distribution import Distribution, log_prob_batched, sample_batches
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.guards import integer_records

__all__ = [
    "HISTOGRAM_MAX_RECORDS",
    "LOG_PROB_TOL",
    "ClassicalMetrics",
    "classical_fidelity",
    "check_log_probs",
    "classical_metrics",
    "histogram_classical_fidelity",
    "kl_divergence",
    "nll",
    "sampled_classical_metrics",
]

#: the most records K^L a histogram of model samples is kept over (32 MiB of counts)
HISTOGRAM_MAX_RECORDS = 2**22
#: how far above 0 a ln P or ln Q may lie (rounding of a probability of 1)
LOG_PROB_TOL = 1e-6


def check_log_probs(name: str, values: np.ndarray, n: int | None = None, *,
                    zero_allowed: bool = True) -> np.ndarray:
    """``values`` as float64 (n,) if they are log-probabilities of n ≥ 1 test records: one
    dimension, no NaN, each ≤ 0 (within :data:`LOG_PROB_TOL`), n of them where ``n`` is
    given (the other array's length), and finite unless ``zero_allowed`` (ln Q = −inf: the
    model gives a test record probability 0; ln P of a record drawn from P never is).

    Raises:
        QtomoError: naming the array, the first bad value and its record.

    Example:
        >>> check_log_probs("ln Q", [-0.5, 0.3])
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: ln Q must be <= 0 (a log-probability); got 0.3 at record 1
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise QtomoError(f"{name} must be real numbers, one per test record") from None
    if array.ndim != 1 or array.size == 0 or (n is not None and array.size != n):
        expected = f"({n},) like the other array" if n is not None else "(n,) with n >= 1"
        raise QtomoError(f"{name} must have shape {expected}; got {array.shape}")
    bad = np.isnan(array) | (array > LOG_PROB_TOL) | (~zero_allowed & np.isinf(array))
    if bad.any():
        record = int(np.argmax(bad))
        raise QtomoError(f"{name} must be <= 0 (a log-probability)"
                         f"{'' if zero_allowed else ' and finite'}; got {array[record]:.6g} at "
                         f"record {record}")
    return array


def nll(log_q: np.ndarray) -> Estimate:
    """Negative log-likelihood E_P[-ln Q(a)] per record (nats), over test records a ~ P.

    Args:
        log_q: (n,) float, the model's ln Q of each test record.

    Raises:
        QtomoError: for values that are not log-probabilities (:func:`check_log_probs`).
    """
    return Estimate.from_samples(-check_log_probs("ln Q", log_q))


def kl_divergence(log_p: np.ndarray, log_q: np.ndarray) -> Estimate:
    """Forward divergence KL(P‖Q) = E_P[ln P(a) - ln Q(a)] (nats), over test records a ~ P.

    Args:
        log_p: (n,) float, exact ln P of each test record.
        log_q: (n,) float, the model's ln Q of the same records.

    Raises:
        QtomoError: for arrays of other lengths or values that are not log-probabilities
            (:func:`check_log_probs`: ln P finite, both ≤ 0).

    Example:
        >>> log_p = np.log([0.5, 0.5])
        >>> round(kl_divergence(log_p, np.log([0.25, 0.25])).value, 6)    # ln 2
        0.693147
    """
    log_p = check_log_probs("ln P", log_p, zero_allowed=False)
    return Estimate.from_samples(log_p - check_log_probs("ln Q", log_q, log_p.size))


def classical_fidelity(log_p: np.ndarray, log_q: np.ndarray) -> Estimate:
    """F_c = (Σ_a √(P(a) Q(a)))² = (E_P[√(Q/P)])², error by the delta method (2 |m| σ_m).

    Args:
        log_p: (n,) float, exact ln P of each test record.
        log_q: (n,) float, the model's ln Q of the same records.

    Raises:
        QtomoError: for arrays of other lengths or values that are not log-probabilities
            (:func:`check_log_probs`: ln P finite, both ≤ 0).

    Example:
        >>> log_p = np.log([0.5, 0.5])
        >>> round(classical_fidelity(log_p, np.log([0.5, 0.5])).value, 12)
        1.0
    """
    log_p = check_log_probs("ln P", log_p, zero_allowed=False)
    ratio = np.exp(0.5 * (check_log_probs("ln Q", log_q, log_p.size) - log_p))
    mean, stderr = Estimate.from_samples(ratio)
    return Estimate(mean**2, 2 * abs(mean) * stderr)


@dataclass(frozen=True)
class ClassicalMetrics:
    """NLL, KL(P‖Q), F_c of a model and the entropy H(P), over ``n_test`` test records a ~ P.

    Attributes:
        nll: E_P[−ln Q] (nats per record), the held-out cross-entropy; None for a model
            without ``log_prob`` (``gan``).
        kl: E_P[ln P − ln Q], the forward divergence; None for measured records (no exact ln P)
            or a model without ``log_prob``.
        classical_fidelity: (E_P[√(Q/P)])²; from a histogram of model samples for a model
            without ``log_prob`` (``samples`` of them); None for measured records, or where
            K^L is too large for a histogram.
        entropy: E_P[−ln P], the floor of the NLL (NLL − H = KL record by record); None for
            measured records.
        n_test: the number of test records.
        samples: model samples behind a histogram F_c; None when Q came from ``log_prob``.
    """

    nll: Estimate | None
    kl: Estimate | None
    classical_fidelity: Estimate | None
    entropy: Estimate | None
    n_test: int
    samples: int | None = None

    def as_dict(self) -> dict:
        """``{"nll", "kl" (with its direction), "classical_fidelity", "entropy", "n_test"}``;
        a figure that was not computed is absent (without exact ln P only ``nll`` and
        ``n_test``), and a histogram F_c carries its ``method`` and ``samples``."""
        report: dict = {}
        if self.nll is not None:
            report["nll"] = self.nll.as_dict()
        if self.kl is not None:
            report["kl"] = {**self.kl.as_dict(), "direction": "KL(P||Q) = E_P[ln P - ln Q]"}
        if self.classical_fidelity is not None:
            report["classical_fidelity"] = self.classical_fidelity.as_dict()
            if self.samples is not None:
                report["classical_fidelity"].update(method="histogram", samples=self.samples)
        if self.entropy is not None:
            report["entropy"] = self.entropy.as_dict()
        return {**report, "n_test": self.n_test}


def classical_metrics(model: Distribution, chunks: Iterable[tuple[np.ndarray, np.ndarray]], *,
                      batch_size: int = 65536) -> ClassicalMetrics:
    """NLL, KL(P‖Q), F_c of ``model`` and the entropy H(P) = E_P[-ln P] over test records.

    H(P) is the floor of the NLL: NLL − H(P) = KL(P‖Q) record by record.

    Args:
        model: the model Q (model interface).
        chunks: iterable of ``(outcomes (b, L) ints, log_p (b,) float64)`` test records a ~ P
            with their exact ln P, e.g. ``dataset.iter_chunks(size, start, stop)``; measured
            records have ``log_p = None`` in every chunk, and then only the NLL is computed
            (KL and F_c need exact ln P and are never estimated without it).
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
        log_p_parts.append(None if log_p is None else np.asarray(log_p, dtype=np.float64))
        log_q_parts.append(log_prob_batched(model, outcomes, batch_size=batch_size))
    if not log_q_parts:
        raise QtomoError("no test records: the classical metrics need at least one")
    log_q = np.concatenate(log_q_parts)
    known = [part is not None for part in log_p_parts]
    if not any(known):
        return ClassicalMetrics(nll=nll(log_q), kl=None, classical_fidelity=None, entropy=None,
                                n_test=int(log_q.shape[0]))
    if not all(known):
        raise QtomoError("test records with and without exact ln P; expected one or the other")
    log_p = np.concatenate(log_p_parts)
    return ClassicalMetrics(nll=nll(log_q), kl=kl_divergence(log_p, log_q),
                            classical_fidelity=classical_fidelity(log_p, log_q),
                            entropy=Estimate.from_samples(-log_p), n_test=int(log_p.shape[0]))


def histogram_classical_fidelity(samples: np.ndarray, outcomes: np.ndarray, log_p: np.ndarray,
                                 K: int, *, resamples: int = 16, seed: int = 0) -> Estimate:
    """F_c of a model known only by samples: Q̂(a) = c(a)/n_Q in F_c = (E_P[√(Q̂/P)])².

    The error adds in quadrature the delta-method error over the test records (as
    :func:`classical_fidelity`) and the spread of F_c over ``resamples`` Poisson bootstrap
    replicates of the counts c(a) (the noise of the finite histogram). The estimate is biased
    low by that finite histogram (E √Q̂ ≤ √Q, Jensen): an exact sampler of P itself scores about
    0.995 with 2·10^5 samples over the 4^6 records of the L = 6 TFIM (docs/models.md "Model
    families").

    Args:
        samples: (n_Q, L) integer model samples.
        outcomes: (n, L) integer test records a ~ P. log_p: (n,) their exact ln P.
        K: outcomes per site; K^L ≤ :data:`HISTOGRAM_MAX_RECORDS`.
        resamples: bootstrap replicates of the histogram (≥ 2). seed: their random seed.

    Returns:
        :class:`Estimate` of F_c.

    Raises:
        QtomoError: K^L above :data:`HISTOGRAM_MAX_RECORDS`, or fewer than 2 resamples.

    Example (the histogram of P's own records):
        >>> records = np.array([[0], [1]] * 500)          # P = (1/2, 1/2) on one 2-outcome site
        >>> estimate = histogram_classical_fidelity(records, records, np.log(np.full(1000, 0.5)), 2)
        >>> round(estimate.value, 12)
        1.0
    """
    samples = integer_records(samples, K, "model samples")
    outcomes = integer_records(outcomes, K, "test records")
    L = outcomes.shape[1]
    if K**L > HISTOGRAM_MAX_RECORDS:
        raise QtomoError(f"a histogram of model samples over K^L = {K}^{L} records needs K^L <= "
                         f"{HISTOGRAM_MAX_RECORDS}")
    if resamples < 2:
        raise QtomoError(f"the histogram error needs at least 2 resamples; got {resamples}")
    powers = K ** np.arange(L - 1, -1, -1, dtype=np.int64)  # (L,)
    counts = np.bincount(samples @ powers, minlength=K**L).astype(np.float64)  # (K^L,)
    index = outcomes @ powers  # (n,)
    log_p = np.asarray(log_p, np.float64)

    def fidelity(c: np.ndarray) -> Estimate:
        with np.errstate(divide="ignore"):  # unseen records: Q̂ = 0, ln Q̂ = −inf, √Q̂ = 0
            return classical_fidelity(log_p, np.log(c[index] / c.sum()))

    estimate = fidelity(counts)
    replicas = np.random.default_rng(seed).poisson(counts, size=(resamples, counts.size))
    spread = np.std([fidelity(c).value for c in replicas], ddof=1)
    return Estimate(estimate.value, float(np.hypot(estimate.stderr, spread)))


def sampled_classical_metrics(model: Distribution,
                              chunks: Iterable[tuple[np.ndarray, np.ndarray]], *,
                              samples: int, generator=None,
                              batch_size: int = 65536) -> ClassicalMetrics:
    """:class:`ClassicalMetrics` of a model without ``log_prob``: no NLL or KL; F_c from a
    histogram of ``samples`` model samples (:func:`histogram_classical_fidelity`) where
    K^L ≤ :data:`HISTOGRAM_MAX_RECORDS`, else None; H(P) over the test records (nothing but
    ``n_test`` for measured records, which carry no exact ln P).

    Args:
        model: a distribution that samples (its ``log_prob`` is never called).
        chunks: ``(outcomes, log_p)`` test records, as for :func:`classical_metrics`.
        samples: model samples of the histogram. generator: their torch generator.
        batch_size: records per sampling call.

    Raises:
        QtomoError: if there are no test records.
    """
    parts = list(chunks)
    if not parts:
        raise QtomoError("no test records: the classical metrics need at least one")
    outcomes = np.concatenate([np.asarray(o) for o, _ in parts])
    if any(lp is None for _, lp in parts):  # measured records: nothing without exact ln P
        return ClassicalMetrics(nll=None, kl=None, classical_fidelity=None, entropy=None,
                                n_test=int(outcomes.shape[0]))
    log_p = np.concatenate([np.asarray(lp, np.float64) for _, lp in parts])
    fidelity = None
    if model.K**model.L <= HISTOGRAM_MAX_RECORDS:
        drawn = np.concatenate([batch.cpu().numpy() for batch in
                                sample_batches(model, samples, batch_size, generator)])
        fidelity = histogram_classical_fidelity(drawn, outcomes, log_p, model.K)
    return ClassicalMetrics(nll=None, kl=None, classical_fidelity=fidelity,
                            entropy=Estimate.from_samples(-log_p), n_test=int(log_p.shape[0]),
                            samples=samples if fidelity is not None else None)
