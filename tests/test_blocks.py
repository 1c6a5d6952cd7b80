"""Reduced states of blocks (qtomo.blocks) against dense partial traces, the exact reduced states
of the exact distribution, the spread of independent replicas, and the JSON of ``evaluate``."""

import json

import numpy as np
import pytest
import qutip
import torch

from qtomo.blocks import (
    BlockCounts,
    block_sites,
    reduced_states,
    target_reduced_states,
)
from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate
from qtomo.povm import get_povm
from qtomo.reconstruct import project_to_physical, uhlmann_fidelity
from qtomo.simulate import simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.states.mps import vector_to_mps
from qtomo.states.noise import LocalNoise
from tests.physics import dense_from_mps

L = 6


def dense_partial_trace(psi, block, L):
    """ρ_A by moving the block's qubits to the front of an explicit (2,)*L tensor."""
    rest = [i for i in range(L) if i not in block]
    tensor = np.transpose(psi.reshape((2,) * L), list(block) + rest).reshape(2 ** len(block), -1)
    return tensor @ tensor.conj().T


@pytest.fixture(scope="module")
def target():
    return tfim_ground_state(L, h=0.8)


def test_target_reduced_states_equal_dense_partial_traces():
    rng = np.random.default_rng(0)
    psi = rng.normal(size=2**L) + 1j * rng.normal(size=2**L)
    psi /= np.linalg.norm(psi)
    mps = vector_to_mps(psi, canonical="right")
    assert np.allclose(dense_from_mps(mps), psi)
    blocks = block_sites(L, (1, 2, 3))
    noise = LocalNoise(depolarizing=0.2, amplitude_damping=0.1)
    sources = {"mps": target_reduced_states({"mps": mps}, blocks),
               "psi": target_reduced_states({"psi": psi}, blocks),
               "rho": target_reduced_states({"rho": np.outer(psi, psi.conj())}, blocks)}
    noisy_mps = target_reduced_states({"mps": mps}, blocks, noise)
    noisy_rho = target_reduced_states({"rho": noise.apply(np.outer(psi, psi.conj()))}, blocks)
    for block in blocks:
        dense = dense_partial_trace(psi, block, L)
        for name, states in sources.items():
            assert np.allclose(states[block], dense, atol=1e-12), name
        assert np.allclose(noisy_mps[block], noisy_rho[block], atol=1e-12)
        assert not np.allclose(noisy_mps[block], dense, atol=1e-3)


def test_batched_uhlmann_fidelity_equals_qutip():
    rng = np.random.default_rng(1)

    def random_state(rank):
        a = rng.normal(size=(8, rank)) + 1j * rng.normal(size=(8, rank))
        rho = a @ a.conj().T
        return rho / np.trace(rho)

    sigma = random_state(2)  # rank-deficient target
    rhos = np.stack([random_state(rank) for rank in (1, 3, 8)])
    ours = uhlmann_fidelity(rhos, sigma)
    for rho, value in zip(rhos, ours, strict=True):
        assert abs(value - qutip.fidelity(qutip.Qobj(rho), qutip.Qobj(sigma)) ** 2) < 1e-7


@pytest.mark.parametrize("povm_name", ["pauli4", "tetra"])
def test_exact_tables_give_exact_block_figures(target, povm_name):
    povm = get_povm(povm_name)
    blocks = block_sites(L, (2, 3))
    targets = target_reduced_states(target.references(), blocks)
    truth = reduced_states(blocks, povm, model=target.distribution(povm).probabilities,
                           targets=targets)
    for state in truth:
        assert abs(state.model.fidelity.value - 1) < 1e-7 and state.model.fidelity.stderr == 0
        assert state.model.trace_distance.value < 1e-9
        assert abs(state.model.renyi2.value - state.reference_renyi2) < 1e-9
    # another state's table: the figures are those of its dense reduced states
    other = tfim_ground_state(L, h=1.6)
    model = reduced_states(blocks, povm, model=other.distribution(povm).probabilities,
                           targets=targets)
    for state in model:
        rho = dense_partial_trace(other.psi, state.sites, L)
        sigma = targets[state.sites]
        expected = qutip.fidelity(qutip.Qobj(rho), qutip.Qobj(sigma)) ** 2
        assert abs(state.model.fidelity.value - expected) < 1e-7
        distance = 0.5 * np.abs(np.linalg.eigvalsh(rho - sigma)).sum()
        assert abs(state.model.trace_distance.value - distance) < 1e-9
        assert abs(state.model.renyi2.value + np.log(np.trace(rho @ rho).real)) < 1e-9


