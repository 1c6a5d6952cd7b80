"""The physical families ``mps`` and ``lpdo`` against dense states, enumeration and χ² tests."""

import math
import re
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import QtomoError
from qtomo.models import build, load_checkpoint
from qtomo.povm import POVM_NAMES, enumerate_outcomes, get_povm
from qtomo.simulate import simulate
from qtomo.states import mps_sampler
from qtomo.states.mps import ghz_mps, pure_state_fidelity, right_canonical
from qtomo.states.mps_sampler import MPSDistribution, born_log_prob
from qtomo.train import TrainOptions, fit
from tests.memory import mps_peak_bytes
from tests.physics import dense_born, dense_from_mps
from tests.test_mps_sampler import random_mps

FAST = dict(epochs=3, batch_size=128, warmup=20)


def randomised(name: str, L: int, povm: str = "pauli4", seed: int = 0, **hp):
    """A model whose tensors are all random (not near the product-state start)."""
    torch.manual_seed(seed)
    model = build(name, L=L, K=get_povm(povm).K, povm=povm, **hp)
    with torch.no_grad():
        for A in model.sites:
            A.normal_()
    return model


def dense_rho(tensors) -> np.ndarray:
    """ρ = Σ_q |X_q⟩⟨X_q| / Tr from MPS (χ, 2, χ) or purification (χ, 2, κ, χ) tensors."""
    tensors = [B.reshape(B.shape[0], 2, -1, B.shape[-1]) for B in tensors]
    X = reduce(lambda psi, B: np.tensordot(psi, B, axes=([-1], [0])), tensors)
    L, kappa = len(tensors), tensors[0].shape[2]  # X axes: 1, s_0, q_0, s_1, q_1, …, 1
    X = X.reshape([2, kappa] * L).transpose(list(range(0, 2 * L, 2)) + list(range(1, 2 * L, 2)))
    X = X.reshape(2**L, -1)  # (2^L, κ^L)
    rho = X @ X.conj().T
    return rho / np.trace(rho).real


@pytest.mark.parametrize("tables", [True, False])
@pytest.mark.parametrize("povm_name", POVM_NAMES)
@pytest.mark.parametrize("name, hp", [("mps", dict(chi=3)), ("mps", dict(chi=3, real=1)),
                                      ("lpdo", dict(chi=3, kraus=2))])
def test_log_prob_is_the_dense_born_rule_of_tensors_and_sums_to_one(povm_name, name, hp, tables,
                                                                     monkeypatch):
    """Both contractions, the superoperator tables and the environments (forced by a zero
    table limit), against the dense Born rule."""
    if not tables:
        monkeypatch.setattr(mps_sampler, "_TABLE_MAX_CHI", 0)
    L = 4
    model = randomised(name, L, povm_name, **hp)
    povm = get_povm(povm_name)
    a = enumerate_outcomes(L, povm.K)  # (K^L, L)
    with torch.no_grad():
        log_q = model.log_prob(torch.from_numpy(a)).numpy()
    truth = dense_born(dense_rho(model.tensors()), povm.elements, a)
    np.testing.assert_allclose(np.exp(log_q), truth, rtol=1e-10, atol=1e-15)
    assert abs(math.fsum(np.exp(log_q)) - 1) < 1e-12


def test_tensors_are_normalised_right_canonical_and_gauge_independent():
    model = randomised("mps", 5, chi=4)
    a = torch.from_numpy(enumerate_outcomes(5, 4))
    tensors = model.tensors()
    assert [B.shape for B in tensors] == [(1, 2, 2), (2, 2, 4), (4, 2, 4), (4, 2, 2), (2, 2, 1)]
    assert all(B.dtype == np.complex128 for B in tensors)
    for B in tensors:
        np.testing.assert_allclose(np.einsum("asb,csb->ac", B, B.conj()), np.eye(B.shape[0]),
                                   atol=1e-12)
    psi = dense_from_mps(tensors)
    with torch.no_grad():
        before = model.log_prob(a)
        rng = np.random.default_rng(1)  # A_i → A_i G_i, A_{i+1} → G_i⁻¹ A_{i+1}, and a scale
        for left, right in zip(model.sites[:-1], model.sites[1:], strict=True):
            chi = left.shape[3]
            G = rng.normal(size=(chi, chi)) + 1j * rng.normal(size=(chi, chi))
            G = torch.from_numpy(G)
            new_left = torch.einsum("asqb,bc->asqc", torch.view_as_complex(left), G)
            new_right = torch.einsum("bc,csqd->bsqd", torch.linalg.inv(G),
                                     torch.view_as_complex(right))
            left.copy_(torch.view_as_real(new_left) * 7.0)
            right.copy_(torch.view_as_real(new_right))
        np.testing.assert_allclose(model.log_prob(a).numpy(), before.numpy(), atol=1e-10)
    overlap = np.vdot(psi, dense_from_mps(model.tensors()))
    assert abs(abs(overlap) - 1) < 1e-10


