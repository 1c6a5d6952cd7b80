"""Local noise channels: closed forms, the dense path against Kraus sums written out here, the MPS
path against the dense path, references of the noisy state, and bad input."""

from functools import reduce

import h5py
import numpy as np
import pytest
import torch
from scipy import stats

from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.povm import get_povm
from qtomo.simulate import simulate
from qtomo.states.exact import ExactState
from qtomo.states.hamiltonians import TFIM
from qtomo.states.mps import MPSState
from qtomo.states.noise import LocalNoise, NoisyMPSState, noisy_reduced_state, noisy_state

from .physics import I2, X, Y, Z, dense_born, dense_from_mps, dense_tfim, site_operator

CHANNELS = [
    {"depolarizing": 0.3},
    {"dephasing": 0.2},
    {"amplitude_damping": 0.4},
    {"depolarizing": 0.1, "dephasing": 0.15, "amplitude_damping": 0.25},
]


def kraus_sums(depolarizing=0.0, dephasing=0.0, amplitude_damping=0.0):
    """The three Kraus sets in the order they act: amplitude damping, dephasing, depolarizing."""
    g, q, p = amplitude_damping, dephasing, depolarizing
    return [
        [np.array([[1, 0], [0, np.sqrt(1 - g)]]), np.array([[0, np.sqrt(g)], [0, 0]])],
        [np.sqrt(1 - q) * I2, np.sqrt(q) * Z],
        [np.sqrt(1 - 3 * p / 4) * I2, *(np.sqrt(p / 4) * P for P in (X, Y, Z))],
    ]


def dense_channel(rho, L, **channel):
    """Every Kraus set applied to every qubit as a sum over full 2^L × 2^L Kronecker operators."""
    for site in range(L):
        for kraus in kraus_sums(**channel):
            ops = [site_operator(K, site, L) for K in kraus]
            rho = sum(op @ rho @ op.conj().T for op in ops)
    return rho


def random_mps(L, chi, seed):
    """A random complex right-canonical MPS (χ ≤ chi), by right-to-left LQ sweeps."""
    rng = np.random.default_rng(seed)
    dims = [1] + [min(chi, 2 ** min(i, L - i)) for i in range(1, L)] + [1]
    tensors = [rng.normal(size=(dims[i], 2, dims[i + 1]))
               + 1j * rng.normal(size=(dims[i], 2, dims[i + 1])) for i in range(L)]
    for i in range(L - 1, 0, -1):
        chi_l, _, chi_r = tensors[i].shape
        Q, R = np.linalg.qr(tensors[i].reshape(chi_l, 2 * chi_r).conj().T)  # M = R† Q†
        tensors[i] = Q.conj().T.reshape(-1, 2, chi_r)
        tensors[i - 1] = np.einsum("asb,bc->asc", tensors[i - 1], R.conj().T)
    tensors[0] /= np.linalg.norm(tensors[0])
    return tensors


def dense_expectation(rho, ops, L):
    return np.trace(reduce(np.kron, [ops.get(i, I2) for i in range(L)]) @ rho).real


# -- the channel on one qubit ------------------------------------------------------------------

@pytest.mark.parametrize("channel", CHANNELS)
def test_single_qubit_channel_closed_forms_and_adjoint(channel):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
    rho = A @ A.conj().T
    rho /= np.trace(rho)
    g = channel.get("amplitude_damping", 0.0)
    q = channel.get("dephasing", 0.0)
    p = channel.get("depolarizing", 0.0)
    # closed forms, composed in the documented order A_γ, then Φ_q, then D_p
    damped = np.array([[rho[0, 0] + g * rho[1, 1], np.sqrt(1 - g) * rho[0, 1]],
                       [np.sqrt(1 - g) * rho[1, 0], (1 - g) * rho[1, 1]]])
    dephased = damped * np.array([[1, 1 - 2 * q], [1 - 2 * q, 1]])
    expected = (1 - p) * dephased + p * np.trace(dephased) * I2 / 2
    noise = LocalNoise(**channel)
    assert np.allclose(noise.apply(rho), expected, atol=1e-14)
    assert np.allclose(np.einsum("kst,ksu->tu", noise.kraus.conj(), noise.kraus), I2, atol=1e-14)
    O = rng.normal(size=(2, 2)) + 1j * rng.normal(size=(2, 2))
    assert np.trace(noise.apply(rho) @ O) == pytest.approx(np.trace(rho @ noise.adjoint(O)),
                                                           abs=1e-14)


