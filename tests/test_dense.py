"""Full-state baselines ``linear`` and ``dense`` against closed forms and against each other."""

import numpy as np
import pytest
import torch

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate
from qtomo.models import build, load_checkpoint
from qtomo.models.dense import maximum_likelihood
from qtomo.povm import enumerate_outcomes, get_povm
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit
from tests.physics import X, Y, Z, dense_born

PAULI6 = get_povm("pauli6")


def single_qubit_records(counts) -> torch.Tensor:
    """Records of one qubit with outcome k (0, 1, +, -, +i, -i) repeated counts[k] times."""
    return torch.tensor(np.repeat(np.arange(6), counts)[:, None])


def bloch(rho: np.ndarray) -> np.ndarray:
    return np.array([np.trace(rho @ P).real for P in (X, Y, Z)])


@pytest.mark.parametrize("counts", [(30, 10, 25, 15, 12, 8), (50, 5, 40, 5, 30, 2)])
def test_single_qubit_closed_forms(counts):
    """pauli6 outcomes ±z, ±x, ±y with counts n: linear inversion r = 3 (n₊ − n₋)/N per axis
    (then SGS: r/|r| if |r| > 1); the MLE r = (n₊ − n₋)/(n₊ + n₋) per axis where |r| ≤ 1."""
    n = np.array(counts, float)
    linear = build("linear", L=1, K=6, povm=PAULI6)
    linear.add_records(single_qubit_records(counts))
    r = 3 * np.array([n[2] - n[3], n[4] - n[5], n[0] - n[1]]) / n.sum()
    r = r / max(1.0, np.linalg.norm(r))
    assert np.allclose(bloch(linear.density_matrix().numpy()), r, atol=1e-12)
    mle = np.array([(n[2] - n[3]) / (n[2] + n[3]), (n[4] - n[5]) / (n[4] + n[5]),
                    (n[0] - n[1]) / (n[0] + n[1])])
    dense = build("dense", L=1, K=6, povm=PAULI6)
    maximum_likelihood(dense, single_qubit_records(counts))
    if np.linalg.norm(mle) <= 1:  # the first case; the second's MLE is on the boundary
        assert np.allclose(bloch(dense.density_matrix().detach().numpy()), mle, atol=1e-5)
    else:
        assert abs(np.linalg.norm(bloch(dense.density_matrix().detach().numpy())) - 1) < 1e-4


def test_product_state_from_exact_frequencies():
    """Records of |0+⟩ in exactly the Born proportions (36 P(a) integer): both recover it."""
    records = enumerate_outcomes(2, 6)
    psi = np.kron([1, 0], [1, 1]) / np.sqrt(2)
    counts = np.rint(36 * dense_born(np.outer(psi, psi), PAULI6.elements, records)).astype(int)
    data = torch.from_numpy(np.repeat(records, counts, axis=0))
    linear = build("linear", L=2, K=6, povm=PAULI6)
    linear.add_records(data)
    assert np.allclose(linear.density_matrix().numpy(), np.outer(psi, psi), atol=1e-12)
    dense = build("dense", L=2, K=6, povm=PAULI6, rank=1)
    maximum_likelihood(dense, data)
    rho = dense.density_matrix().detach().numpy()
    assert psi @ rho @ psi > 1 - 1e-6