def test_lpdo_density_matrix_is_positive_with_unit_trace():
    model = randomised("lpdo", 4, chi=3, kraus=3)
    rho = dense_rho(model.tensors())
    eigenvalues = np.linalg.eigvalsh(rho)
    assert eigenvalues.min() > -1e-13 and abs(eigenvalues.sum() - 1) < 1e-12
    assert eigenvalues[-2] > 1e-3  # genuinely mixed
    assert [B.shape for B in model.tensors()][:2] == [(1, 2, 3, 3), (3, 2, 3, 3)]


def test_lpdo_with_one_kraus_channel_is_the_mps_family():
    mps = randomised("mps", 5, chi=3)
    lpdo = build("lpdo", L=5, K=4, povm="pauli4", chi=3, kraus=1)
    lpdo.load_state_dict(mps.state_dict())
    a = mps.sample(200, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(lpdo.log_prob(a), mps.log_prob(a))
    np.testing.assert_array_equal(lpdo.tensors()[2][:, :, 0, :], mps.tensors()[2])


@pytest.mark.parametrize("name, hp, povm", [("mps", dict(chi=2), "pauli4"),
                                            ("lpdo", dict(chi=2, kraus=2), "pauli6")])
def test_samples_follow_log_prob(name, hp, povm):
    """χ² of 3·10^4 samples over all K^3 records against exp(log_prob)."""
    model = randomised(name, 3, povm, seed=3, **hp)
    K = model.K
    a = model.sample(30_000, torch.Generator().manual_seed(5))
    counts = np.bincount((a.numpy() * K ** np.arange(2, -1, -1)).sum(1), minlength=K**3)
    with torch.no_grad():
        p = model.log_prob(torch.from_numpy(enumerate_outcomes(3, K))).exp().numpy()
    statistic = np.sum((counts - counts.sum() * p) ** 2 / (counts.sum() * p))
    assert scipy.stats.chi2.sf(statistic, K**3 - 1) > 1e-3


@pytest.mark.parametrize("tables", [True, False])
def test_gradients_match_finite_differences(tables, monkeypatch):
    if not tables:
        monkeypatch.setattr(mps_sampler, "_TABLE_MAX_CHI", 0)
    model = randomised("lpdo", 3, "tetra", chi=2, kraus=2)
    elements = torch.tensor(get_povm("tetra").elements)
    a = torch.from_numpy(enumerate_outcomes(3, 4))[::5]
    parameters = [A.detach().clone().requires_grad_() for A in model.sites]

    def objective(*sites):
        return born_log_prob([torch.view_as_complex(A) for A in sites], elements, a)

    assert torch.autograd.gradcheck(objective, parameters, eps=1e-6, atol=1e-7)


def test_born_log_prob_agrees_with_the_sampler_fast_paths():
    """Tables (pauli4) and the rank-one pass (pauli6) against the differentiable contraction."""
    tensors = random_mps(12, chi=5, seed=2)
    torch_tensors = [torch.from_numpy(B) for B in tensors]
    for povm_name in ("pauli4", "pauli6"):
        povm = get_povm(povm_name)
        dist = MPSDistribution(tensors, povm)
        a = dist.sample(300, torch.Generator().manual_seed(0))
        np.testing.assert_allclose(
            born_log_prob(torch_tensors, torch.tensor(povm.elements), a).numpy(),
            dist.log_prob(a).numpy(), rtol=1e-11)


def test_born_log_prob_is_finite_at_large_L():
    """GHZ at L = 400 (any normalisation): ln P(0…0) = L ln(1/3) − ln 2 for pauli4."""
    L = 400
    tensors = [torch.from_numpy(5.0 * B) for B in ghz_mps(L).mps]
    elements = torch.tensor(get_povm("pauli4").elements)
    log_p = born_log_prob(tensors, elements, torch.zeros(1, L, dtype=torch.long))
    assert abs(float(log_p[0]) - (L * math.log(1 / 3) - math.log(2))) < 1e-9


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("L, chi, rows", [(50, 8, 16384), (16, 48, 2048)])  # tables, dense
def test_training_bytes_bound_the_measured_peak(L, chi, rows):
    """The estimate a size search compares with the free memory is above the growth of the
    peak resident memory over one forward and backward pass (Linux's VmHWM, reset before the
    pass), and within three times it, on the table path and the dense path."""
    measured = mps_peak_bytes("model.training_nll(a).mean().backward()", L, chi, rows)
    estimate = build("mps", L=L, K=4, povm="pauli4", chi=chi, real=1).training_bytes(rows)
    assert measured < estimate < 3 * measured


@pytest.mark.parametrize("kraus", [None, 2])
def test_pure_state_fidelity_equals_dense(kraus):
    target = random_mps(6, chi=3, seed=7)
    hp = dict(chi=3) if kraus is None else dict(chi=3, kraus=kraus)
    model = randomised("mps" if kraus is None else "lpdo", 6, **hp)
    psi = dense_from_mps(target)
    expected = np.vdot(psi, dense_rho(model.tensors()) @ psi).real
    scaled = [3.0 * B for B in model.tensors()]  # any norm
    assert abs(pure_state_fidelity(target, scaled) - expected) < 1e-12
    assert abs(pure_state_fidelity(target, target) - 1) < 1e-12
    with pytest.raises(QtomoError, match="L = 5 tensors; the state has L = 6"):
        pure_state_fidelity(target[:5], model.tensors())


def test_right_canonical_keeps_the_state():
    tensors = [2.0 * B for B in random_mps(5, chi=3, seed=1)]
    psi = dense_from_mps(tensors)
    canonical = right_canonical(tensors)
    np.testing.assert_allclose(dense_from_mps(canonical) * np.linalg.norm(psi), psi, atol=1e-12)


def test_after_step_rescales_without_changing_q():
    model = randomised("mps", 4, chi=2)
    a = torch.from_numpy(enumerate_outcomes(4, 4))[:50]
    with torch.no_grad():
        before = model.log_prob(a)
        model.after_step()
        assert all(abs(float(A.norm()) - 1) < 1e-12 for A in model.sites)
        np.testing.assert_allclose(model.log_prob(a).numpy(), before.numpy(), atol=1e-12)


@pytest.fixture(scope="module")
def ghz4(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ghz4.h5"
    return read_dataset(simulate("ghz", 4, povm="pauli6", samples=4_000, out=path, seed=1,
                                 quiet=True))


def test_checkpoint_round_trip_and_resume(ghz4, tmp_path, interrupt_after):
    def train(out):
        torch.manual_seed(0)
        model = build("lpdo", L=4, K=6, povm=ghz4.povm, chi=2, kraus=2)
        return fit(model, ghz4, TrainOptions(**dict(FAST, epochs=4)), out=out, device="cpu",
                   quiet=True)

    whole = train(tmp_path / "whole.pt")
    loaded = load_checkpoint(whole.checkpoint).model
    a = whole.model.sample(100, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(a), whole.model.log_prob(a))
    assert loaded.povm == ghz4.povm
    for mine, theirs in zip(loaded.tensors(), whole.model.tensors(), strict=True):
        np.testing.assert_array_equal(mine, theirs)

    with interrupt_after(2), pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut.pt")
    torch.manual_seed(99)
    resumed = fit(build("lpdo", L=4, K=6, povm="pauli6", chi=2, kraus=2), ghz4,
                  TrainOptions(**dict(FAST, epochs=4)), out=tmp_path / "cut.pt",
                  resume=tmp_path / "cut.pt", device="cpu", quiet=True)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])