def test_heisenberg_povm_is_a_povm_and_identity_channel_keeps_it():
    povm = get_povm("pauli4")
    for channel in CHANNELS:
        elements = LocalNoise(**channel).heisenberg_povm(povm).elements
        assert np.allclose(elements.sum(0), I2, atol=1e-14)
        assert min(np.linalg.eigvalsh(e).min() for e in elements) > -1e-14
    assert np.array_equal(LocalNoise().heisenberg_povm(povm).elements, povm.elements)
    uniform = LocalNoise(depolarizing=1.0).heisenberg_povm(get_povm("pauli6"))  # not IC
    assert np.allclose(uniform.elements, np.eye(2) / 6)


# -- exact path --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def noisy_tfim4(tmp_path_factory):
    channel = CHANNELS[3]
    path = tmp_path_factory.mktemp("noise") / "tfim4.h5"
    simulate("tfim", 4, h=0.7, povm="pauli6", samples=20_000, out=path, quiet=True, **channel)
    return path, channel


def test_exact_path_matches_kraus_sums_written_out(noisy_tfim4):
    path, channel = noisy_tfim4
    L = 4
    H = dense_tfim(L, 1.0, 0.7)
    psi = np.linalg.eigh(H)[1][:, 0]
    rho = dense_channel(np.outer(psi, psi.conj()), L, **channel)
    dataset = read_dataset(path)
    assert dataset.attrs["method"] == "exact" and "psi" not in dataset.reference
    assert {name: dataset.attrs[name] for name in channel} == channel
    ref = dataset.reference
    assert np.allclose(ref["rho"], rho, atol=1e-12)  # ψ is fixed up to a phase: ρ is not
    records = dataset.outcomes(0, 500)
    dense = dense_born(rho, dataset.povm.elements, records)
    assert np.allclose(dataset.log_prob(0, 500), np.log(dense), atol=1e-10, rtol=0)
    assert float(ref["purity"]) == pytest.approx(np.trace(rho @ rho).real, abs=1e-12)
    assert float(ref["energy"]) == pytest.approx(np.trace(H @ rho).real, abs=1e-12)
    for i in range(L):
        assert ref["X"][i] == pytest.approx(dense_expectation(rho, {i: X}, L), abs=1e-12)
        assert ref["Z"][i] == pytest.approx(dense_expectation(rho, {i: Z}, L), abs=1e-12)
        for j in range(L):
            if i != j:
                for name, P in (("XX", X), ("ZZ", Z)):
                    assert ref[name][i, j] == pytest.approx(
                        dense_expectation(rho, {i: P, j: P}, L), abs=1e-12)
    assert np.allclose(np.diagonal(ref["ZZ"]), 1) and np.allclose(np.diagonal(ref["XX"]), 1)


def test_exact_path_record_frequencies_follow_noisy_born_rule(noisy_tfim4):
    path, channel = noisy_tfim4
    dataset = read_dataset(path)
    probabilities = np.exp(dataset.log_prob())
    # χ² of the single-site-0 and two-site (1, 3) marginals against the stored ρ's Born rule
    from qtomo.povm import born_probabilities

    P = born_probabilities(dataset.reference["rho"], dataset.povm).reshape((6,) * 4)
    records = dataset.outcomes()
    assert np.all(probabilities > 0)
    for sites in ((0,), (1, 3)):
        other = tuple(axis for axis in range(4) if axis not in sites)
        expected = P.sum(axis=other).reshape(-1) * len(records)
        index = np.ravel_multi_index(records[:, list(sites)].T, (6,) * len(sites))
        observed = np.bincount(index, minlength=expected.size)
        assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_amplitude_damping_fixed_point(tmp_path):
    exact = read_dataset(simulate("tfim", 5, samples=200, amplitude_damping=1.0,
                                  out=tmp_path / "e.h5", quiet=True))
    zero = np.zeros(32)
    zero[0] = 1
    assert np.allclose(exact.reference["rho"], np.outer(zero, zero), atol=1e-14)
    assert float(exact.reference["purity"]) == pytest.approx(1, abs=1e-14)
    large = read_dataset(simulate("ghz", 30, povm="tetra", samples=2000, amplitude_damping=1.0,
                                  out=tmp_path / "m.h5", quiet=True))
    p0 = get_povm("tetra").elements[:, 0, 0].real  # Tr(M_k |0⟩⟨0|)
    records = large.outcomes()
    assert np.allclose(large.log_prob(), np.log(p0[records]).sum(1), atol=1e-10, rtol=0)
    assert np.allclose(large.reference["Z"], 1) and np.allclose(large.reference["ZZ"], 1)
    assert np.allclose(large.reference["X"], 0, atol=1e-14)


