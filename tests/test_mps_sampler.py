"""The batched MPS sampler against the dense Born rule, closed forms and χ² tests."""

import itertools
from functools import reduce

import numpy as np
import pytest
import scipy.stats
import torch

from qtomo.errors import QtomoError
from qtomo.povm import POVM_NAMES, get_povm
from qtomo.states import mps_sampler
from qtomo.states.mps import MPSState, ghz_mps, product_mps, tfim_mps
from qtomo.states.mps_sampler import MPSDistribution
from tests.physics import dense_from_mps, dense_tfim


def random_mps(L: int, chi: int, seed: int, real: bool = False) -> list[np.ndarray]:
    """A random right-canonical MPS: each B_i reshaped (χl, 2χr) has orthonormal rows."""
    rng = np.random.default_rng(seed)
    dims = [min(chi, 2**i, 2 ** (L - i)) for i in range(L + 1)]
    tensors = []
    for i in range(L):
        shape = (dims[i], 2 * dims[i + 1])
        M = rng.normal(size=shape) + (0 if real else 1j * rng.normal(size=shape))
        Q = np.linalg.qr(M.conj().T)[0].conj().T  # (χl, 2χr), Q Q† = 1
        tensors.append(Q.reshape(dims[i], 2, dims[i + 1]))
    return tensors


def dense_born_table(psi: np.ndarray, elements) -> np.ndarray:
    """P(a) = Σ_st ψ̄_s (⊗M_{a_i})_st ψ_t for all K^L records, one qubit contracted at a time."""
    L = psi.ndim
    table = np.multiply.outer(psi.conj(), psi)  # axes s_0…s_{L-1}, t_0…t_{L-1}
    for i in range(L):  # axes now a_0…a_{i-1}, s_i…, t_i…: s_i is axis i, t_i axis L
        table = np.moveaxis(np.tensordot(elements, table, axes=([1, 2], [i, L])), 0, i)
    return table.real.reshape(-1)


def two_site_marginal(tensors, i: int, j: int, elements) -> np.ndarray:
    """P(a_i, a_j) (K, K) from the reduced density matrix ρ_ij of the MPS (i < j)."""
    G = np.ones((1, 1))
    for B in tensors[:i]:
        G = np.einsum("ab,asc,bsd->cd", G, B.conj(), B)
    F = np.einsum("ab,asc,btd->stcd", G, tensors[i].conj(), tensors[i])  # open qubit i
    for B in tensors[i + 1:j]:
        F = np.einsum("stab,aqc,bqd->stcd", F, B.conj(), B)
    rho = np.einsum("stab,aqc,brc->sqtr", F, tensors[j].conj(), tensors[j])  # (2,2,2,2)
    rho = rho.reshape(4, 4).T  # ρ[(t r), (s q)] = ψ_tr ψ̄_sq
    return np.array([[np.trace(np.kron(Mk, Ml) @ rho).real for Ml in elements]
                     for Mk in elements])


def chi_square_pvalue(counts: np.ndarray, probabilities: np.ndarray) -> float:
    statistic = np.sum((counts - counts.sum() * probabilities) ** 2
                       / (counts.sum() * probabilities))
    return float(scipy.stats.chi2.sf(statistic, probabilities.size - 1))


@pytest.mark.parametrize("povm_name", POVM_NAMES)
@pytest.mark.parametrize("real", [True, False])
def test_log_prob_equals_dense_born_rule_for_every_outcome(povm_name, real):
    povm = get_povm(povm_name)
    L = 8 if povm.K == 4 else 6
    tensors = random_mps(L, chi=4, seed=3, real=real)
    truth = dense_born_table(dense_from_mps(tensors).reshape((2,) * L), povm.elements)
    assert truth.sum() == pytest.approx(1.0, abs=1e-12)
    records = torch.as_tensor(np.array(list(itertools.product(range(povm.K), repeat=L))))
    log_p = MPSDistribution(tensors, povm).log_prob(records).numpy()
    np.testing.assert_allclose(np.exp(log_p), truth, rtol=1e-10, atol=1e-18)


def test_tfim_mps_distribution_equals_exact_diagonalisation():
    L, povm = 8, get_povm("pauli4")
    state = tfim_mps(L, h=1.0, svd_min=0.0, energy_tol=1e-13)
    psi = np.linalg.eigh(dense_tfim(L, 1.0, 1.0))[1][:, 0].reshape((2,) * L)
    truth = dense_born_table(psi, povm.elements)
    records = torch.as_tensor(np.array(list(itertools.product(range(4), repeat=L))))
    probabilities = np.exp(state.distribution(povm).log_prob(records).numpy())
    np.testing.assert_allclose(probabilities, truth, rtol=1e-10, atol=1e-18)


