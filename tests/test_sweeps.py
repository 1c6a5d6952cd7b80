"""Local maximum-likelihood sweeps (qtomo/sweeps.py): they reach the maximum of the likelihood
(the training NLL of a full-batch L-BFGS fit started at the true state, and a vanishing gradient
of the whole chain), for real, complex and purified tensors; the trainer runs them, refuses them
where they cannot run, and records them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.heldout import HeldOut
from qtomo.models import build, load_checkpoint
from qtomo.recipe import fit_recipe
from qtomo.reconstruct import Reconstruction
from qtomo.refine import refine
from qtomo.simulate import simulate
from qtomo.states.mps import (
    pure_state_fidelity,
    state_density_matrix,
    truncated,
    vector_to_mps,
)
from qtomo.sweeps import (
    PATIENCE,
    _Chain,
    _environments_ahead,
    _gram,
    _GroupedNLL,
    _half_sweep,
    _least_spacing,
    sweep_bytes,
)
from qtomo.train import TrainOptions, fit, split_rows
from tests.memory import mps_peak_bytes


def _rows(dataset):
    train, val = split_rows(dataset.n_records, 0.1)
    return (torch.from_numpy(dataset.outcomes(*train)).long(),
            torch.from_numpy(dataset.outcomes(*val)).long())


def _nll(model, rows):
    return _held(model, rows).nll


def _held(model, rows):
    """The validation rows' NLLs under the model as stored."""
    with torch.no_grad():
        return HeldOut(-model.log_prob(rows).double())


def _constant(nll):
    """Validation rows that all have NLL ``nll``: any rise is significant."""
    return HeldOut(torch.full((4,), float(nll), dtype=torch.float64))


@pytest.fixture(scope="module")
def tfim8(tmp_path_factory):
    return read_dataset(simulate("tfim", 8, samples=20_000, seed=3, device="cpu", quiet=True,
                                 out=tmp_path_factory.mktemp("sweeps") / "tfim8.h5"))


def test_sweeps_reach_the_maximum_likelihood_of_lbfgs_from_the_true_state(tfim8):
    """From a random χ = 2 start, the sweeps' training NLL is that of full-batch L-BFGS run to
    convergence from the true state truncated to χ = 2 (within 2e-5 nats, 1/300 of the
    statistical spread 1/√N of an NLL), the gradient of the whole chain's NLL is below a
    twentieth of that spread there (it is 0.14 at the start), and the state is the truth's to
    0.995."""
    rows, val = _rows(tfim8)
    target = vector_to_mps(tfim8.reference["psi"])
    reference = _maximum_from_truth(tfim8, target, rows, val, real=1, iterations=2000)
    torch.manual_seed(0)
    model = build("mps", L=8, K=4, povm=tfim8.povm, chi=2, real=1)
    result = model.sweep(rows, len(rows), lambda: _held(model, rows), max_sweeps=20)
    assert result.stopped == "converged"
    assert _nll(model, rows) == pytest.approx(_nll(reference, rows), abs=2e-5)
    assert _gradient_norm(model, rows) < 0.05 / np.sqrt(len(rows))
    assert pure_state_fidelity(target, model.tensors()) > 0.995


