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

A pure state (κ = 1) measured by a POVM of rank-one elements M_k = u_k u_k† (Pauli-6, the
tetrahedral POVM; not Pauli-4, whose fourth element has rank two), at a largest bond of 3 or
more, has P_n = |α_n · B_i[a_{n,i}](A_i) · β_n|², with amplitude tables B_i[k] = Σ_s ū_{k,s} A_i^s
(χ_l, χ_r) and environments α_n (χ_l), β_n (χ_r) of χ complex numbers per record instead of χ²
real ones (:func:`amplitude_vectors`): the same probabilities for 4× fewer flops per row at
χ = 4, 9× at χ = 6. Everything below holds for both forms.

The environments are rescaled row by row as they grow (their log-scales kept beside them), so
the local NLL at the last site of a half-sweep gives the training NLL of the whole chain
exactly, at no extra cost. The sweeps run until a half-sweep gains less than 0.1 nat of total
log-likelihood N·ΔNLL (``converged``: the maximum of the likelihood), or for ``max_sweeps``, and
return the last state, unless the validation rows prefer an earlier one: the validation NLL is
measured after every half-sweep, and once it has been above its best for ``patience``
half-sweeps in a row, or at once when the first half-sweep does not lower it (a grown model
starts at the smaller size's optimum, so a size that does not help from there costs one
half-sweep instead of ``patience``), and again at the end, the state of the best validation
NLL is returned where the rows prefer it to the present one by more than 1.5 standard errors
of the paired difference (:meth:`qtomo.heldout.HeldOut.prefers`; the state goes on fitting
noise). A rise within the noise does not stop the sweeps: where it did, a noisy validation
NLL chose the state (docs/physical-fits.md "When the sweeps stop").
A half-sweep takes its environments ahead from the previous half-sweep's environments behind
(the same tensors), so only the first builds them. Where all of them would take more than a
quarter of the free memory, only every ⌈√L⌉-th is kept and the block in front recomputed from
its checkpoint when the sweep enters it, so a sweep holds about 2√L environments of every
record instead of L (:func:`sweep_bytes`; the size search refuses a size whose sweeps would
not fit even so): TFIM L = 100 from 9·10^5 training rows at χ = 4 needs 4.5 GB instead of
26 GB, for a second table product per record and site (13% of a sweep's time at L = 50, χ = 4,
where all are held); the results are bit for bit the same.
Under torchrun each rank holds its share of the rows and the local objectives and gradients are
summed with ``all_reduce``, so all ranks take the same steps. Rows that repeat may come once
with their counts (``counts``): every sum over records above is then Σ_u c_u (…)_u over the
distinct rows u, the same sum for less work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from qtomo.device import available_memory, sum_over_ranks, weighted_sum
from qtomo.errors import QtomoError
from qtomo.heldout import HeldOut
from qtomo.progress import progress_bar
from qtomo.states.mps_sampler import superoperator_tables

