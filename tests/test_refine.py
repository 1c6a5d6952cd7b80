"""The full-batch stages (L-BFGS refinement, Adam steps) end at a maximum of the likelihood;
their options and errors."""

import numpy as np
import pytest
import torch

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.models import build, load_checkpoint
from qtomo.refine import refine
from qtomo.simulate import simulate
from qtomo.states.mps import pure_state_fidelity, vector_to_mps
from qtomo.train import TrainOptions, fit, split_rows


@pytest.fixture(scope="module")
def tfim4(tmp_path_factory):
    path = simulate("tfim", 4, h=1.0, samples=20_000, seed=3, device="cpu",
                    out=tmp_path_factory.mktemp("refine") / "tfim4.h5", quiet=True)
    return read_dataset(path)


def full_batch_gradient(model, rows) -> float:
    """Largest |∂ NLL / ∂θ| of the mean training NLL over all rows."""
    model.zero_grad()
    model.training_nll(rows).mean().backward()
    return max(p.grad.abs().max().item() for p in model.parameters())


def test_plain_maximum_likelihood_ends_where_the_gradient_vanishes(tfim4):
    """select=False runs L-BFGS to convergence: the gradient of the training NLL is ~0 there,
    and the NLL is below that of the true state (truncated to nothing: χ = 2 holds it)."""
    train, val = (torch.from_numpy(tfim4.outcomes(*rows)).long()
                  for rows in split_rows(tfim4.n_records, 0.1))
    torch.manual_seed(0)
    model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2, real=1)
    start = full_batch_gradient(model, train)
    result = refine(model, lambda: [(train, None)], len(train),
                    lambda: -model.log_prob(val).mean().item(), max_iter=500, select=False)
    assert result.stopped == "converged"
    assert full_batch_gradient(model, train) < 1e-4 * start  # four orders of magnitude down
    truth = build("mps", L=4, K=4, povm=tfim4.povm, chi=4, real=1)
    truth.set_tensors(vector_to_mps(tfim4.reference["psi"]))
    with torch.no_grad():
        assert result.train_nll <= -truth.log_prob(train).mean().item() + 1e-9
    assert pure_state_fidelity(vector_to_mps(tfim4.reference["psi"]), model.tensors()) > 0.99


@pytest.mark.parametrize("method, lr", [("lbfgs", 1.0), ("adam", 0.03)])
def test_distinct_rows_with_their_counts_refine_as_all_rows(tfim4, method, lr):
    """L-BFGS (or full-batch Adam) over the distinct training rows, each weighted by its count,
    takes the steps it takes over all rows (the same NLL and gradients to rounding) and ends at
    the same NLL."""
    train = torch.from_numpy(tfim4.outcomes(*split_rows(tfim4.n_records, 0.1)[0])).long()
    distinct, counts = torch.unique(train, dim=0, return_counts=True)
    ends = []
    for batch in ((train, None), (distinct, counts.double())):
        torch.manual_seed(0)
        model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2, real=1)
        result = refine(model, lambda b=batch: [b], len(train), lambda: 0.0, max_iter=30,
                        select=False, method=method, lr=lr)
        with torch.no_grad():
            ends.append((result.train_nll, -model.log_prob(train).mean().item()))
    assert ends[1][0] == pytest.approx(ends[1][1], abs=1e-12)
    assert ends[1][0] == pytest.approx(ends[0][0], abs=1e-9)


def test_full_batch_adam_reaches_the_maximum_lbfgs_finds(tfim4):
    """Full-batch Adam on a non-negative χ = 2 state (the TFIM ground state is positive) ends
    at the training NLL of L-BFGS run to convergence from the same start, within 1e-4 nats:
    both are the maximum of the likelihood; Adam's steps alone are counted as iterations.
    (The 256 possible strings with their counts: a pass costs what they cost.)"""
    train = torch.from_numpy(tfim4.outcomes(*split_rows(tfim4.n_records, 0.1)[0])).long()
    distinct, counts = torch.unique(train, dim=0, return_counts=True)
    ends = {}
    for method, lr, steps in (("lbfgs", 1.0, 500), ("adam", 0.03, 300)):
        torch.manual_seed(4)
        model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2, positive=1)
        result = refine(model, lambda: [(distinct, counts.double())], len(train), lambda: 0.0,
                        max_iter=steps, select=False, method=method, lr=lr)
        ends[method] = result
    assert ends["lbfgs"].stopped == "converged"
    assert ends["adam"].iterations == ends["adam"].evaluations == 300
    assert ends["adam"].train_nll == pytest.approx(ends["lbfgs"].train_nll, abs=1e-4)