def _maximum_from_truth(dataset, target, rows, val, *, real: int, iterations: int):
    """The χ = 2 model started at the true state truncated to χ = 2 and refined by full-batch
    L-BFGS to convergence on ``rows`` (no held-out selection; ``val`` checked every twentieth of
    ``iterations``)."""
    reference = build("mps", L=dataset.L, K=dataset.K, povm=dataset.povm, chi=2, real=real)
    reference.set_tensors(truncated(target, 2))
    refine(reference, lambda: [(rows, None)], len(rows), lambda: _nll(reference, val),
           max_iter=iterations, check_every=iterations // 20, select=False)
    return reference


def _gradient_norm(model, rows) -> float:
    """‖∇ NLL‖ over all tensors, each normalised first (the NLL does not depend on the norm)."""
    model.after_step()
    model.zero_grad()
    model.training_nll(rows).mean().backward()
    return float(torch.sqrt(sum((A.grad ** 2).sum() for A in model.sites)))


def test_validation_keeps_the_last_state_unless_it_prefers_an_earlier_one(tfim8):
    """The sweeps keep their last state, or the one of the lowest validation NLL where the
    validation rows prefer it to the last by more than 1.5 standard errors; either is below
    the start's validation NLL."""
    rows, val = _rows(tfim8)
    torch.manual_seed(1)
    model = build("mps", L=8, K=4, povm=tfim8.povm, chi=3, real=1)
    seen = []

    def validate() -> HeldOut:
        seen.append(_held(model, val))
        return seen[-1]

    result = model.sweep(rows, len(rows), validate, max_sweeps=3)
    best = min(seen, key=lambda held: held.nll)
    kept = best if result.stopped == "validation" else seen[-1]
    assert (result.stopped == "validation") == best.prefers(seen[-1])
    assert result.val_nll == kept.nll < result.val_nll_before == seen[0].nll
    assert _nll(model, val) == pytest.approx(result.val_nll, abs=1e-12)
    assert 1 <= result.half_sweeps <= 6


def test_a_kept_start_reports_its_own_training_nll(tfim8):
    """A first half-sweep that does not lower the validation NLL ends the sweeps at once,
    whatever ``patience``, and keeps the starting state; its training NLL is then the start's
    (not the last half-sweep's, nor unknown)."""
    rows, _ = _rows(tfim8)
    torch.manual_seed(2)
    model = build("mps", L=8, K=4, povm=tfim8.povm, chi=2, real=1)
    start = _nll(model, rows)
    worse = iter(range(100))
    result = model.sweep(rows, len(rows), lambda: _constant(next(worse)), max_sweeps=4, patience=3)
    assert (result.stopped, result.half_sweeps) == ("validation", 1)
    assert result.train_nll == pytest.approx(start, abs=1e-9)
    assert _nll(model, rows) == pytest.approx(start, abs=1e-9)


def test_a_rise_of_the_validation_nll_within_its_noise_does_not_stop_the_sweeps(tfim8):
    """A validation NLL that rises after every half-sweep by far less than its standard error
    (10^-3 nats against 0.14) does not stop the sweeps, which once stopped after the first:
    they end at the maximum of the likelihood, the state of the sweeps without early
    stopping."""
    rows, _ = _rows(tfim8)
    spread = torch.tensor([1.0, -1.0] * 50, dtype=torch.float64)  # mean 0, the noise
    generator = torch.Generator().manual_seed(5)
    calls = []

    def rising() -> HeldOut:
        calls.append(None)
        return HeldOut(1e-3 * len(calls) + spread[torch.randperm(100, generator=generator)])

    ends = []
    for patience in (PATIENCE, 0):
        torch.manual_seed(2)
        model = build("mps", L=8, K=4, povm=tfim8.povm, chi=2, real=1)
        result = model.sweep(rows, len(rows), rising, max_sweeps=20, patience=patience)
        ends.append((result, _nll(model, rows)))
    (noisy, noisy_nll), (plain, plain_nll) = ends
    assert noisy.stopped == plain.stopped == "converged" and noisy.half_sweeps > 1
    assert noisy_nll == pytest.approx(plain_nll, abs=1e-12)
    assert noisy.val_nll > noisy.val_nll_before  # every check rose: early stopping would stop


@pytest.mark.parametrize("patience", [1, 2, 50])
def test_after_a_first_gain_significant_rises_keep_the_first_state(tfim8, patience):
    """A validation NLL that falls after the first half-sweep and then rises on every row stops
    the sweeps ``patience`` half-sweeps later, or where they converge first (patience 50),
    with the state and training NLL of the first half-sweep, which the rows prefer."""
    rows, _ = _rows(tfim8)
    torch.manual_seed(2)
    model = build("mps", L=8, K=4, povm=tfim8.povm, chi=2, real=1)
    train_nll = []  # of the state as stored at each validation

    def validate() -> HeldOut:
        train_nll.append(_nll(model, rows))
        return _constant((1.0, 0.0)[len(train_nll) - 1] if len(train_nll) <= 2
                         else len(train_nll))

    result = model.sweep(rows, len(rows), validate, max_sweeps=20, patience=patience)
    waited = result.half_sweeps - 1
    assert result.stopped == "validation" and (waited == patience or patience > waited > 0)
    assert result.val_nll == 0.0
    assert result.train_nll == pytest.approx(train_nll[1], abs=1e-9)
    assert _nll(model, rows) == pytest.approx(train_nll[1], abs=1e-9)


def test_sweeps_from_a_converged_state_stop_after_one_half_sweep(tfim8):
    """Swept again, a converged state gains less than 0.1 nat in its first half-sweep and
    stops there, with the training NLL it had."""
    rows, _ = _rows(tfim8)
    torch.manual_seed(3)
    model = build("mps", L=8, K=4, povm=tfim8.povm, chi=2, real=1)
    model.sweep(rows, len(rows), lambda: _held(model, rows), max_sweeps=20)
    converged = _nll(model, rows)
    again = model.sweep(rows, len(rows), lambda: _held(model, rows), max_sweeps=20)
    assert (again.stopped, again.half_sweeps) == ("converged", 1)
    assert again.train_nll == pytest.approx(converged, abs=0.1 / len(rows))


def test_complex_tensors_find_a_complex_phase(tmp_path):
    """(|0⟩ + i|1⟩)/√2 on every qubit, measured with pauli6 (the Y basis sees the phase): complex
    χ = 1 tensors reach the state to 0.999; real ones cannot hold it."""
    data = read_dataset(simulate("product", 4, product_state="+i", povm="pauli6", samples=5000,
                                 seed=0, device="cpu", out=tmp_path / "i.h5", quiet=True))
    rows, val = _rows(data)
    plus_i = [np.array([1, 1j]).reshape(1, 2, 1) / np.sqrt(2)] * 4
    fidelities = {}
    for real in (0, 1):
        torch.manual_seed(0)
        model = build("mps", L=4, K=6, povm=data.povm, chi=1, real=real)
        model.sweep(rows, len(rows), lambda m=model: _held(m, val), max_sweeps=4)
        fidelities[real] = pure_state_fidelity(plus_i, model.tensors())
    assert fidelities[0] > 0.999 and fidelities[1] < 0.2


def test_purified_tensors_fit_a_depolarized_state(tmp_path):
    """|0⟩ on 3 qubits through depolarizing p = 0.2 (ρ_1 = diag(0.9, 0.1), a product): an
    ``lpdo`` with κ = 2 reaches Uhlmann fidelity 0.995 from 2·10^4 records."""
    data = read_dataset(simulate("product", 3, product_state="0", samples=20_000, seed=0,
                                 depolarizing=0.2, device="cpu", out=tmp_path / "n.h5",
                                 quiet=True))
    rows, val = _rows(data)
    torch.manual_seed(0)
    model = build("lpdo", L=3, K=4, povm=data.povm, chi=1, kraus=2, real=1)
    model.sweep(rows, len(rows), lambda: _held(model, val), max_sweeps=6)
    rho = Reconstruction(state_density_matrix(model.tensors()))
    assert rho.fidelity(data.reference["rho"]).value > 0.995


@pytest.mark.filterwarnings("ignore:the sweeps reached their cap")
def test_fit_runs_the_sweeps_and_records_them(tfim8, tmp_path):
    torch.manual_seed(0)
    model = build("mps", L=8, K=4, povm=tfim8.povm, chi=2, real=1)
    result = fit(model, tfim8, TrainOptions(epochs=0, sweeps=2), out=tmp_path / "m.pt",
                 device="cpu", quiet=True)
    assert result.sweeps is not None and result.best_val_nll == result.sweeps.val_nll
    stored = load_checkpoint(tmp_path / "m.pt").config["training"]
    assert stored["sweeps"]["half_sweeps"] == result.sweeps.half_sweeps
    assert (tmp_path / "m.last.pt").is_file() and (tmp_path / "m.history.json").is_file()

@pytest.mark.parametrize("family, hyperparameters, message", [
    ("mps", {"chi": 2, "positive": 1}, "positive = 1 .* cannot sweep; drop --sweeps"),
    ("gru", {"hidden": 8}, "the gru family has no local sweeps; drop --sweeps"),
])
def test_fit_refuses_sweeps_it_cannot_run_before_training(tfim8, family, hyperparameters,
                                                           message):
    model = build(family, L=8, K=4, povm=tfim8.povm, **hyperparameters)
    with pytest.raises(QtomoError, match=message):
        fit(model, tfim8, TrainOptions(epochs=0, sweeps=2), device="cpu", quiet=True)


def test_cli_sweeps_option_and_info(tfim8, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "mps", "--chi", "2", "--real", "1", "--sweeps", "1",
                 "--data", str(tfim8.path), "--out", str(out), "--quiet"]) == 0
    assert load_checkpoint(out).config["training"]["options"]["sweeps"] == 1
    assert main(["info", str(out)]) == 0
    assert "sweeps: " in capsys.readouterr().out
    assert main(["fit", "--model", "mps", "--sweeps", "-1", "--data", str(tfim8.path),
                 "--out", str(tmp_path / "x.pt"), "--quiet"]) == 2


