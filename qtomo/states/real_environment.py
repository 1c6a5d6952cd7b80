"""Exact POVM log-probabilities of a real MPS in real float64 arithmetic, grouped by outcome.

The ground states ``qtomo simulate`` builds (TFIM, GHZ) have real tensors, B_i ∈ ℝ^{χl×2×χr}
(conventions of :mod:`qtomo.states.mps`). The mixed-outcome environment of
:mod:`qtomo.states.mps_sampler`,

    E_0 = 1,   E_{i+1} = Σ_{st} (M_{a_i})_st B_i^{sT} E_i B_i^t,   P(a) = Tr E_L,

is Hermitian; with real B it splits into real parts E = E_R + i E_I (E_R symmetric, E_I
antisymmetric) that evolve by real products only. Writing M = M_R + i M_I and
Z_p^t = E_p B^t (p ∈ {R, I}, t ∈ {0, 1})::

    X_R^s = Σ_t (M_R)_st Z_R^t − (M_I)_st Z_I^t,   X_I^s = Σ_t (M_R)_st Z_I^t + (M_I)_st Z_R^t,
    E'_q  = Σ_s B^{sT} X_q^s.

Per site and record that is 8 χl² χr + 16 χl χr² flops (the mixing folded into one real
(2χr, 4χl) matrix per outcome, :func:`real_site_tables`), against 32 χl² χr for the same
contraction in complex arithmetic and 2 χl² χr² for the superoperator tables of
:mod:`qtomo.states.mps_sampler` (docs/simulate.md has the measured times). Each site is:

1. the records sorted by their outcome at the site (the environments follow, one gather);
2. Z = E B^t for t = 0, 1: two products (2 χl B, χl) @ (χl, χr) over all records;
3. per outcome k, one product (2χr, 4χl) @ (4χl, B_k χr) over the records with a_i = k.

The environments are divided by Tr E_R every 8 sites (the logs of the traces add up to ln P).

Example (GHZ, P(0…0) = (1/3)^L / 2 for ``pauli4``):
    >>> import numpy as np
    >>> from qtomo.povm import get_povm
    >>> from qtomo.states.mps import ghz_mps
    >>> elements = np.broadcast_to(get_povm("pauli4").elements, (12, 4, 2, 2))
    >>> sites = real_site_tables(ghz_mps(12).mps, elements)
    >>> log_p = real_log_prob(sites, torch.zeros(1, 12, dtype=torch.long))
    >>> bool(abs(log_p[0] - (12 * np.log(1 / 3) - np.log(2))) < 1e-12)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["is_real", "real_log_prob", "real_pass_flops", "real_site_tables"]

_RENORMALISE = 8  # sites between trace normalisations: a product of 8 conditionals stays normal
_BLOCK_BYTES = 16 * 2**20  # working memory of one block of records (F, Z and F' stay in cache)
_MIN_BLOCK = 64


def is_real(tensors: Sequence[np.ndarray]) -> bool:
    """Whether every MPS tensor (χl, 2, χr) has zero imaginary part (exactly)."""
    return all(not np.iscomplexobj(B) or not np.any(B.imag) for B in tensors)


def real_pass_flops(chi: Sequence[int]) -> int:
    """Flops per record of :func:`real_log_prob` for bonds χ_0 … χ_L: Σ_i 8 χl²χr + 16 χlχr².

    Example:
        >>> real_pass_flops([1, 2, 1])
        144
    """
    return sum(8 * left**2 * right + 16 * left * right**2
               for left, right in zip(chi[:-1], chi[1:], strict=True))


def real_site_tables(
    tensors: Sequence[np.ndarray], elements: np.ndarray, device: str | torch.device = "cpu"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per site the real tensor and the folded outcome matrices of the module docstring.

    Args:
        tensors: L MPS tensors (χl, 2, χr) with zero imaginary part (:func:`is_real`).
        elements: (L, K, 2, 2) complex128 POVM elements of each qubit.
        device: torch device of the tables.

    Returns:
        L pairs (B, G): B (2, χl, χr) float64, B[t] = B_i^t; G (K, 2χr, 4χl) float64 with
        G[k, (q, d'), (t, p, c')] = Σ_s B[c', s, d'] W_k[q, s, p, t], W_k the real 4×4 form
        [[M_R, −M_I], [M_I, M_R]] of M_k acting on (p, t).
    """
    elements = np.asarray(elements, dtype=np.complex128)
    real, imag = elements.real, elements.imag  # (L, K, 2, 2)
    W = np.zeros((*elements.shape[:2], 2, 2, 2, 2))  # (L, K, q, s, p, t)
    W[:, :, 0, :, 0, :], W[:, :, 0, :, 1, :] = real, -imag
    W[:, :, 1, :, 0, :], W[:, :, 1, :, 1, :] = imag, real
    sites = []
    for B, site_W in zip(tensors, W, strict=True):
        B = np.ascontiguousarray(np.real(B), dtype=np.float64)  # (χl, 2, χr)
        chi_l, chi_r = B.shape[0], B.shape[-1]
        folded = np.einsum("csd,kqspt->kqdtpc", B, site_W).reshape(-1, 2 * chi_r, 4 * chi_l)
        sites.append((torch.as_tensor(B.transpose(1, 0, 2).copy(), device=device),
                      torch.as_tensor(np.ascontiguousarray(folded), device=device)))
    return sites