_LOCAL_HISTORY = 10  # L-BFGS history of a site's problem: a few dozen parameters
#: half-sweeps with the validation NLL above its best before the sweeps ask whether the
#: validation rows prefer the best state
PATIENCE = 3
_PHASE_GRID = 16  # phases of a site's phase search (_best_turn)
_PHASE_NEWTON = 3  # Newton steps from the best of them
#: share of the free memory the environments of every site may take; beyond, checkpoints
_HOLD_ALL_SHARE = 0.25
#: gain in the total training log-likelihood (nats, summed over records) of a half-sweep below
#: which the sweeps stop: far below the 1–2 nats a likelihood-ratio test resolves, and small
#: enough to finish a slow flat direction (the phase of a GHZ state, 1 nat from its maximum,
#: still had fidelity 0.969 where the maximum has 0.998)
_CONVERGED_NATS = 0.1
#: smallest eigenvalue of a POVM element, relative to its largest, below which it has rank one
_RANK_ONE = 1e-12


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` did (stored in the checkpoint's training summary as a dict).

    Attributes:
        half_sweeps: half-sweeps run (one pass over the sites in one direction each).
        val_nll_before, val_nll: validation NLL at the start and of the state kept.
        train_nll: training NLL of the state kept.
        stopped: ``"converged"`` (a half-sweep gained less than 0.1 nat of total training
            log-likelihood),
            ``"validation"`` (the validation rows prefer the state of the best validation NLL,
            which is kept, to the present one),
            ``"sweeps"`` (the cap) or ``"non-finite"`` (a non-finite validation NLL; the state
            before that half-sweep is kept).
        time_s: wall time.
    """

    half_sweeps: int
    val_nll_before: float
    val_nll: float
    train_nll: float
    stopped: str
    time_s: float


#: a record's environment rescaled, and the log of the factor taken out: (N, χ²), (N,)
_Environment = tuple[torch.Tensor, torch.Tensor]


class _Chain:
    """The site tensors as parameters are stored (float64, real, or complex as a trailing
    axis of 2), with the POVM elements (L, K, 2, 2), their vectors where the sweeps run on
    amplitudes (``vectors``, :func:`amplitude_vectors`), the rows of each outcome at each site
    (``groups[i][k]``, int32, computed once) and how often each row occurs (``counts``,
    float64 (N,), None: once)."""

    def __init__(self, sites: Sequence[torch.Tensor], real: bool, elements: torch.Tensor,
                 records: torch.Tensor, counts: torch.Tensor | None = None) -> None:
        self.sites = [site.detach().clone() for site in sites]
        self.real, self.elements, self.counts = real, elements, counts
        bonds = [site.shape[0] for site in sites] + [sites[-1].shape[-1]]
        self.vectors = amplitude_vectors(elements, kraus=sites[0].shape[2], chi=max(bonds))
        self.K = elements.shape[1]
        self.rows = records.shape[0]
        self.groups = [_groups(outcome.long(), self.K) for outcome in records.T]
        held_all = sweep_bytes(bonds, self.rows, spacing=1, amplitudes=self.vectors is not None)
        #: sites between two kept environments ahead (module docstring)
        self.spacing = (1 if held_all <= _HOLD_ALL_SHARE * available_memory(elements.device)
                        else _least_spacing(len(sites)))

    def empty(self) -> _Environment:
        """The environment of no sites: 1 for every row, log-scale 0."""
        dtype = torch.float64 if self.vectors is None else torch.complex128
        ones = torch.ones((self.rows, 1), dtype=dtype, device=self.elements.device)
        return ones, torch.zeros(self.rows, dtype=torch.float64, device=ones.device)

    def complex(self, stored: torch.Tensor) -> torch.Tensor:
        return stored.to(torch.complex128) if self.real else torch.view_as_complex(stored)

    def stored(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.real:
            return tensor.real.contiguous()
        return torch.view_as_real(tensor.resolve_conj()).contiguous()

    def tables(self, i: int, stored: torch.Tensor | None = None) -> torch.Tensor:
        """T_i[k] (K, χ_l², χ_r²) float64 of site i (or of ``stored`` in its place), or its
        amplitude tables B_i[k] (K, χ_l, χ_r) complex128 (:func:`amplitude_tables`)."""
        site = self.complex(self.sites[i] if stored is None else stored)
        if self.vectors is None:
            return superoperator_tables(site, self.elements[i])
        return amplitude_tables(site, self.vectors[i])

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

    def step(self, environment: _Environment, i: int, rightwards: bool) -> _Environment:
        """The environment one site further: l T_i[a_i] (rightwards) or T_i[a_i] r, every row
        rescaled to unit sum of magnitudes, the log of the factor added to its log-scale (twice
        that of amplitudes, whose squares are the probabilities)."""
        vectors, log_scale = environment
        tables = self.tables(i).detach()
        if not rightwards:
            tables = tables.transpose(1, 2)
        result = vectors.new_empty((vectors.shape[0], tables.shape[2]))
        for k, rows in enumerate(self.groups[i]):
            result[rows] = vectors.index_select(0, rows) @ tables[k]
        norm = result.abs().sum(1)
        power = 1 if self.vectors is None else 2
        return result.div_(norm[:, None]), log_scale + power * torch.log(norm)


def sweep_bytes(chi: Sequence[int], records: int, spacing: int | None = None,
                amplitudes: bool = False) -> int:
    """Peak bytes of :func:`sweep` over ``records`` rows of a chain with bonds χ_0 … χ_L that
    keeps every B-th environment ahead (``spacing``; default ⌈√L⌉, the least memory), with
    w = max_i χ_i² float64 numbers per row of an environment, or w = 2 max_i χ_i on
    ``amplitudes`` (:func:`amplitude_vectors`): 8 N (w + 1)(⌈L/B⌉ + B + 2) for the
    environments (the checkpoints ahead, the block in front, the one behind and the next),
    8 N (6 w + 96) for the local fit (each outcome's copy of the two environments and the
    autograd intermediates, and some 96 numbers per row: probabilities, their logs, the phase
    search's blocks of phases), 4 N L for the rows of each outcome (int32), and 64 MiB.
    Measured peak resident growth of one sweep (2-core CPU, real MPS) against this: on
    superoperator tables (L, χ, N) = (30, 8, 10^5) 889 MB against 1 139 MB, (20, 16,
    2.5·10^4) 714 MB against 961 MB, (50, 4, 3·10^5) 1 023 MB against 1 281 MB; on amplitudes
    (pauli6) (30, 8, 2·10^4) 128 MB against 136 MB, (50, 4, 5·10^4) 166 MB against 196 MB.
    Below ~10^5 rows glibc's heap keeps freed arrays for reuse and the peak reaches up to twice
    this estimate's part per row (tests/memory.py); there it is small anyway."""
    L = len(chi) - 1
    block = spacing or _least_spacing(L)
    width = 2 * max(chi) if amplitudes else max(c * c for c in chi)
    held = -(-L // block) + block + 2
    return (8 * records * ((width + 1) * held + 6 * width + 96) + 4 * records * L
            + 64 * 2**20)


def amplitude_vectors(elements: torch.Tensor, kraus: int, chi: int) -> torch.Tensor | None:
    """u (..., K, 2) complex128 with M_k = u_k u_k† for every POVM element M_k (..., K, 2, 2),
    where the state is pure (``kraus`` = 1), its largest bond ``chi`` is 3 or more and every
    element has rank one (Pauli-6, the tetrahedral POVM; not Pauli-4); None otherwise (the
    sweeps then run on superoperator tables).

    A record's probability is then the square of an amplitude, Q(a) = |⟨u_{a_0} ⋯ u_{a_{L−1}}|ψ⟩|²,
    whose environments hold χ complex numbers per row instead of χ² real ones: the local
    evaluations take 4× fewer flops at χ = 4 and 9× fewer at χ = 6 (docs/physical-fits.md
    "Sweeps"). At χ ≤ 2 the two are as many numbers and real arithmetic is the faster (GHZ
    L = 20 at χ = 2 took 1.2× as long on amplitudes)."""
    if kraus != 1 or chi <= 2:
        return None
    values, vectors = torch.linalg.eigh(elements)  # ascending
    if (values[..., 0].abs() > _RANK_ONE * values[..., 1].abs()).any():
        return None
    return vectors[..., 1] * values[..., 1:].clamp_min(0).sqrt()


def amplitude_tables(A: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """B_k = Σ_s ū_{k,s} A^s (K, χl, χr) complex128 of a pure site tensor A (χl, 2, 1, χr)
    complex and vectors u (K, 2) (:func:`amplitude_vectors`): ⟨u_{a_0} ⋯ u_{a_{L−1}}|ψ⟩ =
    B_0[a_0] ⋯ B_{L−1}[a_{L−1}]. Differentiable in A."""
    return torch.einsum("ks,asb->kab", vectors.conj(), A.reshape(A.shape[0], 2, A.shape[-1]))


def _least_spacing(L: int) -> int:
    """Sites between two checkpoints of the environments ahead that hold the fewest: ⌈√L⌉."""
    return math.isqrt(L - 1) + 1 if L > 1 else 1


def sweep(sites: Sequence[torch.Tensor], real: bool, elements: torch.Tensor,
          records: torch.Tensor, n_rows: int, store: Callable[[list[torch.Tensor]], None],
          validate: Callable[[], HeldOut], *, max_sweeps: int, local_iterations: int = 4,
          patience: int = PATIENCE, world: int = 1, quiet: bool = True,
          counts: torch.Tensor | None = None) -> SweepResult:
    """Minimise the training NLL by local sweeps (module docstring).

    Args:
        sites: the L stored site tensors, float64 (χ_l, 2, κ, χ_r) (``real``) or
            (χ_l, 2, κ, χ_r, 2) (real and imaginary parts).
        real: whether the tensors are real.
        elements: (L, K, 2, 2) complex128 POVM elements, on the tensors' device.
        records: LongTensor (N_rank, L), this rank's training rows.
        n_rows: training rows over all ranks (the mean's denominator; Σ ``counts``).
        store: puts stored tensors into the model (``validate`` then measures them).
        validate: the NLLs of the validation rows under the model as stored.
        max_sweeps: most full sweeps (right and back), ≥ 1.
        local_iterations: L-BFGS iterations per site and visit.
        patience: half-sweeps with the validation NLL above its best before asking whether
            the validation rows prefer the best state, one if the first does not lower it (0:
            never, to the maximum of the likelihood).
        world: number of processes (torchrun); 1 otherwise.
        quiet: no progress bar (otherwise one over the site fits of at most ``max_sweeps``,
            with the validation NLL of the last half-sweep).
        counts: float64 (N_rank,), how often each of ``records`` occurs in the training rows
            (distinct rows stand for all their copies: every sum over rows is weighted); None:
            each once.

    Returns:
        :class:`SweepResult`; the model holds the last tensors, or after ``"validation"`` those
        of the best validation NLL (in a mixed-canonical gauge).
    """
    if max_sweeps < 1:
        raise QtomoError(f"sweeps must be >= 1; got {max_sweeps}")
    started = time.perf_counter()
    chain = _Chain(sites, real, elements, records, counts)
    for i in range(len(chain.sites) - 1, 0, -1):
        chain.right_canonical(i)
    store(chain.sites)
    held = validate()
    val = val_before = held.nll
    bad, half_sweeps, stopped, best = 0, 0, "sweeps", None
    checkpoints = None  # the first half-sweep builds its environments ahead
    sites_to_fit = 2 * max_sweeps * len(chain.sites)
    with progress_bar(sites_to_fit, "sweeps", quiet=quiet, unit="site") as bar:
        while half_sweeps < 2 * max_sweeps:
            before = list(chain.sites)
            start_nll, train_nll, checkpoints = _half_sweep(
                chain, rightwards=half_sweeps % 2 == 0, checkpoints=checkpoints, n_rows=n_rows,
                iterations=local_iterations, world=world, advance=bar.update)
            previous = (before, held, start_nll)  # the state before this half-sweep
            best = best or previous
            half_sweeps += 1
            store(chain.sites)
            held = validate()
            val = held.nll
            bar.set_postfix_str(f"validation NLL {val:.6f}")
            if not math.isfinite(val):
                chain.sites, held, train_nll = previous
                store(chain.sites)
                stopped = "non-finite"
                break
            bad = 0 if val < best[1].nll else bad + 1
            if not bad:
                best = (list(chain.sites), held, train_nll)
            if (start_nll - train_nll) * n_rows < _CONVERGED_NATS:
                stopped = "converged"
                break
            if (patience and bad >= (1 if half_sweeps == 1 else patience)
                    and best[1].prefers(held)):  # early stopping
                stopped = "validation"
                break
    if stopped in ("converged", "sweeps") and patience and bad and best[1].prefers(held):
        stopped = "validation"
    if stopped == "validation":
        chain.sites, held, train_nll = best
        store(chain.sites)
    return SweepResult(half_sweeps=half_sweeps, val_nll_before=val_before, val_nll=held.nll,
                       train_nll=train_nll, stopped=stopped,
                       time_s=time.perf_counter() - started)


def _half_sweep(chain: _Chain, *, rightwards: bool, checkpoints: list[_Environment] | None,
                n_rows: int, iterations: int, world: int,
                advance: Callable[[int], object] = lambda sites: None,
                ) -> tuple[float, float, list[_Environment]]:
    """Optimise every site once, from site 0 rightwards or from site L − 1 leftwards, the
    gauge centre moving along; the environments ahead come from ``checkpoints`` (None: built
    here), those behind from the tensors as fitted. Returns the training NLL of the chain
    before the first site's fit and after the last one's, and the checkpoints of the next
    half-sweep: its environments ahead are this one's behind, of the same tensors.
    ``advance(1)`` follows every site's fit."""
    L = len(chain.sites)
    order = range(L) if rightwards else range(L - 1, -1, -1)
    behind = chain.empty()
    following = [behind]  # behind order[:q] is the next half-sweep's ahead at L − 1 − q
    ahead = _environments_ahead(chain, order, rightwards, checkpoints)
    for q, (i, front) in enumerate(zip(order, ahead, strict=True)):
        left, right = (behind, front) if rightwards else (front, behind)
        chain.sites[i], local_nll, unmoved = _local_fit(chain, i, left[0], right[0], n_rows,
                                                        iterations, world)
        if not q:
            start_nll = _chain_nll(unmoved, left, right, chain.counts, n_rows, world)
        advance(1)
        if i == order[-1]:
            break
        if rightwards:
            chain.left_canonical(i)
        else:
            chain.right_canonical(i)
        behind = chain.step(behind, i, rightwards)
        if _checkpointed(L, L - 2 - q, chain.spacing):
            following.append(behind)
    final_nll = _chain_nll(local_nll, left, right, chain.counts, n_rows, world)
    return start_nll, final_nll, following


def _chain_nll(local_nll: float, left: _Environment, right: _Environment,
               counts: torch.Tensor | None, n_rows: int, world: int) -> float:
    """The training NLL of the chain from a site's local NLL and its environments, with the
    gauge centre at that site: ln Q_n = ln P_n − ln ‖A‖² + (log-scales of l_n, r_n), with P_n
    the local probability (l_n T r_n, or |l_n B r_n|² on amplitudes)."""
    scales = sum_over_ranks(weighted_sum(left[1] + right[1], counts), world=world).item()
    return local_nll - scales / n_rows


def _checkpointed(L: int, p: int, B: int) -> bool:
    """Whether the environment ahead of position p of a half-sweep (the sites at positions
    p + 1 … L − 1) is kept: every B-th, and the empty one at p = L − 1."""
    return p == L - 1 or p % B == B - 1


def _environments_ahead(chain: _Chain, order: range, rightwards: bool,
                        checkpoints: list[_Environment] | None) -> Iterator[_Environment]:
    """For each site of ``order`` in turn, the environment of the sites after it in the
    sweep's direction, from the checkpoints (:func:`_checkpointed`, the nearest last; None:
    computed here from the far end): a block of B is recomputed from its checkpoint when the
    sweep reaches it, from tensors still as they were (the gauge moves only into the site about
    to be fitted)."""
    L, B = len(order), chain.spacing
    if checkpoints is None:
        environment = chain.empty()
        checkpoints = [environment]
        for p in range(L - 2, -1, -1):
            environment = chain.step(environment, order[p + 1], not rightwards)
            if _checkpointed(L, p, B):
                checkpoints.append(environment)
        del environment
    for start in range(0, L, B):
        block = [checkpoints.pop()]
        for p in range(min(start + B, L) - 2, start - 1, -1):
            block.append(chain.step(block[-1], order[p + 1], not rightwards))
        while block:
            yield block.pop()


def _local_fit(chain: _Chain, i: int, left: torch.Tensor, right: torch.Tensor, n_rows: int,
               iterations: int, world: int) -> tuple[torch.Tensor, float, float]:
    """Site i's tensor minimising −(1/N) Σ_n ln(l_n T_i[a_n] r_n) + ln ‖A‖², by L-BFGS from
    the current one turned to its best phase (:func:`_best_turn`; that turn where no step
    lowers it), normalised, that minimum and the local NLL of the current tensor (summed over
    ranks); each row n counted ``chain.counts[n]`` times."""
    counts = chain.counts
    groups = [(left.index_select(0, rows), right.index_select(0, rows),
               None if counts is None else counts.index_select(0, rows))
              for rows in chain.groups[i]]

    def probabilities(tensor: torch.Tensor) -> torch.Tensor:
        """P_n of this rank's rows under ``tensor`` (l_n T_i[a_n] r_n, or |l_n B_i[a_n] r_n|²
        on amplitudes), outcome group after group (N_rank,)."""
        return _born(torch.cat(_group_values(chain.tables(i, tensor), groups)))

    def share(tensor: torch.Tensor) -> torch.Tensor:
        """This rank's share of the local NLL (the shares of all ranks add up to it)."""
        return (_GroupedNLL.apply(chain.tables(i, tensor), groups) / n_rows
                + torch.log((tensor * tensor).sum()) / world)

    grouped_counts = None if counts is None else torch.cat([group[2] for group in groups])
    with torch.no_grad():
        start, before, unmoved = _best_turn(chain, chain.sites[i], probabilities, grouped_counts,
                                            n_rows, world)
    if not math.isfinite(before):
        return start, before, unmoved
    tensor = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([tensor], lr=1, max_iter=iterations,
                                  history_size=_LOCAL_HISTORY, line_search_fn="strong_wolfe")

    evaluated = []  # (tensor, local NLL) of every evaluation, to skip that of the end point

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = share(tensor)
        value.backward()
        total = sum_over_ranks(value.detach(), tensor.grad, world=world)
        evaluated.append((tensor.detach().clone(), total.item()))
        return total

    optimizer.step(closure)
    after = next((value for point, value in reversed(evaluated) if torch.equal(point, tensor)),
                 None)
    if after is None:
        with torch.no_grad():
            after = sum_over_ranks(share(tensor), world=world).item()
    if not math.isfinite(after) or after > before or not torch.isfinite(tensor).all():
        return start, before, unmoved
    return (tensor / tensor.norm()).detach(), after, unmoved


#: the rows of one outcome: environments (N_k, χl²) and (N_k, χr²), counts (N_k,) or None
_Group = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _group_values(tables: torch.Tensor, groups: list[_Group]) -> list[torch.Tensor]:
    """v_n = l_n T[k] r_n of the rows (l_n, r_n) of each outcome k (``groups``, as for
    :class:`_GroupedNLL`): one (N_k,) per outcome, the probabilities on superoperator tables,
    the amplitudes (complex) on amplitude tables."""
    return [torch.linalg.vecdot(right.conj(), left @ tables[k])  # vecdot conjugates its first
            for k, (left, right, _) in enumerate(groups)]


def _born(values: torch.Tensor) -> torch.Tensor:
    """The probabilities of :func:`_group_values`: v, or |v|² of amplitudes."""
    return values.abs().square() if values.is_complex() else values


#: rows per batch of :func:`_gram`
_GRAM_CHUNK = 1024


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """aᵀ b = Σ_n a_nᵀ b_n of (N, p) and (N, q) float64 or complex128, as batched products of
    :data:`_GRAM_CHUNK` rows summed: the CPU's float64 GEMM runs a long inner dimension 1.5–3
    times slower than short batches of it (2-core CPU, N = 2.25·10^4 to 9·10^4, p = q = 16 or
    36), and both are one product where N is small."""
    n = a.shape[0] - a.shape[0] % _GRAM_CHUNK
    if n < 2 * _GRAM_CHUNK:
        return a.T @ b
    batches = torch.bmm(a[:n].view(-1, _GRAM_CHUNK, a.shape[1]).transpose(1, 2),
                        b[:n].view(-1, _GRAM_CHUNK, b.shape[1])).sum(0)
    return batches.addmm_(a[n:].T, b[n:])


class _GroupedNLL(torch.autograd.Function):
    """−Σ_n c_n ln P_n with P_n = v_n = l_n T[k] r_n, or P_n = |v_n|² on amplitude tables, over
    the rows (l_n, r_n, c_n) of each outcome k (``groups``: K triples of float64 (N_k, χl²),
    (N_k, χr²), or complex128 (N_k, χl), (N_k, χr), and counts (N_k,) or None for c_n = 1),
    differentiable in the tables T (K, χl², χr²) or (K, χl, χr): the forward pass also forms
    the gradient −Σ_{n∈k} c_n l_n r_nᵀ / v_n (one matrix product per outcome), or its
    complex form −2 conj(Σ_{n∈k} c_n l_n r_nᵀ / v_n) (torch's convention ∂/∂Re + i ∂/∂Im),
    which autograd's own pass through the products took a third longer to reach (2-core CPU,
    9·10^4 rows, χ = 4)."""

    @staticmethod
    def forward(ctx, tables: torch.Tensor, groups: list[_Group]) -> torch.Tensor:
        total = tables.new_zeros((), dtype=torch.float64)
        gradient = torch.empty_like(tables)
        for k, ((left, right, counts), v) in enumerate(
                zip(groups, _group_values(tables, groups), strict=True)):
            total -= weighted_sum(torch.log(_born(v)), counts)
            # rows without counts: r_n / v_n, no product with ones
            scaled = right / v[:, None] if counts is None else right * (counts / v)[:, None]
            gradient[k] = _gram(left, scaled)
        if gradient.is_complex():
            gradient = 2 * gradient.conj()
        ctx.save_for_backward(gradient)
        return total

    @staticmethod
    def backward(ctx, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return -upstream * gradient, None


def _best_turn(chain: _Chain, stored: torch.Tensor,
               probabilities: Callable[[torch.Tensor], torch.Tensor],
               counts: torch.Tensor | None, n_rows: int, world: int
               ) -> tuple[torch.Tensor, float, float]:
    """The site tensor with its qubit's |1⟩ amplitudes turned by the phase e^{iφ} of the lowest
    local NLL (real tensors: φ = 0 or π), that NLL and the NLL at φ = 0 (summed over ranks;
    ``counts`` (N,) or None weight the rows in the order of ``probabilities``).

    The likelihood of a GHZ-like state has separate basins in its relative phase (records of
    zero probability bound them), which no local descent leaves, and within its basin the
    phase is so weakly determined (by the few records that measure every qubit off the Z axis)
    that L-BFGS on the whole tensor does not resolve it. Every record's probability is
    P_n(φ) = c_n + a_n cos φ + b_n sin φ exactly (the |1⟩ amplitudes enter ρ once with e^{iφ}
    and once with e^{−iφ}), so P at φ = 0, π/2, π gives the NLL at every φ: a grid of
    :data:`_PHASE_GRID` phases finds the basin and :data:`_PHASE_NEWTON` Newton steps the
    minimum in it."""
    def turned(phi: float) -> torch.Tensor:
        tensor = chain.complex(stored).clone()
        tensor[:, 1] *= complex(math.cos(phi), math.sin(phi))
        return chain.stored(tensor)

    p0, p2 = probabilities(stored), probabilities(turned(math.pi))
    norm_share = math.log((stored * stored).sum().item()) / world

    def nll_of(p: torch.Tensor) -> torch.Tensor:
        """The local NLL of each column of probabilities p (N, M), summed over ranks."""
        log_p = torch.log(p.clamp_min(0.0))  # −inf where P ≤ 0 (rounding)
        return sum_over_ranks(-weighted_sum(log_p, counts) / n_rows + norm_share, world=world)

    if chain.real:  # φ = 0 or π: the probabilities are at hand
        values = nll_of(torch.stack([p0, p2], 1))
        best = int(torch.argmin(values))
        return stored if best == 0 else turned(math.pi), values[best].item(), values[0].item()
    c, a = (p0 + p2) / 2, (p0 - p2) / 2
    b = probabilities(turned(math.pi / 2)) - c
    coefficients = torch.stack([c, a, b], 1)  # (N, 3)

    def nll(phi: torch.Tensor) -> torch.Tensor:
        """The local NLL at each of the phases ``phi`` (M,), summed over ranks: P (N, M) as
        one product of the coefficients with (1, cos φ, sin φ)."""
        return nll_of(coefficients @ torch.stack([torch.ones_like(phi), phi.cos(), phi.sin()]))

    grid = (2 * math.pi * torch.arange(_PHASE_GRID) / _PHASE_GRID).to(c)
    values = torch.cat([nll(phases) for phases in grid.split(8)])  # (N, 8) blocks of P at a time
    best = int(torch.argmin(values))
    phi, value = grid[best].item(), values[best].item()
    for _ in range(_PHASE_NEWTON):
        p = c + a * math.cos(phi) + b * math.sin(phi)
        slope = (b * math.cos(phi) - a * math.sin(phi)) / p
        curvature = (c - p) / p - slope ** 2  # (∂²P/∂φ²)/P − (∂P/∂φ / P)², ∂²P/∂φ² = c − P
        gradient, hessian = (sum_over_ranks(-weighted_sum(x, counts) / n_rows,
                                            world=world).item()
                             for x in (slope, curvature))
        if not hessian > 0:
            break
        step = phi - gradient / hessian
        trial = nll(torch.tensor([step]).to(c)).item()
        if not trial < value:
            break
        phi, value = step, trial
    return (stored if phi == 0.0 else turned(phi)), value, values[0].item()


def _groups(outcome: torch.Tensor, K: int) -> list[torch.Tensor]:
    """Row indices of each outcome 0 … K−1."""
    order = torch.argsort(outcome, stable=True).to(torch.int32)
    return list(order.split(torch.bincount(outcome, minlength=K).tolist()))