def test_sweeps_find_the_phase_basin_of_a_ghz_state(tmp_path):
    """GHZ L = 8 measured with pauli6: the likelihood has three basins in the relative phase
    (records of zero probability bound them), and a random start falls into the wrong ones two
    times in three without a phase search; with the sweeps' search every seed reaches fidelity
    0.99."""
    data = read_dataset(simulate("ghz", 8, povm="pauli6", samples=20_000, seed=2, device="cpu",
                                 out=tmp_path / "ghz.h5", quiet=True))
    rows, val = _rows(data)
    target = vector_to_mps(data.reference["psi"])
    for seed in range(4):
        torch.manual_seed(seed)
        model = build("mps", L=8, K=6, povm=data.povm, chi=2, real=0)
        model.sweep(rows, len(rows), lambda m=model: _held(m, val), max_sweeps=8)
        assert pure_state_fidelity(target, model.tensors()) > 0.99, seed


def _branch_phase(tensors) -> float:
    """arg(⟨1…1|ψ⟩ / ⟨0…0|ψ⟩) of an MPS, tensors (χ_l, 2, χ_r)."""
    branches = [np.ones(1, dtype=complex), np.ones(1, dtype=complex)]
    for A in tensors:
        branches = [branches[0] @ A[:, 0, :], branches[1] @ A[:, 1, :]]
    return float(np.angle(branches[1].item() / branches[0].item()))


