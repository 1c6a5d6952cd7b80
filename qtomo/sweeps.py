"""Local maximum-likelihood sweeps of a tensor-network state (docs/physical-fits.md, "Sweeps").

The Born probability of a record is linear in every site's superoperator table (the real
(χ_l², χ_r²) matrices T_i[k] of :mod:`qtomo.states.mps_sampler`), so with the other sites held
fixed the likelihood of site i is that of a single tensor::

    P_n(A_i) = l_n · T_i[a_{n,i}](A_i) · r_n,      NLL_i(A_i) = −(1/N) Σ_n ln P_n + ln ‖A_i‖²

where l_n (χ_l²) is record n's environment of sites 0 … i−1 and r_n (χ_r²) that of sites
i+1 … L−1. In the mixed-canonical gauge (sites left of i left-orthonormal, right of i
right-orthonormal) Tr ρ = ‖A_i‖², and the local problem is well conditioned. A sweep moves
from site 0 to L−1 and back: at each site a few L-BFGS iterations minimise NLL_i (one
evaluation costs one site of a full pass, 1/L of a gradient of the whole chain), a QR
decomposition moves the gauge to the next site, and the next environment is one table
product per record. As in DMRG, each site is brought to its optimum given the others, which
converges in a few sweeps where gradient steps on the whole chain need hundreds of passes
(TFIM L = 50: docs/physical-fits.md).

The validation NLL is measured after every half-sweep and the best tensors kept; the sweeps
stop when it has not improved for ``patience`` half-sweeps (the records support no better
state: at a size the data barely support, the first sweep is usually the best), when it has
converged, or after ``max_sweeps``. Every record's environments are held in memory,
2 N Σ_i χ_i² float64 numbers (the ``training_bytes`` estimate of the families bounds them).
Under torchrun each rank holds its share of the rows and the local objectives and gradients are
summed with ``all_reduce``, so all ranks take the same steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from qtomo.errors import QtomoError
from qtomo.states.mps_sampler import superoperator_tables

_LOCAL_HISTORY = 10  # L-BFGS history of a site's problem: a few dozen parameters
_CONVERGED = 1e-6  # relative change of the validation NLL below which the sweeps stop


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` did (stored in the checkpoint's training summary as a dict).

    Attributes:
        half_sweeps: half-sweeps run (one pass over the sites in one direction each).
        val_nll_before, val_nll: validation NLL at the start and of the kept tensors.
        stopped: ``"validation"`` (no better validation NLL for ``patience`` half-sweeps),
            ``"converged"`` (relative change below 1e-7) or ``"sweeps"`` (the cap).
        time_s: wall time.
    """

    half_sweeps: int
    val_nll_before: float
    val_nll: float
    stopped: str
    time_s: float