@pytest.fixture(scope="module")
def tfim3(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "tfim3.h5"
    return read_dataset(simulate("tfim", 3, samples=20_000, povm="pauli6", out=path, seed=5,
                                 quiet=True))


def test_dense_is_the_maximum_and_beats_linear(tfim3):
    """On the same records: gradient ≈ 0 at the end, ρ ≥ 0 for both, NLL(dense) ≤ NLL(linear),
    and both close to the truth (fidelity within the statistical error of 2·10^4 records)."""
    records = torch.from_numpy(tfim3.outcomes().astype(np.int64))
    dense = build("dense", L=3, K=6, povm=PAULI6)
    result = maximum_likelihood(dense, records)
    assert result.stopped == "converged"
    dense.T.grad = None
    dense.training_nll(records).mean().backward()
    assert dense.T.grad.norm() < 1e-5
    linear = build("linear", L=3, K=6, povm=PAULI6)
    linear.add_records(records)
    psi = tfim3.reference["psi"]
    nll, fidelity = {}, {}
    for name, model in (("dense", dense), ("linear", linear)):
        rho = model.density_matrix().detach().numpy()
        assert np.linalg.eigvalsh(rho)[0] > -1e-12 and abs(np.trace(rho) - 1) < 1e-12
        nll[name] = -model.log_prob(records).mean().item()
        fidelity[name] = (psi.conj() @ rho @ psi).real
    assert nll["dense"] <= nll["linear"] + 1e-9
    assert fidelity["dense"] > 0.97 and fidelity["linear"] > 0.9


def test_fit_save_load_evaluate(tfim3, tmp_path):
    """Through the trainer with the families' defaults; the checkpoint reloads the same ρ and
    evaluate's exact fidelity is ⟨ψ|ρ|ψ⟩."""
    psi = tfim3.reference["psi"]
    for family in ("linear", "dense"):
        options = TrainOptions(**{**build(family, L=3, K=6, povm=PAULI6).train_defaults,
                                  "refine": 200} if family == "dense" else
                               build(family, L=3, K=6, povm=PAULI6).train_defaults)
        result = fit(build(family, L=3, K=6, povm=PAULI6), tfim3, options,
                     out=tmp_path / f"{family}.pt", quiet=True)
        rho = result.model.density_matrix().detach().numpy()
        loaded = load_checkpoint(result.checkpoint).model
        assert np.allclose(loaded.density_matrix().detach().numpy(), rho, atol=1e-12)
        figure = evaluate(load_checkpoint(result.checkpoint), tfim3, blocks=())
        assert abs(figure.fidelity.value - (psi.conj() @ rho @ psi).real) < 1e-8
        assert figure.fidelity.physical


def test_sampling_follows_the_born_rule():
    model = build("dense", L=2, K=4, povm="pauli4", rank=1)
    with torch.no_grad():
        model.T.normal_(generator=torch.Generator().manual_seed(0))
    P = model.log_prob(torch.from_numpy(enumerate_outcomes(2, 4))).exp().detach().numpy()
    draws = model.sample(40_000, generator=torch.Generator().manual_seed(1)).numpy()
    observed = np.bincount(draws[:, 0] * 4 + draws[:, 1], minlength=16) / 40_000
    assert abs(P.sum() - 1) < 1e-12
    assert np.abs(observed - P).max() < 5 * np.sqrt(P.max() / 40_000)


def test_size_limits(tmp_path, capsys):
    with pytest.raises(QtomoError, match="needs L <= 10 and K\\^L <= 2\\^21"):
        build("dense", L=11, K=4, povm="pauli4")
    with pytest.raises(QtomoError, match="at L = 9, K = 6"):
        build("linear", L=9, K=6, povm="pauli6")
    data = simulate("ghz", 11, samples=2000, out=tmp_path / "g.h5", seed=1, quiet=True)
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "dense", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qtomo: error: the dense model") and err.count("\n") == 1
    assert not out.exists()


def test_cached_table_follows_every_change():
    """The no-grad table is rebuilt after an in-place step and after load_state_dict."""
    model = build("dense", L=2, K=4, povm="pauli4")
    records = torch.from_numpy(enumerate_outcomes(2, 4))
    other = build("dense", L=2, K=4, povm="pauli4", rank=0)
    with torch.no_grad():
        before = model.log_prob(records)
        model.T.add_(0.3 * torch.randn(model.T.shape, generator=torch.Generator().manual_seed(2),
                                       dtype=torch.float64))
        after = model.log_prob(records)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, model.log_prob(records).detach(), atol=1e-14)
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert torch.allclose(model.log_prob(records), before, atol=1e-14)


def test_evaluate_sums_exactly_where_the_table_is_too_large_to_enumerate(tmp_path):
    """pauli6 at L = 8: 6^8 records are above the enumeration limit of the networks, but a
    full-state model holds ρ, so evaluate gives ⟨ψ|ρ|ψ⟩ exactly (not Monte Carlo)."""
    path = simulate("ghz", 8, povm="pauli6", samples=200, method="exact",
                    out=tmp_path / "ghz8.h5", quiet=True)
    torch.manual_seed(0)
    model = build("dense", L=8, K=6, povm="pauli6")
    evaluation = evaluate(model, read_dataset(path), blocks=())
    psi = np.zeros(2**8)
    psi[[0, -1]] = 2**-0.5
    rho = model.density_matrix().detach().numpy()
    assert evaluation.fidelity.as_dict()["method"] == "exact"
    assert evaluation.fidelity.value == pytest.approx(float(np.real(psi @ rho @ psi)), abs=1e-10)