@pytest.mark.parametrize("method, L", [("exact", 4), ("mps", 14)])
def test_zero_noise_reproduces_the_pure_file(tmp_path, method, L):
    files = []
    for name, channel in (("pure", {}), ("zero", {"depolarizing": 0.0, "dephasing": 0.0})):
        files.append(simulate("tfim", L, povm="pauli6", samples=3000, method=method, seed=7,
                              out=tmp_path / f"{name}.h5", quiet=True, **channel))

    def contents(path):
        items = {}
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, item: items.__setitem__(name, item[()])
                            if isinstance(item, h5py.Dataset) else None)
            return dict(file.attrs), items

    (pure_attrs, pure), (zero_attrs, zero) = map(contents, files)
    assert pure_attrs == zero_attrs and sorted(pure) == sorted(zero)
    for name in pure:
        assert np.array_equal(pure[name], zero[name]), name


# -- MPS path ----------------------------------------------------------------------------------

@pytest.mark.parametrize("povm", ["pauli4", "pauli6", "tetra"])
@pytest.mark.parametrize("channel", CHANNELS)
def test_mps_log_prob_matches_dense_path(povm, channel):
    L = 7
    tensors = random_mps(L, 4, seed=3)
    psi = dense_from_mps(tensors)
    noise = LocalNoise(**channel)
    mps_dist = noisy_state(MPSState(tensors), noise).distribution(get_povm(povm))
    exact_dist = noisy_state(ExactState(psi), noise).distribution(get_povm(povm))
    a, log_p = mps_dist.sample_with_log_prob(400, torch.Generator().manual_seed(0))
    assert torch.allclose(log_p, exact_dist.log_prob(a), atol=1e-10, rtol=0)
    assert torch.allclose(mps_dist.log_prob(a), log_p, atol=1e-12, rtol=0)


def test_mps_log_prob_matches_dense_path_at_L10():
    L, noise = 10, LocalNoise(**CHANNELS[3])
    tensors = random_mps(L, 8, seed=5)
    mps_dist = NoisyMPSState(MPSState(tensors), noise).distribution(get_povm("tetra"))
    exact_dist = noisy_state(ExactState(dense_from_mps(tensors)), noise).distribution(
        get_povm("tetra"))
    a, log_p = mps_dist.sample_with_log_prob(2000, torch.Generator().manual_seed(2))
    assert torch.allclose(log_p, exact_dist.log_prob(a), atol=1e-10, rtol=0)


@pytest.mark.slow
def test_mps_log_prob_matches_dense_born_at_L10():
    L, channel = 10, CHANNELS[3]
    tensors = random_mps(L, 8, seed=5)
    psi = dense_from_mps(tensors)
    rho = dense_channel(np.outer(psi, psi.conj()), L, **channel)
    povm = get_povm("pauli4")
    dist = NoisyMPSState(MPSState(tensors), LocalNoise(**channel)).distribution(povm)
    a, log_p = dist.sample_with_log_prob(60, torch.Generator().manual_seed(2))
    dense = dense_born(rho, povm.elements, a.numpy())
    assert np.allclose(log_p.numpy(), np.log(dense), atol=1e-10, rtol=0)


def _two_site_reduced(tensors, i, j):
    """ρ_ij from an MPS by an explicit left-to-right loop (independent of qtomo)."""
    env = np.ones((1, 1), dtype=complex)
    for site in range(i):
        B = tensors[site]
        env = sum(B[:, s, :].conj().T @ env @ B[:, s, :] for s in range(2))
    rho = np.zeros((2, 2, 2, 2), dtype=complex)  # (ket_i, ket_j, bra_i, bra_j)
    for t in range(2):
        for s in range(2):
            middle = tensors[i][:, s, :].conj().T @ env @ tensors[i][:, t, :]
            for site in range(i + 1, j):
                B = tensors[site]
                middle = sum(B[:, r, :].conj().T @ middle @ B[:, r, :] for r in range(2))
            for u in range(2):
                for v in range(2):
                    block = tensors[j][:, v, :].conj().T @ middle @ tensors[j][:, u, :]
                    rho[t, u, s, v] = np.trace(block)
    return rho.reshape(4, 4)


