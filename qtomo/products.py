"""Low-variance product observables of autoregressive models by masked ancestral sampling.

A product operator O = ⊗_i O_i (a Pauli string, or a matrix element |s⟩⟨t| = ⊗_i |s_i⟩⟨t_i| of
ρ) has, for any distribution Q over POVM records (docs/conventions.md "Conventions")::

    ⟨O⟩ = Σ_a Q(a) Π_i f_i(a_i),     f_i(k) = Tr(O_i Q_k)   (K,) complex

Plain Monte Carlo averages Π_i f_i(a_i) over a ~ Q; for a long string most records hit an
outcome with f_i = 0 (a third of the outcomes survive per site for ``pauli6`` and a Pauli) and the
few others carry |f| ~ 3^|string|: the variance grows exponentially in the string's length.
**Masked ancestral sampling** draws site i from the proposal

    r_i(k | a_<i) = q(k | a_<i) |f_i(k)| / Z_i,     Z_i = Σ_k q(k | a_<i) |f_i(k)|

(only outcomes with f_i ≠ 0; identity sites have f = 1 and keep q) and carries the importance
weight w(a) = Π_i Z_i(a_<i) · f_i(a_i)/|f_i(a_i)|. Then E_r[w] = Σ_a Q(a) Π_i f_i(a_i) = ⟨O⟩
exactly (unbiased), and for an O whose factors have one sign on the support the weight is a
product of the Z_i alone. Sampling stops after the last non-identity site. It needs the model's
conditionals site by site, so it is for an :class:`~qtomo.distribution.Autoregressive` model
(docs/evaluate.md "Low-variance product observables").

The GHZ fidelity at any L is three such expectations (ρ_{s,t} = ⟨s|ρ|t⟩ = ⟨⊗_i |t_i⟩⟨s_i|⟩)::

    F = ⟨GHZ|ρ|GHZ⟩ = ½ (ρ_{0…0,0…0} + ρ_{1…1,1…1}) + Re ρ_{0…0,1…1}

Example:
    >>> from qtomo.models import build
    >>> from qtomo.povm import get_povm
    >>> _ = torch.manual_seed(0)
    >>> model, povm = build("gru", L=3, K=6, hidden=4, layers=1), get_povm("pauli6")
    >>> tables = operator_tables(povm, pauli_operators({0: "Z", 2: "X"}))
    >>> exact = exact_product_expectation(model, tables)
    >>> estimate = masked_expectation(model, tables, samples=20_000,
    ...                               generator=torch.Generator().manual_seed(1))
    >>> bool(abs(estimate.value - exact.real) < 4 * estimate.stderr)
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from qtomo.distribution import Autoregressive, records_numpy
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.povm import PAULI, POVM, PerQubitPOVM

__all__ = [
    "exact_product_expectation",
    "ghz_fidelity",
    "ghz_operators",
    "masked_expectation",
    "masked_product_values",
    "operator_tables",
    "pauli_operators",
    "product_values",
]

#: |f_i(k)| at or below this fraction of max_k |f_i(k)| counts as zero (dual traces that vanish
#: analytically come out ~1e-16)
_ZERO = 1e-12

Tables = Mapping[int, np.ndarray]


def pauli_operators(string: Mapping[int, str]) -> dict[int, np.ndarray]:
    """{site: 2×2 Pauli matrix} of a parsed Pauli string
    (:func:`qtomo.observables.parse_pauli_string`)."""
    return {site: PAULI[letter] for site, letter in string.items()}


def ghz_operators(L: int) -> tuple[dict[int, np.ndarray], ...]:
    """The product operators whose expectations are ρ_{0…0,0…0}, ρ_{1…1,1…1}, ρ_{0…0,1…1}:
    ⊗|0⟩⟨0|, ⊗|1⟩⟨1|, ⊗|1⟩⟨0| on all L sites."""
    ket0bra0, ket1bra1, ket1bra0 = (np.zeros((2, 2), dtype=np.complex128) for _ in range(3))
    ket0bra0[0, 0], ket1bra1[1, 1], ket1bra0[1, 0] = 1, 1, 1
    return tuple({site: op for site in range(L)} for op in (ket0bra0, ket1bra1, ket1bra0))


def operator_tables(povm: POVM | PerQubitPOVM,
                    operators: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """f_i(k) = Tr(O_i Q^(i)_k) for every site with an operator: {site: (K,) complex128}.

    Example:
        >>> from qtomo.povm import get_povm
        >>> operator_tables(get_povm("pauli6"), {1: PAULI["Z"]})[1].real.round(12).tolist()
        [3.0, -3.0, 0.0, 0.0, 0.0, 0.0]
    """
    return {int(site): povm.at(int(site)).dual_traces(op)
            for site, op in sorted(operators.items())}


def product_values(records: np.ndarray | torch.Tensor, tables: Tables) -> np.ndarray:
    """Plain per-record values Π_i f_i(a_i) (the Monte Carlo estimator's summands).

    Args:
        records: (N, L) integers in 0..K-1.
        tables: {site: (K,) complex} from :func:`operator_tables`.

    Returns:
        (N,) complex128.
    """
    records = records_numpy(records)
    values = np.ones(records.shape[0], dtype=np.complex128)
    for site, table in tables.items():
        values *= np.asarray(table)[records[:, site]]
    return values


def _check(model, tables: Tables) -> None:
    if not isinstance(model, Autoregressive):
        raise QtomoError(f"masked sampling needs an autoregressive model (conditionals site by "
                         f"site); got {type(model).__name__}")
    for site, table in tables.items():
        if not 0 <= site < model.L or np.shape(table) != (model.K,):
            raise QtomoError(f"operator table of site {site} must have shape ({model.K},) with "
                             f"the site in 0..{model.L - 1}; got shape {np.shape(table)}")


@torch.no_grad()
def masked_product_values(model: Autoregressive, tables: Tables, n: int,
                          generator: torch.Generator | None = None) -> np.ndarray:
    """n importance weights w(a) = Π_i Z_i · f_i(a_i)/|f_i(a_i)|, a drawn by masked ancestral
    sampling (module docstring); their mean is an unbiased estimate of Σ_a Q(a) Π_i f_i(a_i).

    Args:
        model: an autoregressive model (``step`` gives the conditional logits site by site).
        tables: {site: (K,) complex f_i}; sites without a table carry the identity.
        n: number of draws.
        generator: torch generator on the model's device.

    Returns:
        (n,) complex128.

    Raises:
        QtomoError: for a model that is not autoregressive or a malformed table.
    """
    _check(model, tables)
    device = model.device
    masks, phases = {}, {}
    for site, table in tables.items():
        table = np.asarray(table, dtype=np.complex128)
        size = np.abs(table)
        alive = size > _ZERO * max(size.max(), np.finfo(float).tiny)
        with np.errstate(divide="ignore"):
            masks[site] = torch.as_tensor(np.where(alive, np.log(size), -np.inf), device=device)
        phases[site] = np.where(alive, table / np.where(alive, size, 1.0), 0.0)
    log_weight = torch.zeros(n, dtype=torch.float64, device=device)  # Σ_i ln Z_i
    phase = np.ones(n, dtype=np.complex128)
    previous = torch.full((n,), model.K, dtype=torch.long, device=device)  # start token
    state = None
    for site in range(max(tables, default=-1) + 1):
        logits, state = model.step(previous, state)  # (n, K)
        log_q = F.log_softmax(logits.double(), dim=-1)  # (n, K)
        if site in masks:
            proposal = log_q + masks[site]  # (n, K), −inf off the mask
            log_norm = torch.logsumexp(proposal, dim=-1)  # (n,) ln Z_i
            log_weight += log_norm
            dead = torch.isinf(log_norm)  # no mass on the mask: weight 0, draw anything alive
            proposal = torch.where(dead[:, None], masks[site].expand_as(proposal), proposal)
            probs = torch.softmax(proposal, dim=-1)
        else:
            probs = log_q.exp()
        previous = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
        if site in phases:
            phase *= phases[site][previous.cpu().numpy()]
    return log_weight.exp().cpu().numpy() * phase


def masked_expectation(model: Autoregressive, tables: Tables, *, samples: int = 100_000,
                       batch_size: int = 16384, generator: torch.Generator | None = None,
                       imaginary: bool = False) -> Estimate:
    """Re (or Im) ⟨⊗_i O_i⟩ = mean of :func:`masked_product_values` ± std/√n.

    Args:
        model: autoregressive model.
        tables: {site: (K,) complex f_i} (:func:`operator_tables`).
        samples: draws (≥ 2), taken ``batch_size`` at a time.
        batch_size: draws per batch.
        generator: torch generator on the model's device.
        imaginary: estimate the imaginary part instead (for non-Hermitian O).

    Returns:
        :class:`~qtomo.estimate.Estimate`.
    """
    if samples < 2:
        raise QtomoError(f"Monte Carlo estimates need at least 2 samples; got {samples}")
    values = np.concatenate([
        masked_product_values(model, tables, min(batch_size, samples - start), generator)
        for start in range(0, samples, batch_size)])
    return Estimate.from_samples(values.imag if imaginary else values.real)


@torch.no_grad()
def exact_product_expectation(model: Autoregressive, tables: Tables | list[Tables], *,
                              block: int = 2**14) -> complex | list[complex]:
    """Σ_a Q(a) Π_i f_i(a_i) over all K^L records, streamed from the model's tree walk
    (:meth:`~qtomo.models.autoregressive.AutoregressiveModel.enumerate_log_probs`), so the K^L
    table is never held (L = 10 with K = 6 is 6·10^7 records).

    Args:
        model: autoregressive model.
        tables: {site: (K,) complex f_i}, or a list of them (one walk for all).
        block: prefixes per step of the walk.

    Returns:
        complex, or a list of them for a list of tables.
    """
    several = isinstance(tables, list)
    operators = tables if several else [tables]
    for item in operators:
        _check(model, item)
    powers = model.K ** np.arange(model.L - 1, -1, -1, dtype=np.int64)
    totals, start = [0j] * len(operators), 0
    for log_q in model.enumerate_log_probs(block=block):  # (b,) consecutive records
        index = np.arange(start, start + log_q.numel(), dtype=np.int64)
        records = (index[:, None] // powers) % model.K  # (b, L)
        weights = log_q.exp().cpu().numpy()
        totals = [total + complex(weights @ product_values(records, item))
                  for total, item in zip(totals, operators, strict=True)]
        start += log_q.numel()
    return totals if several else totals[0]


def ghz_fidelity(model: Autoregressive, povm: POVM | PerQubitPOVM, *, samples: int = 100_000,
                 batch_size: int = 16384, generator: torch.Generator | None = None,
                 exact: bool = False) -> Estimate:
    """⟨GHZ|ρ_model|GHZ⟩ = ½ (ρ_{0…0,0…0} + ρ_{1…1,1…1}) + Re ρ_{0…0,1…1} at any L.

    Each term by :func:`masked_expectation` over ``samples`` draws of its own (independent
    passes, so the errors add in quadrature: ¼σ₁² + ¼σ₂² + σ₃²), or exactly by
    :func:`exact_product_expectation` (stderr 0).

    Example:
        >>> from qtomo.models import build
        >>> from qtomo.povm import get_povm
        >>> model = build("gru", L=4, K=4, hidden=4, layers=1)
        >>> exact = ghz_fidelity(model, get_povm("pauli4"), exact=True)
        >>> masked = ghz_fidelity(model, get_povm("pauli4"), samples=20_000,
        ...                       generator=torch.Generator().manual_seed(0))
        >>> bool(abs(masked.value - exact.value) < 4 * masked.stderr)
        True
    """
    zeros, ones, coherence = (operator_tables(povm, ops) for ops in ghz_operators(model.L))
    if exact:
        p0, p1, rho01 = exact_product_expectation(model, [zeros, ones, coherence])
        return Estimate.exact(float((0.5 * (p0 + p1) + rho01).real))
    parts = [masked_expectation(model, tables, samples=samples, batch_size=batch_size,
                                generator=generator) for tables in (zeros, ones, coherence)]
    value = 0.5 * (parts[0].value + parts[1].value) + parts[2].value
    stderr = np.sqrt(0.25 * parts[0].stderr**2 + 0.25 * parts[1].stderr**2 + parts[2].stderr**2)
    return Estimate(float(value), float(stderr))