def test_learns_ghz_coherence(ghz4, tmp_path):
    torch.manual_seed(0)
    model = build("mps", L=4, K=6, povm=ghz4.povm, chi=2)
    result = fit(model, ghz4, TrainOptions(epochs=15, batch_size=256, lr=1e-2), out=tmp_path /
                 "m.pt", device="cpu", quiet=True)
    assert pure_state_fidelity(ghz_mps(4).mps, result.model.tensors()) > 0.97


def test_bad_input(ghz4, tmp_path):
    with pytest.raises(QtomoError, match="mps hyperparameter chi must be an integer in 1..1024"):
        build("mps", L=4, K=4, povm="pauli4", chi=0)
    with pytest.raises(QtomoError, match="lpdo hyperparameter kraus must be an integer in 1..64"):
        build("lpdo", L=4, K=4, povm="pauli4", kraus=0)
    with pytest.raises(QtomoError, match="needs the POVM"):
        build("mps", L=4, K=4)
    with pytest.raises(QtomoError, match="K = 6 outcomes; the model was asked for K = 4"):
        build("mps", L=4, K=4, povm="pauli6")
    with pytest.raises(QtomoError, match="unknown hyperparameter 'hidden' for model 'mps'"):
        build("mps", L=4, K=4, povm="pauli4", hidden=3)
    tetra = build("mps", L=4, K=6, povm="pauli6")
    tetra.povm = get_povm("tetra")  # a model of another POVM with the same L, K
    with pytest.raises(QtomoError, match=re.escape("measured with POVM('pauli6', K=6)")):
        fit(tetra, ghz4, TrainOptions(**FAST), out=tmp_path / "m.pt", quiet=True)
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "mps", "--chi", "0"], "mps hyperparameter chi must be an integer in 1..1024"),
    (["--model", "lpdo", "--kraus", "0"], "lpdo hyperparameter kraus must be an integer"),
    (["--model", "gru", "--chi", "4"], "unknown hyperparameter 'chi' for model 'gru'"),
    (["--model", "mps", "--hidden", "4"], "unknown hyperparameter 'hidden' for model 'mps'"),
])
def test_cli_bad_input_is_one_line_exit_2(ghz4, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--quiet", "--data", str(ghz4.path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qtomo: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_cli_fits_mps(ghz4, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--quiet", "--data", str(ghz4.path), "--model", "mps", "--chi", "2",
                 "--epochs", "2", "--device", "cpu", "--out", "m.pt"]) == 0
    checkpoint = load_checkpoint("m.pt")
    assert checkpoint.config["hyperparameters"] == {"chi": 2, "real": 0, "positive": 0}
    assert [B.shape for B in checkpoint.model.tensors()][:2] == [(1, 2, 2), (2, 2, 2)]