def test_fit_with_full_batch_adam_then_refine_keeps_the_best(tfim4, tmp_path):
    """--epochs 0 --full-batch N --refine M from the CLI: Adam from the start, then L-BFGS from
    Adam's best; each never ends above where it started, both are in the checkpoint's summary
    and printed by qtomo info."""
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "mps", "--chi", "2", "--positive", "1", "--data",
                 str(tfim4.path), "--epochs", "0", "--full-batch", "60", "--refine", "100",
                 "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    summary = load_checkpoint(out).config["training"]
    adam, lbfgs = summary["full_batch"], summary["refine"]
    assert 10 <= adam["iterations"] <= 60 and adam["val_nll"] < adam["val_nll_before"]
    assert lbfgs["val_nll_before"] == pytest.approx(adam["val_nll"], abs=1e-12)
    assert summary["best_val_nll"] == lbfgs["val_nll"] <= adam["val_nll"]
    assert summary["time_s"] >= adam["time_s"] + lbfgs["time_s"]
    assert main(["info", str(out)]) == 0


def test_fit_with_refine_never_ends_above_its_start(tfim4):
    """The refinement keeps the lowest validation NLL: never worse than the Adam epochs, and
    recorded in the result and the checkpoint's summary."""
    torch.manual_seed(1)
    options = TrainOptions(epochs=2, batch_size=512, lr=3e-2, seed=1)
    adam = fit(build("mps", L=4, K=4, povm=tfim4.povm, chi=2), tfim4, options, device="cpu",
               quiet=True)
    torch.manual_seed(1)
    both = fit(build("mps", L=4, K=4, povm=tfim4.povm, chi=2), tfim4,
               TrainOptions(**{**options.__dict__, "refine": 50}), device="cpu", quiet=True)
    assert both.refinement.val_nll_before == pytest.approx(adam.best_val_nll, abs=1e-12)
    assert both.best_val_nll <= adam.best_val_nll
    assert both.refinement.iterations >= 1 and both.refinement.stopped in (
        "converged", "validation", "iterations")


def test_refine_alone_from_the_cli(tfim4, tmp_path):
    """--epochs 0 --refine N: L-BFGS only; the summary holds what it did."""
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "mps", "--chi", "2", "--real", "1", "--data",
                 str(tfim4.path), "--epochs", "0", "--refine", "200", "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    summary = load_checkpoint(out).config["training"]
    assert summary["epochs_run"] == 0
    assert summary["refine"]["iterations"] >= 1
    assert np.isfinite(summary["best_val_nll"])


@pytest.mark.parametrize("options, message", [
    (dict(epochs=0), "epochs must be >= 1 (or 0 with full_batch, sweeps or refine > 0)"),
    (dict(refine=-1), "refine must be >= 0"),
    (dict(full_batch=-1), "full_batch must be >= 0"),
    (dict(refine=5, refine_check=0), "refine_check must be >= 1"),
])
def test_bad_refine_options_are_one_line(options, message):
    with pytest.raises(QtomoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainOptions(**options)


def test_an_unknown_refinement_method_is_one_line(tfim4):
    model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2)
    with pytest.raises(QtomoError, match="method must be one of lbfgs, adam; got 'sgd'$"):
        refine(model, lambda: [], 1, lambda: 0.0, max_iter=1, method="sgd")


def test_cli_refuses_a_negative_refine(tfim4, tmp_path, capsys):
    status = main(["fit", "--model", "mps", "--data", str(tfim4.path), "--refine", "-3",
                   "--out", str(tmp_path / "m.pt"), "--quiet"])
    assert status == 2
    assert not (tmp_path / "m.pt").exists()
    assert "refine" in capsys.readouterr().err


@pytest.mark.parametrize("stage, flag", [("refine", "--refine"), ("full_batch", "--full-batch")])
def test_a_family_without_likelihood_cannot_refine(tfim4, stage, flag):
    model = build("gan", L=4, K=4)
    with pytest.raises(QtomoError, match=f"no likelihood to refine; drop {flag}$"):
        fit(model, tfim4, TrainOptions(epochs=1, **{stage: 5}), device="cpu", quiet=True)


def test_a_refinement_cut_by_its_cap_says_so_and_keeps_the_best(tfim4):
    torch.manual_seed(2)
    model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2)
    with pytest.warns(UserWarning, match="reached its cap of 2 iterations.*raise --refine"):
        result = fit(model, tfim4, TrainOptions(epochs=0, refine=2, refine_check=1),
                     device="cpu", quiet=True)
    assert result.refinement.stopped == "iterations" and result.refinement.iterations == 2
    assert result.best_val_nll <= result.refinement.val_nll_before


def test_full_batch_adam_cut_by_its_cap_names_its_option(tfim4):
    torch.manual_seed(2)
    model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2, positive=1)
    with pytest.warns(UserWarning, match="full-batch Adam reached its cap of 3 iterations.*"
                                         "raise --full-batch"):
        result = fit(model, tfim4, TrainOptions(epochs=0, full_batch=3, refine_check=1),
                     device="cpu", quiet=True)
    assert result.full_batch.stopped == "iterations" and result.full_batch.iterations == 3
    assert result.refinement is None and result.best_val_nll < result.full_batch.val_nll_before