def test_mps_two_site_marginals_at_L30_follow_dense_reduced_states():
    L, channel = 30, CHANNELS[3]
    tensors = random_mps(L, 6, seed=11)
    povm = get_povm("pauli4")
    dist = NoisyMPSState(MPSState(tensors), LocalNoise(**channel)).distribution(povm)
    records = dist.sample(30_000, torch.Generator().manual_seed(4)).numpy()
    for i, j in ((0, 1), (4, 21), (28, 29)):
        rho = dense_channel(_two_site_reduced(tensors, i, j), 2, **channel)
        assert np.allclose(noisy_reduced_state(tensors, [i, j], LocalNoise(**channel)), rho,
                           atol=1e-12)
        pairs = np.array([[a, b] for a in range(4) for b in range(4)])
        expected = dense_born(rho, povm.elements, pairs) * len(records)
        observed = np.bincount(records[:, i] * 4 + records[:, j], minlength=16)
        assert stats.chisquare(observed, expected).pvalue > 1e-3, (i, j)


def test_noisy_mps_references_match_dense_values():
    L, channel = 7, CHANNELS[3]
    tensors = random_mps(L, 4, seed=8)
    psi = dense_from_mps(tensors)
    rho = dense_channel(np.outer(psi, psi.conj()), L, **channel)
    ref = NoisyMPSState(MPSState(tensors, hamiltonian=TFIM(L, 0.9, 1.3)),
                        LocalNoise(**channel)).references()
    assert float(ref["energy"]) == pytest.approx(np.trace(dense_tfim(L, 0.9, 1.3) @ rho).real,
                                                 abs=1e-12)
    for i in range(L):
        assert ref["X"][i] == pytest.approx(dense_expectation(rho, {i: X}, L), abs=1e-12)
        assert ref["Z"][i] == pytest.approx(dense_expectation(rho, {i: Z}, L), abs=1e-12)
        for j in range(i + 1, L):
            assert ref["ZZ"][i, j] == pytest.approx(dense_expectation(rho, {i: Z, j: Z}, L),
                                                    abs=1e-12)
            assert ref["XX"][j, i] == pytest.approx(dense_expectation(rho, {i: X, j: X}, L),
                                                    abs=1e-12)
    assert float(ref["purity"]) == pytest.approx(np.trace(rho @ rho).real, abs=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(ref["mps"], tensors, strict=True))


def test_noisy_reduced_state_of_three_sites_matches_dense_partial_trace():
    L, channel = 6, CHANNELS[2]
    tensors = random_mps(L, 4, seed=9)
    psi = dense_from_mps(tensors)
    rho = dense_channel(np.outer(psi, psi.conj()), L, **channel).reshape((2,) * (2 * L))
    sites = [1, 2, 4]
    rest = [k for k in range(L) if k not in sites]
    reduced = np.einsum(rho, list(range(L)) + [L + k if k in sites else k for k in range(L)],
                        sites + [L + k for k in sites]).reshape(8, 8)
    assert np.allclose(noisy_reduced_state(tensors, [4, 1, 2], LocalNoise(**channel)), reduced,
                       atol=1e-12)
    assert rest == [0, 3, 5]


def test_mps_file_keeps_the_noiseless_state_and_the_channel(tmp_path):
    path = simulate("tfim", 16, samples=500, depolarizing=0.05, out=tmp_path / "t.h5",
                    quiet=True)
    dataset = read_dataset(path)
    assert dataset.attrs["method"] == "mps" and dataset.noise == LocalNoise(depolarizing=0.05)
    mps = dataset.reference["mps"]
    pure = MPSState(mps)
    # the stored tensors are the noiseless ground state: ⟨Π X⟩ = 1; the references are noisy
    assert pure.expectation(dict.fromkeys(range(16), "X")) == pytest.approx(1, abs=1e-6)
    assert dataset.reference["X"] == pytest.approx(0.95 * pure.references()["X"], abs=1e-12)
    assert "entropy" not in dataset.reference


# -- bad input ---------------------------------------------------------------------------------