@pytest.mark.slow
def test_recovers_a_random_chi2_state_from_1e5_records(tmp_path):
    """Records of a random complex χ = 2 MPS (L = 6, pauli4); fidelity of the fit ≥ 0.999."""
    L, povm = 6, get_povm("pauli4")
    target = random_mps(L, chi=2, seed=11)
    a, log_p = MPSDistribution(target, povm).sample_with_log_prob(
        100_000, torch.Generator().manual_seed(0))
    path = write_dataset(tmp_path / "d.h5", povm=povm, attrs={"state": "random", "L": L,
                         "seed": 0, "method": "mps"}, n_records=a.shape[0],
                         chunks=[(a.numpy().astype(np.uint8), log_p.numpy())],
                         reference={"mps": target})
    dataset = read_dataset(path)
    torch.manual_seed(0)
    model = build("mps", L=L, K=4, povm=povm, chi=2)
    # at 10^5 records the last digits come from the decaying learning rate, not early stopping
    options = TrainOptions(**{**model.train_defaults, "epochs": 15, "patience": 0})
    result = fit(model, dataset, options, out=tmp_path / "m.pt", device="cpu", quiet=True)
    assert pure_state_fidelity(target, result.model.tensors()) >= 0.999


def test_cli_fits_mps_on_fewer_records_than_its_default_batch(tmp_path):
    """The family's default batch (1024) is cut to an eighth of the training rows of a small
    file, so that an epoch still makes several optimizer steps."""
    data = simulate("ghz", 3, povm="pauli6", samples=600, seed=0, device="cpu",
                    out=tmp_path / "small.h5", quiet=True)
    status = main(["fit", "--model", "mps", "--chi", "2", "--data", str(data), "--epochs", "1",
                   "--out", str(tmp_path / "m.pt"), "--quiet", "--device", "cpu"])
    assert status == 0
    options = load_checkpoint(tmp_path / "m.pt").config["training"]["options"]
    assert options["batch_size"] == 67  # 600 records, the last 60 held out: 540 // 8


@pytest.fixture(scope="module")
def plus_i(tmp_path_factory):
    """|+i⟩^⊗4 measured with pauli4: complex amplitudes that no real MPS can give (⟨Y_i⟩ = 1)."""
    return simulate("product", 4, product_state="+i", povm="pauli4", samples=4000, seed=2,
                    out=tmp_path_factory.mktemp("plus_i") / "p.h5", quiet=True)