class _Chain:
    """The site tensors as parameters are stored (float64, real, or complex as a trailing
    axis of 2), with the POVM elements (L, K, 2, 2), each site's outcomes (L, N) and the rows
    of each outcome at each site (``groups[i][k]``, computed once)."""

    def __init__(self, sites: Sequence[torch.Tensor], real: bool, elements: torch.Tensor,
                 records: torch.Tensor) -> None:
        self.sites = [site.detach().clone() for site in sites]
        self.real, self.elements = real, elements
        self.K = elements.shape[1]
        self.outcomes = records.T.long().contiguous()
        self.groups = [_groups(outcome, self.K) for outcome in self.outcomes]

    def complex(self, stored: torch.Tensor) -> torch.Tensor:
        return stored.to(torch.complex128) if self.real else torch.view_as_complex(stored)

    def stored(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.real:
            return tensor.real.contiguous()
        return torch.view_as_real(tensor.resolve_conj()).contiguous()

    def tables(self, i: int, stored: torch.Tensor | None = None) -> torch.Tensor:
        """T_i[k] (K, χ_l², χ_r²) of site i (or of ``stored`` in its place)."""
        site = self.sites[i] if stored is None else stored
        return superoperator_tables(self.complex(site), self.elements[i])

    def left_canonical(self, i: int) -> None:
        """QR of site i (rows: left bond, qubit, Kraus); R moves into site i + 1."""
        A = self.complex(self.sites[i])
        Q, R = torch.linalg.qr(A.reshape(-1, A.shape[-1]))
        self.sites[i] = self.stored(Q.reshape(*A.shape[:-1], Q.shape[-1]))
        following = self.complex(self.sites[i + 1])
        self.sites[i + 1] = self.stored(torch.tensordot(R, following, dims=([1], [0])))

    def right_canonical(self, i: int) -> None:
        """LQ of site i (columns: qubit, Kraus, right bond); L moves into site i − 1."""
        A = self.complex(self.sites[i])
        Q, R = torch.linalg.qr(A.reshape(A.shape[0], -1).conj().T)  # A = R† Q†
        self.sites[i] = self.stored(Q.conj().T.reshape(-1, *A.shape[1:]))
        preceding = self.complex(self.sites[i - 1])
        self.sites[i - 1] = self.stored(torch.tensordot(preceding, R.conj().T,
                                                        dims=([preceding.dim() - 1], [0])))

    def step(self, environment: torch.Tensor, i: int, rightwards: bool) -> torch.Tensor:
        """The environment one site further: l T_i[a_i] (rightwards) or T_i[a_i] r, every row
        rescaled to unit sum of magnitudes (P_n changes by a factor, its gradient does not)."""
        tables = self.tables(i).detach()
        if not rightwards:
            tables = tables.transpose(1, 2)
        result = environment.new_empty((environment.shape[0], tables.shape[2]))
        for k, rows in enumerate(self.groups[i]):
            result[rows] = environment[rows] @ tables[k]
        return result / result.abs().sum(1, keepdim=True)


def sweep(sites: Sequence[torch.Tensor], real: bool, elements: torch.Tensor,
          records: torch.Tensor, n_rows: int, store: Callable[[list[torch.Tensor]], None],
          validate: Callable[[], float], *, max_sweeps: int, local_iterations: int = 4,
          patience: int = 2, world: int = 1) -> SweepResult:
    """Minimise the training NLL by local sweeps (module docstring).

    Args:
        sites: the L stored site tensors, float64 (χ_l, 2, κ, χ_r) (``real``) or
            (χ_l, 2, κ, χ_r, 2) (real and imaginary parts).
        real: whether the tensors are real.
        elements: (L, K, 2, 2) complex128 POVM elements, on the tensors' device.
        records: LongTensor (N_rank, L), this rank's training rows.
        n_rows: training rows over all ranks (the mean's denominator).
        store: puts stored tensors into the model (``validate`` then measures them).
        validate: the validation NLL of the model as stored.
        max_sweeps: most full sweeps (right and back), ≥ 1.
        local_iterations: L-BFGS iterations per site and visit.
        patience: half-sweeps without a better validation NLL before stopping.
        world: number of processes (torchrun); 1 otherwise.

    Returns:
        :class:`SweepResult`; the model holds the kept tensors (in a mixed-canonical gauge).
    """
    if max_sweeps < 1:
        raise QtomoError(f"sweeps must be >= 1; got {max_sweeps}")
    started = time.perf_counter()
    chain = _Chain(sites, real, elements, records)
    for i in range(len(chain.sites) - 1, 0, -1):
        chain.right_canonical(i)
    store(chain.sites)
    best_val = val_before = validate()
    best, bad, half_sweeps, stopped = list(chain.sites), 0, 0, "sweeps"
    while half_sweeps < 2 * max_sweeps:
        _half_sweep(chain, rightwards=half_sweeps % 2 == 0, n_rows=n_rows,
                    iterations=local_iterations, world=world)
        half_sweeps += 1
        store(chain.sites)
        val = validate()
        if not math.isfinite(val):
            stopped = "non-finite"
            break
        change = (best_val - val) / abs(best_val)
        if val < best_val:
            best_val, best, bad = val, list(chain.sites), 0
        else:
            bad += 1
        if abs(change) < _CONVERGED:
            stopped = "converged"
            break
        if bad >= patience:
            stopped = "validation"
            break
    store(best)
    return SweepResult(half_sweeps=half_sweeps, val_nll_before=val_before, val_nll=best_val,
                       stopped=stopped, time_s=time.perf_counter() - started)


def _half_sweep(chain: _Chain, *, rightwards: bool, n_rows: int, iterations: int,
                world: int) -> None:
    """Optimise every site once, from site 0 rightwards or from site L − 1 leftwards, the
    gauge centre moving along; the environments behind come from the tensors before."""
    L, rows = len(chain.sites), chain.outcomes.shape[1]
    ones = torch.ones((rows, 1), dtype=torch.float64, device=chain.elements.device)
    order = range(L) if rightwards else range(L - 1, -1, -1)
    ahead = [ones]  # environments of the sites not yet visited, nearest last
    for i in reversed(order[1:]):
        ahead.append(chain.step(ahead[-1], i, not rightwards))
    behind = ones
    for i in order:
        front = ahead.pop()
        left, right = (behind, front) if rightwards else (front, behind)
        chain.sites[i] = _local_fit(chain, i, left, right, n_rows, iterations, world)
        if rightwards and i < L - 1:
            chain.left_canonical(i)
        elif not rightwards and i > 0:
            chain.right_canonical(i)
        behind = chain.step(behind, i, rightwards)


def _local_fit(chain: _Chain, i: int, left: torch.Tensor, right: torch.Tensor, n_rows: int,
               iterations: int, world: int) -> torch.Tensor:
    """Site i's tensor minimising −(1/N) Σ_n ln(l_n T_i[a_n] r_n) + ln ‖A‖², by L-BFGS from
    the current one; the current one where no step lowers it."""
    groups = [(left[rows], right[rows]) for rows in chain.groups[i]]
    start = chain.sites[i]
    tensor = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([tensor], lr=1, max_iter=iterations,
                                  history_size=_LOCAL_HISTORY, line_search_fn="strong_wolfe")

    def share() -> torch.Tensor:
        """This rank's share of the local NLL (the shares of all ranks add up to it)."""
        tables = chain.tables(i, tensor)
        log_p = sum(torch.log(((l @ tables[k]) * r).sum(1)).sum()
                    for k, (l, r) in enumerate(groups))
        return -log_p / n_rows + torch.log((tensor * tensor).sum()) / world

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = share()
        value.backward()
        return _summed(value.detach(), tensor.grad, world=world)

    with torch.no_grad():
        before = _summed(share(), world=world).item()
    if not math.isfinite(before):
        return start
    optimizer.step(closure)
    with torch.no_grad():
        after = _summed(share(), world=world).item()
    if not math.isfinite(after) or after > before or not torch.isfinite(tensor).all():
        return start
    return (tensor / tensor.norm()).detach()


def _summed(value: torch.Tensor, *gradients: torch.Tensor, world: int) -> torch.Tensor:
    """``value`` summed over ranks; ``gradients`` are summed in place."""
    if world > 1:
        for tensor in (value, *gradients):
            dist.all_reduce(tensor)
    return value


def _groups(outcome: torch.Tensor, K: int) -> list[torch.Tensor]:
    """Row indices of each outcome 0 … K−1."""
    order = torch.argsort(outcome, stable=True)
    return list(order.split(torch.bincount(outcome, minlength=K).tolist()))
