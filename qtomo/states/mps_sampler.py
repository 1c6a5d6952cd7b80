"""Batched POVM sampling and exact POVM log-probabilities of an MPS or a purified MPS.

The MPS conventions are those of :mod:`qtomo.states.mps`: tensors B_i (χ_i, 2, χ_{i+1}). A
locally purified density operator (LPDO, docs/models.md "Physical model families") has tensors
(χ_i, 2, κ, χ_{i+1}) whose third leg, the Kraus leg, is traced: ρ = Tr_κ |X⟩⟨X|; κ = 1 is an MPS.

**The one exact contraction** (:func:`born_log_prob`, differentiable, any gauge, any norm)::

    E_0 = 1,   E_{i+1} = Σ_{st,q} (M_{a_i})_st B_i^{s,q†} E_i B_i^{t,q},   P(a) = Tr E_L / Tr ρ

with E (B, χ, χ) Hermitian positive, divided by its trace every 4 sites (the logs of the
traces add up, so nothing under- or overflows), and Tr ρ the same contraction with M = 1. It is
what the ``mps`` and ``lpdo`` model families train through, and the general ln P of
:class:`MPSDistribution`; the two passes below are faster no-grad specialisations for
right-canonical tensors, tested against it.

For the sampler the tensors are right-canonical (Σ_{s,q} B^{s,q} B^{s,q}† = 1), so the right
environment of every bond is the identity and the marginal of the first i outcomes needs only a
left environment. A purified state is sampled as the pure state X measured with M_k ⊗ 1 on each
site's (qubit, Kraus) legs: the refined rank-one outcomes below become pairs (r, q).

**Sampling** (exact, ancestral, whole batch at once). Every POVM element is a sum of rank-one
terms, M_k = Σ_{r: parent_r = k} v_r v_r† (:meth:`qtomo.povm.POVM.rank_one_vectors`; ``pauli4``
has R = 5 such v_r, ``pauli6`` 6, ``tetra`` 4). Sampling the refined outcome r and reporting
parent_r samples the POVM, and the conditional state stays a row vector u (χ_i,)::

    Y^s     = u B_i^s                              (B, 2, χ_{i+1})
    ρ_st    = Σ_c Y^s_c conj(Y^t_c)                (B, 2, 2), the qubit's conditional state
    p(r)    = v_r† ρ v_r / Tr ρ                    (B, R)
    u'      = Σ_s conj(v_{r,s}) Y^s / √(v_r† ρ v_r)

**Log-probabilities.** For rank-one POVMs ln P(a) = Σ_i ln p(r_i | r_<i) from the same pass. For
``pauli4`` (M_3 has rank 2) the conditional state is mixed, a Hermitian χ×χ environment::

    E_0 = 1,   E_{i+1} = Σ_{st} (M_{a_i})_st B_i^{s†} E_i B_i^t,   P(a_0 … a_i) = Tr E_{i+1}

normalised to unit trace every 8 sites (the logs of the traces add up to ln P(a)). A Hermitian
χ×χ matrix has χ² real coordinates (Re E_pq for p ≤ q, Im E_pq for p < q), and the update is
real-linear in them: x' = x T_{i,a_i} with T_{i,k} a real (χ_i², χ_{i+1}²) matrix fixed per site
and outcome. Records are grouped by outcome at each site, so the pass is K large matrix products
per site with inner dimension χ², close to the float64 matrix-product peak. Both passes use real
float64 arithmetic only, for real and complex MPS alike. The tables take K Σ_i χ_i² χ_{i+1}²
floats; above 1 GiB, for χ > 32, or for a purified state, ln P comes from
:func:`born_log_prob` (two products per site with inner dimensions χ and 2κχ). A real MPS (the
TFIM and GHZ states of ``qtomo simulate``) takes :mod:`qtomo.states.real_environment` instead,
which splits E into real and imaginary parts (O(χ³) real flops per site against the tables'
2 χ⁴), unless the tables fit and cost fewer flops (χ ≲ 12); ``log_prob_pass`` names the pass
(docs/simulate.md).

Example:
    >>> import torch
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.mps import ghz_mps
    >>> dist = ghz_mps(30).distribution(get_povm("pauli4"))
    >>> a, log_p = dist.sample_with_log_prob(4, torch.Generator().manual_seed(1))
    >>> a.shape, bool(torch.allclose(log_p, dist.log_prob(a), rtol=0, atol=1e-12))
    (torch.Size([4, 30]), True)
    >>> zeros = torch.zeros(1, 30, dtype=torch.long)        # P(0…0) = (1/3)^30 / 2
    >>> bool(abs(dist.log_prob(zeros)[0] - (30 * np.log(1 / 3) - np.log(2))) < 1e-12)
    True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from qtomo.errors import QtomoError
from qtomo.povm import POVM, PerQubitPOVM, check_outcomes
from qtomo.states.real_environment import (
    is_real,
    real_log_prob,
    real_pass_flops,
    real_site_tables,
)

__all__ = ["MPSDistribution", "born_log_prob", "born_log_prob_bytes", "superoperator_tables"]

_TABLE_BUDGET = 2**30  # bytes of superoperator tables before the dense fallback
_TABLE_MAX_CHI = 32
_CHUNK_BYTES = 64 * 2**20  # working memory of one chunk of records
_WORKSPACE = 256 * 2**20  # bytes of a gradient pass besides its tables and environments
_RENORMALISE = 8  # sites between trace normalisations: a product of 8 conditionals stays normal
_RENORMALISE_GRADIENT = 4  # the same in born_log_prob, whose tensors may have any norm


def born_log_prob(
    tensors: Sequence[torch.Tensor], elements: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    """ln P(a) = ln Tr(M_a ρ) − ln Tr ρ of an MPS (ρ = |ψ⟩⟨ψ|) or an LPDO (ρ = Tr_κ |X⟩⟨X|).

    The contraction of the module docstring, exact and differentiable (autograd flows into the
    tensors): the tensors need no gauge and no normalisation, and the environment is divided by
    its trace every 4 sites, so L = 1000 sites neither under- nor overflow.

    Args:
        tensors: L complex tensors, (χ_i, 2, χ_{i+1}) or (χ_i, 2, κ, χ_{i+1}), χ_0 = χ_L = 1,
            all on one device (real tensors are promoted to complex128).
        elements: (K, 2, 2) complex128 POVM elements M_k, or (L, K, 2, 2) for a POVM that
            differs from qubit to qubit, on the tensors' device.
        a: LongTensor (B, L) of outcomes in 0..K−1 (not checked: callers check user input).

    Returns:
        float64 Tensor (B,) on the tensors' device; −inf for records of probability zero.

    Example (GHZ, P(0…0) = (1/3)^L / 2 for ``pauli4``):
        >>> from qtomo.povm import get_povm
        >>> from qtomo.states.mps import ghz_mps
        >>> tensors = [torch.as_tensor(B) for B in ghz_mps(6).mps]
        >>> elements = torch.tensor(get_povm("pauli4").elements)
        >>> log_p = born_log_prob(tensors, elements, torch.zeros(1, 6, dtype=torch.long))
        >>> bool(abs(log_p[0] - (6 * np.log(1 / 3) - np.log(2))) < 1e-12)
        True
    """
    identity = torch.eye(2, dtype=torch.float64, device=elements.device).to(elements.dtype)
    if elements.dim() == 3:  # one POVM for every qubit
        elements = elements.expand(len(tensors), *elements.shape)  # (L, K, 2, 2)
    K = elements.shape[1]
    if _use_tables([1] + [A.shape[-1] for A in tensors], K):
        # the norm's table (M = 1) as a (K+1)-th outcome: one table computation per site
        with_norm = torch.cat([elements, identity.expand(len(tensors), 1, 2, 2)], 1)
        tables = [superoperator_tables(A, M) for A, M in zip(tensors, with_norm, strict=True)]
        return (_table_log_trace([T[:K] for T in tables], a, _RENORMALISE_GRADIENT)
                - _table_log_trace([T[K:] for T in tables], a.new_zeros((1, a.shape[1])),
                                   _RENORMALISE_GRADIENT))
    log_norm = _log_trace(tensors, identity[None].expand(len(tensors), 1, 2, 2),
                          a.new_zeros((1, a.shape[1])))  # (1,)
    return _log_trace(tensors, elements, a) - log_norm


def _log_trace(tensors: Sequence[torch.Tensor], elements: torch.Tensor,
               a: torch.Tensor) -> torch.Tensor:
    """ln Tr E_L of the module docstring, unnormalised, for records a (B, L).

    The environment is kept as F[c', n, c] = (E_n)_{c'c}, (χ, B, χ), so that each site is two
    large matrix products over all records, with no per-record kernels and no copies for a pure
    state: Z = F A (inner dimension χ), the record's own 2×2 element mixing the two physical
    rows of Z elementwise, and A† over (bond, qubit, Kraus) (inner dimension 2κχ).
    """
    size = a.shape[0]
    F = torch.ones((1, size, 1), dtype=torch.complex128, device=elements.device)  # (χ0, B, χ0)
    log_p = torch.zeros(size, dtype=torch.float64, device=elements.device)
    for i, A in enumerate(tensors):
        A = A.to(torch.complex128)
        chi_l, chi_r = A.shape[0], A.shape[-1]
        kappa = A.numel() // (2 * chi_l * chi_r)
        Z = (F.reshape(-1, chi_l) @ A.reshape(chi_l, -1)).view(chi_l, size, 2, -1)  # (χl,B,2,κχr)
        M = elements[i][a[:, i]][None, :, :, :, None]  # (1, B, 2, 2, 1): the record's M_{a_i}
        # X^s = Σ_t (M_{a_i})_st Z^t, laid out (c', s, n, q, d) for the product below
        X = torch.stack([M[:, :, s, 0] * Z[:, :, 0] + M[:, :, s, 1] * Z[:, :, 1]
                         for s in range(2)], dim=1)  # (χl, 2, B, κχr)
        X = X.view(chi_l, 2, size, kappa, chi_r).transpose(2, 3).reshape(-1, size * chi_r)
        # F'[b, n, d] = Σ_{c' s q} conj(A[c', s, q, b]) X[(c' s q), (n d)]
        F = (A.reshape(-1, chi_r).conj().T @ X).view(chi_r, size, chi_r)
        if (i + 1) % _RENORMALISE_GRADIENT == 0 or i == len(tensors) - 1:
            trace = F.diagonal(dim1=0, dim2=2).real.sum(-1)  # (B,)
            log_p = log_p + torch.log(trace)
            F = F * torch.where(trace > 0, trace.reciprocal(), 1.0)[None, :, None]
    return log_p


class MPSDistribution:
    """The POVM distribution P(a) = Tr(M_a |ψ⟩⟨ψ|) of an MPS, with the model interface.

    Args:
        tensors: L right-canonical MPS tensors (χ_i, 2, χ_{i+1}), complex (see
            :mod:`qtomo.states.mps`).
        povm: the single-qubit POVM, or one per qubit (:class:`~qtomo.povm.PerQubitPOVM`).
        device: torch device for all work; returned tensors live there.
        chunk_size: records processed together; default: what fits 64 MiB of working memory.

    ``sample``, ``log_prob`` and ``sample_with_log_prob`` process any number of records in
    chunks, so memory stays bounded by the chunk (plus the returned tensors). ``log_prob_pass``
    is ``"pure"`` (rank-one POVMs), ``"real"``, ``"tables"`` or ``"dense"`` (module docstring).
    """

    family = "exact-mps"
    exact_log_prob = True
    has_log_prob = True

    def __init__(
        self,
        tensors: Sequence[np.ndarray],
        povm: POVM | PerQubitPOVM,
        device: str | torch.device = "cpu",
        chunk_size: int | None = None,
    ) -> None:
        tensors = [np.array(B, dtype=np.complex128) for B in tensors]  # writable copies
        self.povm, self.L, self.K = povm, len(tensors), povm.K
        self.device = torch.device(device)
        self.chi = [1] + [B.shape[-1] for B in tensors]  # χ_0 … χ_L
        purified = [B.reshape(B.shape[0], 2, -1, B.shape[-1]) for B in tensors]  # (χl, 2, κ, χr)
        kappa = {B.shape[2] for B in purified}
        if len(kappa) != 1:
            raise QtomoError(f"every tensor needs the same Kraus dimension κ; got {sorted(kappa)}")
        self.kappa = kappa.pop()
        self._tensors = [torch.as_tensor(B, device=self.device) for B in tensors]
        self._elements = torch.tensor(povm.site_elements(self.L), device=self.device)
        self._sites = torch.arange(self.L, device=self.device)
        vectors, parent = _refinements(povm, self.L)  # (L, R, 2), (L, R)
        # refined outcomes (r, q): v_r ⊗ e_q on the (qubit, Kraus) legs, parent_r reported
        self.R = parent.shape[1] * self.kappa
        self._parent = torch.as_tensor(np.repeat(parent, self.kappa, axis=1), device=self.device)
        # Y_r = u C_r with C_r = Σ_s conj(v_rs) B^s, all r in one real product:
        # [Re u, Im u] (B, 2χl) @ [[Re C, Im C], [−Im C, Re C]] = [Re Y_r, Im Y_r] for each r,
        # columns ordered (r, Re|Im, c) so that p(r) = Σ Y² sums contiguous blocks of 2χr
        self._C = []
        for B, site_vectors in zip(purified, vectors, strict=True):
            C = np.einsum("rs,asqc->arqc", site_vectors.conj(), B).reshape(B.shape[0], self.R, -1)
            block = np.stack([np.stack([C.real, C.imag], 2), np.stack([-C.imag, C.real], 2)])
            self._C.append(torch.as_tensor(block.reshape(2 * B.shape[0], -1), device=self.device))
        # every element rank one (parent a permutation); a POVM with a zero element is not
        self.rank_one = all(np.array_equal(np.sort(row), np.arange(self.K)) for row in parent)
        self._refined = torch.empty((self.L, self.K), dtype=torch.int64, device=self.device)
        per_record = 8 * (4 * self.L + 4 * self.R * max(self.chi))  # sampling pass
        self._real_sites: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.rank_one:
            self._refined.scatter_(1, self._parent, torch.arange(self.R, device=self.device)
                                   .expand(self.L, -1).contiguous())
            self.log_prob_pass = "pure"
        else:
            per_record += self._prepare_mixed_pass(tensors)
        self.tables = self.log_prob_pass == "tables"
        self.chunk_size = chunk_size or int(np.clip(_CHUNK_BYTES // per_record, 256, 2**16))

    def _prepare_mixed_pass(self, tensors: Sequence[np.ndarray]) -> int:
        """Choose and build the ln P pass of a POVM with mixed elements; its bytes per record.

        ``log_prob_pass`` becomes ``"real"`` (:mod:`qtomo.states.real_environment`) for a real
        MPS when the tables do not fit or would cost more flops per record (small χ), else
        ``"tables"`` when they fit their budget, else ``"dense"`` (:func:`born_log_prob`).
        """
        table_flops = _table_bytes(self.chi, self.K) // (4 * self.K)  # 2 Σ χl²χr²
        if self.kappa == 1 and is_real(tensors) and (
                not _use_tables(self.chi, self.K) or real_pass_flops(self.chi) < table_flops):
            self.log_prob_pass = "real"
            self._real_sites = real_site_tables(tensors, self._elements.cpu().numpy(),
                                                self.device)
            return 0  # real_log_prob works in blocks of its own
        if _use_tables(self.chi, self.K):
            self.log_prob_pass = "tables"
            with torch.no_grad():
                self._T = [superoperator_tables(B, M) for B, M in zip(
                    self._tensors, self._elements.expand(self.L, -1, 2, 2), strict=True)]
            return 2 * 8 * max(self.chi) ** 2
        self.log_prob_pass = "dense"  # born_log_prob: E, W_k gathered, X and Y per record
        return 16 * 6 * self.kappa**2 * max(self.chi) ** 2

    def __repr__(self) -> str:
        kraus = f", kraus={self.kappa}" if self.kappa > 1 else ""
        return (f"MPSDistribution(L={self.L}, povm={self.povm.name!r}, chi_max={max(self.chi)}"
                f"{kraus}, device={str(self.device)!r})")

    # -- public interface -------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n records drawn exactly from P; LongTensor (n, L) on ``device``."""
        return self._run(n, generator, with_log_prob=False)[0]

    def sample_with_log_prob(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n records from P and their exact ln P(a); (LongTensor (n, L), float64 (n,)), ``device``.

        The random stream is drawn from ``generator`` (on its own device) chunk by chunk, so the
        result depends on the seed and on ``chunk_size``.
        """
        return self._run(n, generator, with_log_prob=True)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln P(a) for a LongTensor (B, L) of outcomes 0..K−1; returns (B,) float64 on a's device.

        Records of probability zero get −inf.

        Raises:
            QtomoError: for a wrong shape or outcomes outside 0..K−1.
        """
        a = torch.as_tensor(a)
        check_outcomes(a, self.L, self.K, self.povm.name)
        chunks = [self._log_prob_chunk(a[start:start + self.chunk_size].to(self.device))
                  for start in range(0, a.shape[0], self.chunk_size)]
        result = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.float64)
        return result.to(a.device)

    # -- passes -----------------------------------------------------------------------------

    def _run(
        self, n: int, generator: torch.Generator | None, with_log_prob: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise QtomoError(f"the number of records must be an integer >= 0; got {n!r}")
        outcomes, log_probs = [], []
        random_device = generator.device if generator is not None else self.device
        for start in range(0, n, self.chunk_size):
            size = min(self.chunk_size, n - start)
            uniform = torch.rand(
                (self.L, size), generator=generator, dtype=torch.float64, device=random_device
            ).to(self.device)
            refined, log_p = self._pure_pass(uniform=uniform)
            a = self._parent[self._sites, refined]
            if with_log_prob and not self.rank_one:
                log_p = self._log_prob_chunk(a)
            outcomes.append(a)
            log_probs.append(log_p)
        if not outcomes:
            empty = torch.zeros((0, self.L), dtype=torch.int64, device=self.device)
            return empty, torch.zeros(0, dtype=torch.float64, device=self.device)
        return torch.cat(outcomes), torch.cat(log_probs)

    def _log_prob_chunk(self, a: torch.Tensor) -> torch.Tensor:
        if self.rank_one:
            return self._pure_pass(refined=self._refined[self._sites, a])[1]
        if self.log_prob_pass == "real":
            return real_log_prob(self._real_sites, a)
        if self.tables:
            return _table_log_trace(self._T, a, _RENORMALISE)
        return born_log_prob(self._tensors, self._elements, a)

    def _pure_pass(
        self, uniform: torch.Tensor | None = None, refined: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined outcomes r (B, L), drawn with ``uniform`` (L, B) or given; Σ_i ln p(r_i | r_<i).

        Per-site quantities are kept as rows (L, B) so that each site touches contiguous memory.
        """
        size = uniform.shape[1] if uniform is not None else refined.shape[0]
        offsets = torch.arange(size, device=self.device) * self.R
        u = torch.zeros((size, 2), dtype=torch.float64, device=self.device)  # (B, 2χ_0), Re|Im
        u[:, 0] = 1
        chosen = torch.empty((self.L, size), dtype=torch.float64, device=self.device)
        totals = torch.empty((self.L, size), dtype=torch.float64, device=self.device)
        sampled = torch.empty((self.L, size), dtype=torch.int64, device=self.device)
        given = refined.T.contiguous() if refined is not None else None
        buffer = torch.empty(size * max(C.shape[1] for C in self._C), dtype=torch.float64,
                             device=self.device)  # reused: fresh large tensors cost page faults
        for i, C in enumerate(self._C):
            Y = torch.matmul(u, C, out=buffer[: size * C.shape[1]].view(size, -1))
            Y = Y.view(size * self.R, -1)  # (B R, 2χr): rows (record, r)
            p = torch.linalg.vector_norm(Y, dim=1).square_().view(size, self.R)  # (B, R)
            totals[i] = p.sum(1)
            if given is not None:
                r = given[i]
            else:
                threshold = (uniform[i] * totals[i]).unsqueeze(1)
                r = (p.cumsum(1) < threshold).sum(1).clamp_(max=self.R - 1)
                sampled[i] = r
            chosen[i] = p_r = p.gather(1, r.unsqueeze(1)).squeeze(1)
            u = Y.index_select(0, offsets + r)  # (B, 2χr)
            u *= torch.where(p_r > 0, p_r, 1.0).rsqrt().unsqueeze(1)
        totals = torch.where(totals > 0, totals, 1.0)
        log_p = torch.log(chosen).sum(0) - torch.log(totals).sum(0)
        return (sampled.T.contiguous() if given is None else refined), log_p

def _refinements(povm: POVM | PerQubitPOVM, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Every qubit's rank-one refinement (:meth:`~qtomo.povm.POVM.rank_one_vectors`), padded to
    one length R: vectors (L, R, 2) complex128, parents (L, R) int64.

    Padding goes first, as zero vectors: they have p(r) = 0, so the sampler's cumulative search
    passes over them, and a qubit's real outcomes keep their order.
    """
    refined = [povm.at(site).rank_one_vectors() for site in range(L)]
    R = max(len(parent) for _, parent in refined)
    vectors = np.zeros((L, R, 2), dtype=np.complex128)
    parents = np.zeros((L, R), dtype=np.int64)
    for site, (site_vectors, parent) in enumerate(refined):
        vectors[site, R - len(parent):] = site_vectors
        parents[site, R - len(parent):] = parent
        parents[site, :R - len(parent)] = parent[0]
    return vectors, parents


def _table_bytes(chi: list[int], K: int) -> int:
    return 8 * K * sum((left * right) ** 2 for left, right in zip(chi[:-1], chi[1:], strict=True))


def born_log_prob_bytes(chi: Sequence[int], kappa: int, K: int, records: int) -> int:
    """Estimated peak bytes of :func:`born_log_prob` and its gradient over ``records`` rows.

    Measured on this project's CPU (L = 16 and 50, χ = 4 … 64, the growth of the maximum
    resident memory over one forward and backward pass): the table path holds about 3 times its
    tables while it builds them, then about 18 bytes per record and Σ_i χ_i² (its saved
    environments); the dense path about 55 κ bytes per record and Σ_i χ_i² (F, Z and X of every
    site, saved for the gradient); both up to about 350 MiB of workspace besides. The estimate
    adds a third to the first two and 256 MiB.

    Args:
        chi: bond dimensions χ_0 … χ_L; kappa: Kraus dimension κ; K: outcomes per qubit.
        records: rows of one pass.
    """
    squares = sum(bond * bond for bond in chi)
    if _use_tables(list(chi), K):
        return _WORKSPACE + 4 * _table_bytes(list(chi), K) + 24 * records * squares
    return _WORKSPACE + 72 * kappa * records * squares


def _use_tables(chi: list[int], K: int) -> bool:
    """Whether the superoperator tables of bonds χ_0 … χ_L fit their budget (module docstring)."""
    return max(chi) <= _TABLE_MAX_CHI and _table_bytes(chi, K) <= _TABLE_BUDGET


def superoperator_tables(A: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
    """T_k (K, χl², χr²) float64: the real coordinates of Σ_{st,q} (M_k)_st A^{s,q†} G_j A^{t,q}
    for each Hermitian basis matrix G_j, so that x' = x T_k is the environment update
    E' = Σ_st (M_k)_st A^{s†} E A^t in the coordinates x = (Re E_pq)_{p≤q} ⊕ (Im E_pq)_{p<q}.

    With S_k the complex (χl², χr²) matrix of E ↦ E' on vec(E), T_k = Re(G S_k R): two fixed
    products (:func:`_hermitian_coordinates`) instead of gathering the triangles, which made
    these tables most of a training step at χ = 2.

    Differentiable in A (χl, 2, χr) or (χl, 2, κ, χr), complex; elements (K, 2, 2) complex128.
    """
    chi_l, chi_r = A.shape[0], A.shape[-1]
    A = A.to(torch.complex128).reshape(chi_l, 2, -1, chi_r)  # (χl, 2, κ, χr)
    W = torch.einsum("kst,ctqd->kcsqd", elements, A)  # W_k^s = Σ_t (M_k)_st A^t
    S = torch.einsum("asqb,kcsqd->kacbd", A.conj(), W)  # E_ac → E'_bd, (K, χl, χl, χr, χr)
    basis = _hermitian_coordinates(chi_l, A.device)[0]
    extract = _hermitian_coordinates(chi_r, A.device)[1]
    return (basis @ S.reshape(-1, chi_l**2, chi_r**2) @ extract).real


@functools.cache
def _hermitian_coordinates(chi: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, R), both complex128 (χ², χ²): row j of G is the Hermitian basis matrix G_j
    flattened (e_pq + e_qp for p ≤ q, i e_pq − i e_qp for p < q), and Re(vec(E) R) are the
    coordinates (Re E_pq)_{p≤q} ⊕ (Im E_pq)_{p<q} of E, in that order."""
    up, strict = _triangle(chi, 0, device), _triangle(chi, 1, device)
    real = torch.arange(up.shape[1], device=device)
    imaginary = torch.arange(up.shape[1], chi * chi, device=device)
    basis = torch.zeros((chi * chi, chi, chi), dtype=torch.complex128, device=device)
    basis[real, up[0], up[1]] = 1
    basis[real, up[1], up[0]] = 1
    basis[imaginary, strict[0], strict[1]] = 1j
    basis[imaginary, strict[1], strict[0]] = -1j
    extract = torch.zeros((chi, chi, chi * chi), dtype=torch.complex128, device=device)
    extract[up[0], up[1], real] = 1
    extract[strict[0], strict[1], imaginary] = -1j  # Re(−i z) = Im z
    return basis.reshape(chi * chi, -1), extract.reshape(-1, chi * chi)


def _triangle(chi: int, offset: int, device: torch.device) -> torch.Tensor:
    """(2, n) row and column indices of the upper triangle (p ≤ q, or p < q with offset 1)."""
    return torch.triu_indices(chi, chi, offset, device=device)


def _table_log_trace(tables: Sequence[torch.Tensor], a: torch.Tensor, every: int) -> torch.Tensor:
    """ln Tr E_L for records a (B, L) on superoperator tables (:func:`superoperator_tables`, one
    (K, χl², χr²) per site); differentiable in the tables.

    At each site the records are grouped by their outcome, so the site is K matrix products
    with inner dimension χl², not B small ones; ``order`` remembers each current row's record.
    The trace is divided out every ``every`` sites.
    """
    size, K = a.shape[0], tables[0].shape[0]
    a = a.T  # (L, B)
    order = torch.arange(size, device=a.device)
    log_p = torch.zeros(size, dtype=torch.float64, device=a.device)
    x = torch.ones((size, 1), dtype=torch.float64, device=a.device)  # E_0 = 1, χ_0² = 1
    for i, T in enumerate(tables):
        if size == 1:  # one record (Tr ρ): sorting it into groups costs more than its product
            x = x @ T[a[i, 0]]
        else:
            outcome = a[i, order]
            permutation = torch.argsort(outcome, stable=True)
            order, log_p = order[permutation], log_p[permutation]
            groups = x.index_select(0, permutation).split(torch.bincount(outcome, minlength=K)
                                                          .tolist())
            x = torch.cat([rows @ T[k] for k, rows in enumerate(groups)])  # (B, χr²)
        if (i + 1) % every == 0 or i == len(tables) - 1:
            chi_r = math.isqrt(T.shape[-1])
            up = _triangle(chi_r, 0, a.device)
            trace = x[:, torch.nonzero(up[0] == up[1]).squeeze(1)].sum(1)  # (B,)
            log_p = log_p + torch.log(trace)
            x = x * torch.where(trace > 0, trace.reciprocal(), 1.0)[:, None]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(size, device=a.device)
    return log_p[inverse]