def test_estimates_from_exact_samples_within_their_errors(target):
    """Exact samples of the target: the Rényi-2 U-statistic is unbiased (mean of 20 replicas
    within 4 standard errors of the exact value); the bootstrap error of every figure matches the
    spread of independent replicas (ratio in [0.6, 1.6]); the fidelity is biased low by the
    projection, and the bias shrinks with N."""
    povm = get_povm("pauli4")
    truth = target.distribution(povm)
    blocks = [(2, 3), (1, 2, 3)]
    targets = target_reduced_states(target.references(), blocks)
    exact = {state.sites: state for state in reduced_states(blocks, povm, model=truth.probabilities,
                                                            targets=targets)}
    replicas = []
    for seed in range(20):
        records = truth.sample(5000, generator=torch.Generator().manual_seed(seed))
        counts = BlockCounts.from_records([records], blocks, povm.K)
        replicas.append(reduced_states(blocks, povm, model=counts, targets=targets, seed=seed,
                                       replicates=100))
    for index, block in enumerate(blocks):
        figures = [replica[index].model for replica in replicas]
        for name in ("fidelity", "trace_distance", "renyi2"):
            values = np.array([getattr(f, name).value for f in figures])
            bootstrap = np.mean([getattr(f, name).stderr for f in figures])
            assert 0.6 < bootstrap / values.std(ddof=1) < 1.6, (block, name)
        renyi2 = np.array([f.renyi2.value for f in figures])
        assert abs(renyi2.mean() - exact[block].reference_renyi2) < 4 * renyi2.std(
            ddof=1) / np.sqrt(renyi2.size)
        fidelity = np.array([f.fidelity.value for f in figures])
        assert fidelity.max() <= 1 and 1 - fidelity.mean() < 0.25  # measured 0.16 (3 sites)
    many = truth.sample(200_000, generator=torch.Generator().manual_seed(99))
    large = reduced_states(blocks, povm, model=BlockCounts.from_records([many], blocks, povm.K),
                           targets=targets)
    for index, state in enumerate(large):
        small = np.mean([replica[index].model.fidelity.value for replica in replicas])
        assert 1 - state.model.fidelity.value < 1 - small


def test_projection_is_sgs(target):
    """The projected block estimate is the SGS state of the raw dual-frame average."""
    povm = get_povm("pauli6")
    truth = target.distribution(povm)
    records = truth.sample(2000, generator=torch.Generator().manual_seed(5)).numpy()
    block = (1, 2)
    raw = np.zeros((4, 4), dtype=complex)
    for a in records:  # the dual-frame average, one record at a time
        raw += np.kron(povm.duals[a[1]], povm.duals[a[2]])
    raw /= len(records)
    sigma = target_reduced_states(target.references(), [block])[block]
    expected = qutip.fidelity(qutip.Qobj(project_to_physical(raw)), qutip.Qobj(sigma)) ** 2
    state = reduced_states([block], povm, model=BlockCounts.from_records([records], [block], 6),
                           targets={block: sigma})[0]
    assert abs(state.model.fidelity.value - expected) < 1e-7
    assert abs(state.model.min_eigenvalue - np.linalg.eigvalsh(raw)[0]) < 1e-12


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = simulate("tfim", L, h=0.8, samples=5000, seed=4, device="cpu",
                    out=tmp_path_factory.mktemp("blocks") / "tfim.h5", quiet=True)
    return read_dataset(path)