def test_selection_keeps_the_lowest_validation_nll_and_makes_out_an_ordinary_run(plus_i,
                                                                                  tmp_path):
    from qtomo.train import fit_selection, run_paths

    dataset = read_dataset(plus_i)
    options = TrainOptions(epochs=10, batch_size=256, lr=3e-2, warmup=10, seed=0)
    selection = fit_selection("mps", dataset, {"real": [1, 0]}, options,
                              out=tmp_path / "s.pt", hyperparameters={"chi": 1}, device="cpu",
                              quiet=True)
    nll = {values["real"]: value for values, _, value in selection.candidates}
    assert selection.hyperparameters == {"real": 0} and nll[0] < nll[1] - 0.1  # real: ⟨Y⟩ = 0
    kept = load_checkpoint(tmp_path / "s.pt")
    assert kept.config["hyperparameters"] == {"chi": 1, "real": 0, "positive": 0}
    assert kept.config["training"]["best_val_nll"] == pytest.approx(nll[0])
    for candidate, copy in zip(run_paths(tmp_path / "s.real-0.pt"), run_paths(tmp_path / "s.pt"),
                               strict=True):
        assert candidate.read_bytes() == copy.read_bytes()
    plus = np.array([1, 1j]).reshape(1, 2, 1) / np.sqrt(2)
    assert pure_state_fidelity([plus] * 4, kept.model.tensors()) > 0.99
    assert selection.best.checkpoint == tmp_path / "s.pt"


def test_fit_cli_selects_real_for_physical_families_unless_given(plus_i, tmp_path, capsys):
    assert main(["fit", "--data", str(plus_i), "--model", "mps", "--chi", "1", "--epochs", "3",
                 "--out", str(tmp_path / "auto.pt"), "--device", "cpu"]) == 0
    # real tensors are started again from seed 1 before the complex ones are kept
    printed = capsys.readouterr().out
    assert "kept real = 0, seed 0 (real = 0, seed 0 gained " in printed
    assert "over real = 1, seed 1, more than 1.5 standard errors)" in printed
    assert all((tmp_path / f"auto.{name}.pt").exists()
               for name in ("real-1", "real-0", "real-1_seed-1"))
    assert main(["fit", "--data", str(plus_i), "--model", "mps", "--chi", "1", "--real", "0",
                 "--epochs", "1", "--out", str(tmp_path / "given.pt"), "--quiet"]) == 0
    assert sorted(path.name for path in tmp_path.glob("given*")) == [
        "given.history.json", "given.last.pt", "given.pt"]  # one value: no selection
    assert main(["fit", "--data", str(plus_i), "--model", "mps", "--chi", "1,2", "--ensemble",
                 "2", "--quiet"]) == 2
    assert "several values of --chi select one model" in capsys.readouterr().err


def test_restarts_keep_the_seed_with_the_lowest_validation_nll(plus_i, tmp_path, capsys):
    from qtomo.train import fit_selection

    options = TrainOptions(epochs=2, batch_size=256, lr=3e-2, warmup=10, seed=5)
    selection = fit_selection("mps", read_dataset(plus_i), {}, options, restarts=3,
                              out=tmp_path / "r.pt", hyperparameters={"chi": 1, "real": 0},
                              device="cpu", quiet=True)
    seeds = [seed for _, seed, _ in selection.candidates]
    nll = [value for _, _, value in selection.candidates]
    assert seeds == [5, 6, 7] and selection.seed == seeds[int(np.argmin(nll))]
    assert load_checkpoint(tmp_path / "r.pt").config["training"]["options"]["seed"] == \
        selection.seed
    assert sorted(path.name for path in tmp_path.glob("r.seed-?.pt")) == [
        "r.seed-5.pt", "r.seed-6.pt", "r.seed-7.pt"]
    with pytest.raises(QtomoError, match="several values of a hyperparameter or several "
                                         "restarts"):
        fit_selection("mps", read_dataset(plus_i), {}, options, out=None, quiet=True)
    assert main(["fit", "--data", str(plus_i), "--model", "mps", "--restarts", "2", "--resume",
                 str(tmp_path / "r.pt"), "--quiet"]) == 2
    assert "--restarts select one model by validation NLL" in capsys.readouterr().err