@pytest.mark.parametrize("povm_name", POVM_NAMES)
def test_ghz_log_prob_closed_form_at_L60(povm_name):
    povm = get_povm(povm_name)
    dist = ghz_mps(60).distribution(povm)
    records, log_p = dist.sample_with_log_prob(2000, torch.Generator().manual_seed(7))
    M = povm.elements[records.numpy()]  # (n, L, 2, 2)
    # P(a) = ½ [Π (M)_00 + Π (M)_11 + 2 Re Π (M)_10]
    closed = 0.5 * (np.prod(M[..., 0, 0], 1) + np.prod(M[..., 1, 1], 1)
                    + 2 * np.prod(M[..., 1, 0], 1)).real
    np.testing.assert_allclose(log_p.numpy(), np.log(closed), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dist.log_prob(records).numpy(), np.log(closed), atol=1e-10)


def test_product_state_log_prob_and_impossible_records():
    dist = product_mps(12, "0").distribution(get_povm("pauli6"))
    zeros = torch.zeros((1, 12), dtype=torch.long)
    assert dist.log_prob(zeros).item() == pytest.approx(12 * np.log(1 / 3), abs=1e-12)
    ones = torch.ones((1, 12), dtype=torch.long)  # |1⟩ never seen in |0…0⟩
    assert dist.log_prob(ones).item() == -np.inf
    pauli4 = product_mps(12, "1").distribution(get_povm("pauli4"))
    assert pauli4.log_prob(zeros).item() == -np.inf
    threes = torch.full((1, 12), 3)  # M_3 has ⟨1|M_3|1⟩ = 1/3 + 1/6 + 1/6
    assert pauli4.log_prob(threes).item() == pytest.approx(12 * np.log(2 / 3), abs=1e-12)


@pytest.mark.parametrize("povm_name", POVM_NAMES)
def test_two_site_marginals_chi_square_at_L50(povm_name):
    povm = get_povm(povm_name)
    tensors = random_mps(50, chi=6, seed=11)
    dist = MPSDistribution(tensors, povm)
    records = dist.sample(40_000, torch.Generator().manual_seed(5)).numpy()
    for i, j in [(0, 1), (24, 25), (10, 40), (48, 49)]:
        truth = two_site_marginal(tensors, i, j, povm.elements).reshape(-1)
        assert truth.sum() == pytest.approx(1.0, abs=1e-12)
        counts = np.bincount(records[:, i] * povm.K + records[:, j], minlength=povm.K**2)
        assert chi_square_pvalue(counts, truth) > 1e-3, (i, j)


@pytest.mark.slow
@pytest.mark.parametrize("povm_name", POVM_NAMES)
def test_tfim_L50_two_site_marginals_chi_square(povm_name):
    state = _critical_50()
    povm = get_povm(povm_name)
    tensors = state.mps
    records = state.distribution(povm).sample(100_000, torch.Generator().manual_seed(2)).numpy()
    for i, j in [(0, 1), (25, 26), (5, 45), (48, 49)]:
        truth = two_site_marginal(tensors, i, j, povm.elements).reshape(-1)
        counts = np.bincount(records[:, i] * povm.K + records[:, j], minlength=povm.K**2)
        assert chi_square_pvalue(counts, truth) > 1e-3, (i, j)


_CACHE: dict[str, MPSState] = {}


def _critical_50() -> MPSState:
    if "tfim" not in _CACHE:
        _CACHE["tfim"] = tfim_mps(50, h=1.0)
    return _CACHE["tfim"]