def test_evaluate_reports_reduced_states(dataset, target):
    truth = target.distribution(get_povm("pauli4"))
    keys = {"sites", "fidelity", "trace_distance", "min_eigenvalue", "renyi2", "data",
            "reference_renyi2", "exact_samples", "method", "samples"}
    exact = evaluate(truth, dataset).as_dict()["reduced_states"]
    assert [state["sites"] for state in exact] == [list(b) for b in block_sites(L, (2, 3))]
    for state in exact:
        assert set(state) == keys and state["method"] == "exact"
        assert abs(state["fidelity"]["value"] - 1) < 1e-7 and state["exact_samples"] is None
        assert state["data"]["samples"] == dataset.n_records
    sampled = evaluate(truth, dataset, method="monte-carlo", samples=4000,
                       blocks=(3,)).as_dict()["reduced_states"]
    for state in sampled:
        assert len(state["sites"]) == 3 and state["method"] == "monte-carlo"
        model, truth_side = state["fidelity"], state["exact_samples"]["fidelity"]
        # the truth as the model: model and exact-samples figures agree within their errors
        assert abs(model["value"] - truth_side["value"]) < 4 * np.hypot(model["stderr"],
                                                                         truth_side["stderr"])


def test_mps_reference_gives_the_same_targets(dataset, target):
    blocks = block_sites(L, (2, 3))
    from_psi = target_reduced_states(dataset.reference, blocks)
    from_mps = target_reduced_states({"mps": vector_to_mps(target.psi, canonical="right")}, blocks)
    for block in blocks:
        assert np.allclose(from_psi[block], from_mps[block], atol=1e-12)


def test_bad_block_sizes_are_refused(dataset, target):
    with pytest.raises(QtomoError, match="block size 7 must be an integer in 1..4"):
        evaluate(target.distribution(get_povm("pauli4")), dataset, blocks=(2, 7))


def test_cli_blocks_option(dataset, tmp_path, capsys):
    from tests.test_evaluate_cli import write_checkpoint

    checkpoint = write_checkpoint(tmp_path / "m.pt", dataset, L=L)
    out = tmp_path / "e.json"
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(dataset.path), "--json",
                 str(out), "--blocks", "none", "--quiet", "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["reduced_states"] == []
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(dataset.path),
                 "--blocks", "2,9", "--device", "cpu"]) == 2
    assert "block size '9' must be an integer in 1..4" in capsys.readouterr().err


def test_ensembles_pool_the_block_figures(dataset, target):
    from qtomo.ensemble import evaluate_ensemble

    truths = [tfim_ground_state(L, h=h).distribution(get_povm("pauli4")) for h in (0.8, 1.2)]
    ensemble = evaluate_ensemble(truths, dataset, blocks=(2,))
    separate = [evaluate(truth, dataset, blocks=(2,)) for truth in truths]
    for index, state in enumerate(ensemble.combined().reduced_states):
        values = [member.reduced_states[index].model.fidelity.value for member in separate]
        assert abs(state.model.fidelity.value - np.mean(values)) < 1e-12
        assert abs(state.model.fidelity.stderr - np.std(values, ddof=1)) < 1e-12  # the spread
    entry = ensemble.as_dict()["reduced_states"][0]
    assert {"value", "stderr", "spread"} <= set(entry["fidelity"]) and entry["sites"] == [0, 1]


def test_noisy_mps_dataset_compares_with_the_noisy_reduced_states(tmp_path):
    """A noisy dataset on the MPS path: targets and exact samples are those of the noisy state,
    so the truth as the model agrees with its exact samples, and the data alone too."""
    from qtomo.states.mps import tfim_mps
    from qtomo.states.noise import noisy_state

    noise = LocalNoise(depolarizing=0.3)
    path = simulate("tfim", 12, h=0.8, samples=4000, seed=1, method="mps", depolarizing=0.3,
                    device="cpu", out=tmp_path / "noisy.h5", quiet=True)
    dataset = read_dataset(path)
    truth = noisy_state(tfim_mps(12, h=0.8), noise).distribution(get_povm("pauli4"))
    states = evaluate(truth, dataset, method="monte-carlo", samples=4000, blocks=(2,))
    for state in states.reduced_states:
        model, exact = state.model.fidelity, state.exact_samples.fidelity
        assert abs(model.value - exact.value) < 4 * np.hypot(model.stderr, exact.stderr)
        assert state.data.fidelity.value > 0.9  # noiseless blocks: 0.81-0.86 to the noisy ones