def test_sweeps_reach_the_maximum_likelihood_phase_of_a_ghz_state(tmp_path):
    """GHZ L = 16 from 5·10^4 pauli6 records: the relative phase of the two branches is set by
    the ~75 records that measure every qubit off the Z axis, a direction the L-BFGS of a site
    barely sees (the site-by-site descent stopped 0.02 rad from the maximum). The sweeps' phase
    search puts it where full-batch L-BFGS from the true state ends, within 2 mrad, at the same
    training NLL (1e-8 nats per record)."""
    data = read_dataset(simulate("ghz", 16, povm="pauli6", samples=50_000, seed=5, device="cpu",
                                 out=tmp_path / "ghz.h5", quiet=True))
    rows, val = _rows(data)
    reference = _maximum_from_truth(data, data.reference["mps"], rows, val, real=0,
                                    iterations=500)
    torch.manual_seed(0)
    model = build("mps", L=16, K=6, povm=data.povm, chi=2, real=0)
    result = model.sweep(rows, len(rows), lambda: _held(model, val), max_sweeps=8, patience=0)
    assert result.stopped == "converged"
    assert _nll(model, rows) == pytest.approx(_nll(reference, rows), abs=1e-8)
    assert _branch_phase(model.tensors()) == pytest.approx(_branch_phase(reference.tensors()),
                                                           abs=2e-3)