def test_reader_rejects_a_bad_channel_attribute(noisy_tfim4, tmp_path):
    path, _ = noisy_tfim4
    copy = tmp_path / "bad.h5"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "r+") as file:
        file.attrs["dephasing"] = 2.0
    with pytest.raises(QtomoError, match="dephasing must be a probability in"):
        read_dataset(copy)


# -- evaluation against the mixed target -------------------------------------------------------

@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the pure model's KL is inf
def test_evaluate_truth_against_noisy_exact_file(tmp_path):
    from qtomo.evaluate import evaluate

    channel = {"depolarizing": 0.2, "amplitude_damping": 0.1}
    dataset = read_dataset(simulate("ghz", 3, povm="pauli6", samples=3000, out=tmp_path / "g.h5",
                                    quiet=True, **channel))
    sigma = dataset.reference["rho"]
    truth = noisy_state(ExactState(dense_from_mps(
        dataset.reference["mps"])), LocalNoise(**channel)).distribution(dataset.povm)
    report = evaluate(truth, dataset, pauli_strings=["X0 Y1 Y2"]).as_dict()
    fidelity = report["quantum_fidelity"]
    assert fidelity["target"] == "mixed" and fidelity["physical"]
    assert fidelity["value"] == pytest.approx(1, abs=1e-6)
    for name in ("X", "Z", "XX", "ZZ"):
        entry = report["observables"][name]
        assert np.allclose(entry["model"]["value"], entry["reference"], atol=1e-10), name
    string = report["observables"]["strings"]["X0 Y1 Y2"]
    assert string["reference"] == pytest.approx(dense_expectation(sigma, {0: X, 1: Y, 2: Y}, 3),
                                                abs=1e-12)
    assert string["model"]["value"] == pytest.approx(string["reference"], abs=1e-10)
    assert report["data"]["depolarizing"] == 0.2
    # the noiseless GHZ state as the model: F(|ψ⟩⟨ψ|, σ) = ⟨ψ|σ|ψ⟩, not 1
    pure = evaluate(ExactState(dense_from_mps(dataset.reference["mps"])).distribution(
        dataset.povm), dataset).as_dict()["quantum_fidelity"]
    psi = dense_from_mps(dataset.reference["mps"])
    assert pure["value"] == pytest.approx(np.vdot(psi, sigma @ psi).real, abs=1e-6)
    assert pure["value"] < 0.8
    from qtomo.ensemble import evaluate_ensemble
    from qtomo.report import format_ensemble_report

    ensemble = evaluate_ensemble([truth, truth], dataset)
    assert ensemble.combined().fidelity.target == "mixed"
    assert "quantum fidelity F(rho, sigma), mixed target" in format_ensemble_report(ensemble)


def test_evaluate_noisy_mps_file_small_and_large_L(tmp_path):
    from qtomo.evaluate import evaluate

    noise = LocalNoise(dephasing=0.1)
    small = read_dataset(simulate("tfim", 5, samples=2000, method="mps", dephasing=0.1,
                                  out=tmp_path / "s.h5", quiet=True))
    truth = NoisyMPSState(MPSState(small.reference["mps"]), noise).distribution(small.povm)
    report = evaluate(truth, small).as_dict()
    assert report["quantum_fidelity"]["target"] == "mixed"
    assert report["quantum_fidelity"]["value"] == pytest.approx(1, abs=1e-6)
    assert abs(report["kl"]["value"]) < 1e-10
    large = read_dataset(simulate("ghz", 12, samples=2000, dephasing=0.1, out=tmp_path / "l.h5",
                                  quiet=True))
    truth = NoisyMPSState(MPSState(large.reference["mps"]), noise).distribution(large.povm)
    evaluation = evaluate(truth, large, samples=2000)
    assert evaluation.fidelity is None
    assert any("mixed" in note for note in evaluation.warnings)
    zz = evaluation.as_dict()["observables"]["ZZ"]  # dephasing leaves GHZ's Z_iZ_j = 1
    assert np.allclose(zz["reference"], 1.0)
    deviation = np.abs(np.asarray(zz["model"]["value"]) - 1.0)
    assert np.all(deviation <= 4 * np.asarray(zz["model"]["stderr"]) + 1e-12)  # Monte Carlo


def test_info_names_the_channel_and_the_purity(noisy_tfim4, capsys):
    from qtomo.cli import main

    path, _ = noisy_tfim4
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("noise     amplitude_damping 0.25, dephasing 0.15, depolarizing 0.1 on every qubit"
            in out)
    assert "purity    Tr ρ² = " in out