def test_sampled_log_prob_is_the_log_prob_and_seed_reproducible():
    tensors = random_mps(20, chi=5, seed=1)
    for povm_name in POVM_NAMES:
        dist = MPSDistribution(tensors, get_povm(povm_name), chunk_size=300)
        a, log_p = dist.sample_with_log_prob(1000, torch.Generator().manual_seed(3))
        b = dist.sample(1000, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and a.dtype == torch.int64 and a.shape == (1000, 20)
        assert int(a.min()) >= 0 and int(a.max()) < dist.K
        np.testing.assert_allclose(log_p.numpy(), dist.log_prob(a).numpy(), rtol=1e-12)


def test_dense_environment_fallback_equals_superoperator_tables(monkeypatch):
    tensors = random_mps(16, chi=6, seed=4)
    povm = get_povm("pauli4")
    tables = MPSDistribution(tensors, povm)
    monkeypatch.setattr(mps_sampler, "_TABLE_MAX_CHI", 0)
    dense = MPSDistribution(tensors, povm)
    assert tables.tables and not dense.tables
    a = tables.sample(500, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(dense.log_prob(a).numpy(), tables.log_prob(a).numpy(), rtol=1e-11)


def test_bad_outcomes_raise_one_line_errors():
    dist = ghz_mps(5).distribution(get_povm("pauli4"))
    for a, match in [(torch.zeros((2, 4), dtype=torch.long), r"shape \(B, 5\)"),
                     (torch.tensor([[0, 0, 0, 0, 0], [0, 7, 0, 0, 0]]), "0..3 .* row 1"),
                     (torch.zeros((2, 5)), "integer")]:
        with pytest.raises(QtomoError, match=match) as info:
            dist.log_prob(a)
        assert "\n" not in str(info.value)
    with pytest.raises(QtomoError, match="number of records"):
        dist.sample(-1)
    empty = dist.sample(0)
    assert empty.shape == (0, 5)


@pytest.mark.gpu
def test_cuda_sampler_matches_cpu():
    tensors = random_mps(30, chi=8, seed=9)
    povm = get_povm("pauli4")
    cpu, cuda = MPSDistribution(tensors, povm), MPSDistribution(tensors, povm, device="cuda")
    a, log_p = cuda.sample_with_log_prob(5000, torch.Generator("cuda").manual_seed(0))
    assert a.device.type == "cuda"
    np.testing.assert_allclose(log_p.cpu().numpy(), cpu.log_prob(a.cpu()).numpy(), rtol=1e-10)


def _rotated_pauli6(seed: int):
    """pauli6 turned by a random unitary: rank-one elements that differ from qubit to qubit."""
    from qtomo.povm import POVM

    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2)))[0]
    return POVM("rotated", U @ get_povm("pauli6").elements @ U.conj().T)


@pytest.mark.parametrize("kind", ["readout", "rank-one"])
def test_per_qubit_povm_log_prob_and_samples_equal_the_dense_born_rule(kind, monkeypatch):
    """One POVM per qubit: readout errors that differ by qubit (one qubit without, so the rank-one
    refinements differ in length), or rank-one POVMs turned differently on every qubit. ln P of
    the table and dense passes equals Tr(⊗_i M^(i)_{a_i} ρ) built by Kronecker products, and
    2·10^5 samples pass a χ² test against it."""
    from qtomo.povm import PerQubitPOVM
    from qtomo.readout import readout_povms

    L = 4
    povm = (readout_povms([[0.05, 0.1], [0.0, 0.0], [0.2, 0.01], [0.1, 0.3]]) if kind == "readout"
            else PerQubitPOVM(tuple(_rotated_pauli6(seed) for seed in range(L))))
    tensors = random_mps(L, chi=3, seed=7)
    psi = dense_from_mps(tensors)
    records = np.array(list(itertools.product(range(6), repeat=L)))
    truth = np.array([np.vdot(psi, reduce(np.kron, [povm.at(i).elements[k]
                                                     for i, k in enumerate(a)]) @ psi).real
                      for a in records])
    dist = MPSDistribution(tensors, povm)
    assert dist.rank_one == (kind == "rank-one")
    np.testing.assert_allclose(np.exp(dist.log_prob(torch.as_tensor(records)).numpy()), truth,
                               rtol=1e-10, atol=1e-18)
    monkeypatch.setattr(mps_sampler, "_TABLE_MAX_CHI", 0)  # the dense environments agree too
    dense = MPSDistribution(tensors, povm)
    np.testing.assert_allclose(np.exp(dense.log_prob(torch.as_tensor(records)).numpy()), truth,
                               rtol=1e-10, atol=1e-18)
    a, log_p = dist.sample_with_log_prob(200_000, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(log_p.numpy(), np.log(truth[a.numpy() @ 6 ** np.arange(L)[::-1]]),
                               rtol=1e-10)
    counts = np.bincount(a.numpy() @ 6 ** np.arange(L)[::-1], minlength=6**L)
    assert chi_square_pvalue(counts, truth) > 1e-3