@pytest.mark.parametrize("L", [1, 2, 3, 5, 9, 10, 17])
@pytest.mark.parametrize("rightwards", [True, False])
@pytest.mark.parametrize("checkpointed", [True, False])
@pytest.mark.parametrize("K", [4, 6])  # superoperator tables, amplitudes
def test_checkpointed_environments_are_those_of_the_whole_chain(L, rightwards, checkpointed, K):
    """The environments ahead, all held or kept every ⌈√L⌉ sites and recomputed by blocks, are
    bit for bit those computed site by site from the far end, and at the first site of the
    sweep they give the model's own ln Q of every record (its contraction of the whole
    chain), on superoperator tables (pauli4, whose fourth element has rank two) and on
    amplitudes (pauli6: Q = |amplitude|²)."""
    torch.manual_seed(L)
    model = build("mps", L=L, K=K, povm=f"pauli{K}", chi=3, real=0)
    records = torch.randint(0, K, (50, L))
    chain = _Chain(list(model.sites), False, model.povm_elements.expand(L, K, 2, 2), records)
    assert (chain.vectors is not None) == (K == 6 and max(model.chi) > 2)
    assert chain.spacing == 1  # a few kB: all held
    chain.spacing = _least_spacing(L) if checkpointed else 1
    order = range(L) if rightwards else range(L - 1, -1, -1)
    for i in order[:0:-1]:  # the gauge of a sweep's start: Tr ρ = ‖A‖² of its first site
        chain.right_canonical(i) if rightwards else chain.left_canonical(i)
    direct = [chain.empty()]
    for i in reversed(order[1:]):
        direct.append(chain.step(direct[-1], i, not rightwards))
    for expected, got in zip(reversed(direct), _environments_ahead(chain, order, rightwards, None),
                             strict=True):
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    first = order[0]
    vectors, log_scale = direct[-1]
    tables = chain.tables(first).detach()
    if not rightwards:
        tables = tables.transpose(1, 2)
    outcome = records[:, first]
    contracted = torch.einsum("nab,nb->n", tables[outcome], vectors)
    if contracted.is_complex():  # an amplitude
        contracted = contracted.abs().square()
    norm = chain.sites[first].square().sum()
    with torch.no_grad():
        log_q = model.log_prob(records)
    torch.testing.assert_close(torch.log(contracted) + log_scale, log_q + torch.log(norm),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("K, real", [(4, 0), (6, 0), (6, 1)])
def test_the_local_nll_gradient_is_autograds(weighted, K, real):
    """The local NLL with its gradient formed in the forward pass equals autograd's value and
    gradient of −Σ_n c_n ln P_n in the site tensor A, with P_n = l_n T[a_n](A) r_n on
    superoperator tables (pauli4) and P_n = |l_n B[a_n](A) r_n|² on amplitudes (pauli6, real
    and complex tensors; an empty outcome included; c_n = 1, or row counts)."""
    torch.manual_seed(3)
    L = 5
    model = build("mps", L=L, K=K, povm=f"pauli{K}", chi=3, real=real)
    records = torch.randint(0, K - 1, (40, L))  # the last outcome nowhere
    counts = torch.randint(1, 9, (40,)).double() if weighted else torch.ones(40).double()
    chain = _Chain(list(model.sites), bool(real), model.povm_elements.expand(L, K, 2, 2),
                   records)
    left = chain.step(chain.step(chain.empty(), 0, True), 1, True)[0]
    right = chain.step(chain.step(chain.empty(), 4, False), 3, False)[0]
    groups = [(left[rows], right[rows], counts[rows] if weighted else None)
              for rows in chain.groups[2]]
    tensors = [chain.sites[2].clone().requires_grad_(True) for _ in range(2)]
    fused = _GroupedNLL.apply(chain.tables(2, tensors[0]), groups)
    tables = chain.tables(2, tensors[1])

    def log_p(left, right, k):
        value = ((left @ tables[k]) * right).sum(1)
        return torch.log(value.abs().square() if value.is_complex() else value)

    plain = -sum((counts[rows] * log_p(l, r, k)).sum()
                 for k, ((l, r, _), rows) in enumerate(zip(groups, chain.groups[2],
                                                           strict=True)))
    fused.backward()
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=0)
    torch.testing.assert_close(tensors[0].grad, tensors[1].grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("real", [1, 0])
def test_distinct_rows_with_their_counts_sweep_as_all_rows(real, tmp_path):
    """The training rows given once each with their counts sweep as all of them: the same
    training NLL, which is the NLL of all rows, for real and complex tensors (the phase search
    and the local fits weighted alike)."""
    data = read_dataset(simulate("tfim", 4, samples=6_000, seed=2, quiet=True,
                                 out=tmp_path / "tfim4.h5"))
    rows = _rows(data)[0]
    distinct, counts = torch.unique(rows, dim=0, return_counts=True)
    assert len(distinct) < len(rows) / 10  # 256 outcome strings at most
    fitted = []
    for records, weights in ((rows, None), (distinct, counts.double())):
        torch.manual_seed(0)
        model = build("mps", L=4, K=4, povm=data.povm, chi=2, real=real)
        result = model.sweep(records, len(rows), lambda: _constant(0.0), max_sweeps=2, patience=0,
                             counts=weights)
        fitted.append((result.train_nll, _nll(model, rows)))
    (all_rows, all_nll), (once, once_nll) = fitted
    assert once == pytest.approx(once_nll, abs=1e-10)  # the weighted sums are those of all rows
    assert once == pytest.approx(all_rows, abs=1e-9)
    assert once_nll == pytest.approx(all_nll, abs=1e-9)


@pytest.mark.parametrize("quiet", [True, False])
def test_sweeps_show_a_progress_bar_over_the_sites_unless_quiet(quiet, monkeypatch, capsys):
    torch.manual_seed(0)
    model = build("mps", L=6, K=4, povm="pauli4", chi=2, real=1)
    records = torch.randint(0, 4, (200, 6))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal
    model.sweep(records, len(records), lambda: _constant(1.0), max_sweeps=1, quiet=quiet)
    printed = capsys.readouterr().err
    assert ("sweeps:" in printed and "site" in printed and "validation NLL" in printed) != quiet


@pytest.mark.parametrize("L", [2, 7, 10])
@pytest.mark.parametrize("checkpointed", [True, False])
def test_half_sweeps_take_their_checkpoints_from_the_environments_behind(L, checkpointed):
    """The checkpoints a half-sweep leaves (its environments behind, every one or every
    ⌈√L⌉-th) give the next half-sweep the same tensors and NLL, bit for bit, as environments
    built afresh from the tensors."""
    torch.manual_seed(L)
    model = build("mps", L=L, K=4, povm="pauli4", chi=3, real=0)
    records = torch.randint(0, 4, (60, L))
    elements = model.povm_elements.expand(L, 4, 2, 2)
    first = _Chain(list(model.sites), False, elements, records)
    first.spacing = _least_spacing(L) if checkpointed else 1
    for i in range(L - 1, 0, -1):
        first.right_canonical(i)
    fitting = {"n_rows": len(records), "iterations": 2, "world": 1}
    *_, following = _half_sweep(first, rightwards=True, checkpoints=None, **fitting)
    fresh = _Chain(first.sites, False, elements, records)
    fresh.spacing = first.spacing
    reused_nll = _half_sweep(first, rightwards=False, checkpoints=following, **fitting)[:2]
    fresh_nll = _half_sweep(fresh, rightwards=False, checkpoints=None, **fitting)[:2]
    assert reused_nll == fresh_nll
    assert all(torch.equal(a, b) for a, b in zip(first.sites, fresh.sites, strict=True))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("L, chi, rows, K", [
    (30, 8, 20_000, 4), (20, 16, 5_000, 4), (30, 8, 20_000, 6),
    pytest.param(20, 16, 20_000, 6, marks=pytest.mark.slow)])
@pytest.mark.parametrize("checkpointed", [True, False])
def test_sweep_bytes_bound_the_measured_peak(L, chi, rows, K, checkpointed):
    """The estimate the size search compares with the free memory (every ⌈√L⌉-th environment
    kept), and that of holding all of them, are above the growth of the peak resident memory
    over a sweep that does so, and within three times it (freed arrays returned to the system,
    as at the sizes the guard is for: tests/memory.py), on superoperator tables (pauli4) and
    on amplitudes (pauli6)."""
    # a validation NLL that rises on every row ends the sweep after its first half-sweep
    work = ("from qtomo.heldout import HeldOut; rises = iter(range(3)); "
            "model.sweep(a, rows, lambda: HeldOut(torch.full((2,), float(next(rises)))), "
            "max_sweeps=1)")
    if checkpointed:  # no memory to hold them all
        work = f"import qtomo.sweeps; qtomo.sweeps._HOLD_ALL_SHARE = 0; {work}"
    measured = mps_peak_bytes(work, L, chi, rows, K=K, freed_returned=True)
    bonds = build("mps", L=L, K=K, povm=f"pauli{K}", chi=chi, real=1).chi
    estimate = sweep_bytes(bonds, rows, spacing=None if checkpointed else 1, amplitudes=K == 6)
    assert measured < estimate < 3 * measured


def test_bootstrap_ensemble_of_a_size_search_starts_at_the_chosen_state(tfim8, tmp_path):
    """``--ensemble 3 --bootstrap`` of ``mps`` without ``--chi``: one plain fit chooses the
    size, the members are its bootstrap replicates (every one at that size, all different, all
    near the truth)."""
    folder = tmp_path / "ens"
    assert main(["fit", "--model", "mps", "--ensemble", "3", "--bootstrap", "--data",
                 str(tfim8.path), "--out", str(folder), "--quiet"]) == 0
    chosen = fit_recipe("mps", tfim8, device="cpu", quiet=True).hyperparameters
    target = vector_to_mps(tfim8.reference["psi"])
    fidelities = []
    for m in range(3):
        checkpoint = load_checkpoint(folder / f"member{m:02d}.pt")
        assert checkpoint.config["hyperparameters"] == {**chosen, "positive": 0}
        assert checkpoint.config["training"]["options"]["bootstrap"]
        fidelities.append(pure_state_fidelity(target, checkpoint.model.tensors()))
    assert min(fidelities) > 0.99 and len(set(fidelities)) == 3



def test_ensemble_output_that_is_a_file_is_refused_before_the_plain_fit(tfim8, tmp_path,
                                                                       monkeypatch):
    import qtomo.recipe

    def no_fit(*args, **kwargs):
        raise AssertionError("the plain fit ran before the output was checked")

    monkeypatch.setattr(qtomo.recipe, "_fit_planned", no_fit)
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"x")
    with pytest.raises(QtomoError, match="is a file; expected a folder"):
        qtomo.recipe.fit_recipe_ensemble("mps", tfim8, {"bootstrap": True}, members=2,
                                         out=taken, device="cpu", quiet=True)
    assert taken.read_bytes() == b"x"


@pytest.mark.parametrize("rows", [1, 2047, 2048, 5000, 3 * 1024])
def test_gram_of_batched_rows_equals_one_product(rows):
    """Σ_n a_nᵀ b_n by batches of rows (and the rest) equals aᵀ b to rounding, for every row
    count around the batch size."""
    generator = torch.Generator().manual_seed(rows)
    a = torch.randn(rows, 16, dtype=torch.float64, generator=generator)
    b = torch.randn(rows, 4, dtype=torch.float64, generator=generator)
    assert torch.allclose(_gram(a, b), a.T @ b, rtol=1e-12, atol=1e-12)