def real_log_prob(sites: Sequence[tuple[torch.Tensor, torch.Tensor]], a: torch.Tensor,
                  block: int | None = None) -> torch.Tensor:
    """ln P(a) = ln Tr E_L (module docstring) for records a, in blocks of ``block`` records.

    Args:
        sites: :func:`real_site_tables` of a right-canonical (normalised) real MPS.
        a: LongTensor (N, L) of outcomes in 0..K−1 on the tables' device (not checked).
        block: records contracted together; default: what fits 16 MiB of environments.

    Returns:
        float64 Tensor (N,) on a's device; −inf for records of probability zero.
    """
    chi = max(B.shape[-1] for B, _ in sites)
    block = block or max(_MIN_BLOCK, _BLOCK_BYTES // (8 * 10 * chi**2))
    parts = [_block_log_prob(sites, a[start:start + block]) for start in range(0, len(a), block)]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64, device=a.device)


def _block_log_prob(sites: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    a: torch.Tensor) -> torch.Tensor:
    """The three steps of the module docstring for one block a (B, L); ``order`` remembers which
    record each (sorted) environment belongs to."""
    size, K = a.shape[0], sites[0][1].shape[0]
    outcomes = a.T  # (L, B)
    order = torch.arange(size, device=a.device)
    log_p = torch.zeros(size, dtype=torch.float64, device=a.device)
    F = torch.zeros((2, 1, size, 1), dtype=torch.float64, device=a.device)  # (p, c', n, c)
    F[0] = 1  # E_0 = 1
    for i, (B, folded) in enumerate(sites):
        chi_l, chi_r = B.shape[1], B.shape[2]
        outcome = outcomes[i, order]
        permutation = torch.argsort(outcome, stable=True)
        order, log_p = order[permutation], log_p[permutation]
        F = F.view(2 * chi_l, size, chi_l).index_select(1, permutation)
        Z = torch.empty((2, 2 * chi_l * size, chi_r), dtype=torch.float64, device=a.device)
        for t in range(2):
            torch.mm(F.view(-1, chi_l), B[t], out=Z[t])  # Z[t, (p, c', n), d]
        Z = Z.view(4 * chi_l, size * chi_r)  # ((t, p, c'), (n, d))
        bounds = np.cumsum([0, *torch.bincount(outcome, minlength=K).tolist()]) * chi_r
        F = torch.cat([folded[k] @ Z[:, bounds[k]:bounds[k + 1]] for k in range(K)
                       if bounds[k + 1] > bounds[k]], 1).view(2, chi_r, size, chi_r)
        if (i + 1) % _RENORMALISE == 0 or i == len(sites) - 1:
            trace = F[0].diagonal(dim1=0, dim2=2).sum(-1)  # Tr E_R, (B,)
            log_p = log_p + torch.log(trace)
            F = F * torch.where(trace > 0, trace.reciprocal(), 1.0)[None, None, :, None]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(size, device=a.device)
    return log_p[inverse]
