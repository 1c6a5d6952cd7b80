"""Bond and Kraus dimensions chosen by the records: grown models, the size search, its CLI."""

import numpy as np
import pytest
import torch

from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import QtomoError
from qtomo.growth import fit_growing
from qtomo.models import build, load_checkpoint
from qtomo.models.mps import MPSModel
from qtomo.povm import get_povm
from qtomo.recipe import fit_recipe
from qtomo.simulate import simulate
from qtomo.states.mps import pure_state_fidelity, truncated
from qtomo.states.mps_sampler import MPSDistribution
from qtomo.train import TrainOptions
from tests.test_mps_model import randomised
from tests.test_mps_sampler import random_mps

QUICK = TrainOptions(epochs=20, batch_size=1024, lr=3e-2, ema=0.9, refine=300)


@pytest.fixture(scope="module")
def random4(tmp_path_factory):
    """3·10^4 records of a random real χ = 4 MPS (L = 5): its χ = 2 truncation is far off."""
    L, povm = 5, get_povm("pauli4")
    target = random_mps(L, chi=4, seed=3, real=True)
    a, log_p = MPSDistribution(target, povm).sample_with_log_prob(
        30_000, torch.Generator().manual_seed(0))
    path = write_dataset(tmp_path_factory.mktemp("growth") / "random4.h5", povm=povm,
                         attrs={"state": "random", "L": L, "seed": 0, "method": "mps"},
                         n_records=a.shape[0],
                         chunks=[(a.numpy().astype(np.uint8), log_p.numpy())],
                         reference={"mps": target})
    return read_dataset(path)


@pytest.mark.parametrize("name, hp, larger", [
    ("mps", dict(chi=2), dict(chi=3)),
    ("lpdo", dict(chi=2, kraus=1), dict(kraus=2)),
    ("lpdo", dict(chi=2, kraus=2, real=1), dict(chi=4)),
])
def test_grown_models_hold_the_same_state(name, hp, larger):
    """The old entries are kept and the new ones are small: the state moves only by products of
    two new entries, so on records drawn from the model ln Q moves by little (the KL divergence
    of the two is small), the pure state's fidelity stays above 0.9999, and the tensors are
    larger."""
    model = randomised(name, 5, "pauli6", seed=4, **hp)
    torch.manual_seed(5)
    grown = model.grown(**larger)
    assert grown.config == type(model.config)(**{**hp, **larger})
    a = model.sample(4000, torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (model.log_prob(a) - grown.log_prob(a)).mean().item() < 2e-3  # ≈ KL(Q‖Q')
    for A, B in zip(model.sites, grown.sites, strict=True):
        assert torch.equal(B[tuple(slice(0, n) for n in A.shape)], A)
    old, new = model.tensors(), grown.tensors()
    assert [A.shape[2] for A in new][1:-1] != [A.shape[2] for A in old][1:-1] or \
        [A.shape[-1] for A in new] != [A.shape[-1] for A in old]
    if name == "mps":
        assert pure_state_fidelity(old, new) > 0.9999


def test_grows_is_false_where_the_bonds_are_full():
    model = build("mps", L=2, K=4, povm="pauli4", chi=2)  # one bond, at most 2 = d^1
    assert not model.grows("chi", 3)
    assert build("mps", L=4, K=4, povm="pauli4", chi=2).grows("chi", 3)
    with pytest.raises(QtomoError, match="no size to grow"):
        build("gru", L=2, K=4).grown(hidden=8)


def test_the_search_grows_chi_while_the_held_out_nll_gains(random4, monkeypatch):
    """From χ = 2 the search climbs rung by rung (here a ladder 2, 3, 4, 6) while a larger χ gains
    more than 1.5 standard errors on the held-out rows, and stops at the state's own χ = 4 with
    a fidelity its truncations lack."""
    monkeypatch.setattr(MPSModel, "sizes", {"chi": (2, 3, 4, 6)})
    truth = random4.reference["mps"]
    selection = fit_growing("mps", random4, QUICK, hyperparameters={"real": 1}, device="cpu",
                            quiet=True)
    search = selection.search
    stages = search["stages"]
    assert stages[0]["sizes"] == {"chi": 2} and stages[0]["kept"]
    assert [stage["sizes"]["chi"] for stage in stages] == [2, 3, 4]
    assert all(stage["gain"] > 1.5 * stage["stderr"] for stage in stages[1:])
    assert selection.hyperparameters["chi"] == 4 and search["stopped"] == "full"
    fidelity = pure_state_fidelity(truth, selection.best.model.tensors())
    assert fidelity > 0.995 > pure_state_fidelity(truth, truncated(truth, 3))  # 0.987


def test_the_search_stops_at_the_end_of_its_ladder(random4, monkeypatch):
    monkeypatch.setattr(MPSModel, "sizes", {"chi": (2, 3)})
    selection = fit_growing("mps", random4, QUICK, hyperparameters={"real": 1}, device="cpu",
                            quiet=True)
    assert selection.search["stopped"] == "ladder"
    assert "give --chi" in selection.search["reason"]


def test_the_search_selects_real_or_complex_on_the_first_size(tmp_path):
    """|+i⟩^⊗3 has complex amplitudes: the real candidate cannot follow the records."""
    path = simulate("product", 3, product_state="+i", samples=8_000, seed=0, device="cpu",
                    out=tmp_path / "plus_i.h5", quiet=True)
    selection = fit_growing("mps", read_dataset(path), QUICK, grid={"real": [1, 0]},
                            device="cpu", quiet=True)
    assert selection.hyperparameters["real"] == 0
    assert [(values["real"], seed) for values, seed, _ in selection.candidates] == \
        [(1, 0), (0, 0), (1, 1)]  # real tensors are started again before complex ones win
    (_, _, real), (_, _, complex_), (_, _, again) = selection.candidates
    assert min(real, again) > complex_ + 0.1


def test_complex_tensors_are_kept_only_where_the_records_prefer_them(tmp_path):
    """|+⟩^⊗3 is real. On these records the complex candidate's validation NLL is lower by
    chance (by 6e-3 nats, under 1.5 standard errors of the paired difference): the real one,
    the simpler class, is kept, and nothing is started again."""
    path = simulate("product", 3, product_state="+", povm="pauli6", samples=4_000, seed=1,
                    device="cpu", out=tmp_path / "plus.h5", quiet=True)
    selection = fit_growing("mps", read_dataset(path), QUICK, grid={"real": [1, 0]},
                            device="cpu", quiet=True)
    (real, _, real_nll), (complex_, _, complex_nll) = selection.candidates
    assert (real["real"], complex_["real"]) == (1, 0)
    assert complex_nll < real_nll
    assert selection.hyperparameters["real"] == 1
    assert selection.search["first"].endswith(
        "nats per record over real = 1, seed 0, not more than 1.5 standard errors")


def test_cli_records_why_it_kept_real_tensors(tmp_path, capsys):
    """The same records by the default recipe (sweeps): complex tensors beat the real ones from
    seed 0, real ones from seed 1 match them; the second start's run has its seed in its name
    (the first start's run is kept beside it), and the reason is printed and stored."""
    path = simulate("product", 3, product_state="+", povm="pauli6", samples=4_000, seed=1,
                    device="cpu", out=tmp_path / "plus.h5", quiet=True)
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "mps", "--data", str(path), "--out", str(out),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    first = load_checkpoint(out).config["training"]["size_search"]["first"]
    assert first.startswith("real = 0, seed 0 gained ")
    assert first.endswith("over real = 1, seed 1, not more than 1.5 standard errors")
    assert f"first size: {first}" in printed
    assert ("kept real = 1, chi = 2, seed 1 (every bond is already as large as the qubits "
            "allow); the candidates' runs are beside it") in printed
    assert (tmp_path / "m.real-1_chi-2.pt").is_file()
    assert (tmp_path / "m.real-1_chi-2_seed-1.pt").is_file()
    assert main(["info", str(out)]) == 0
    assert f"first size: {first}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_real_fit_at_a_poorer_maximum_is_started_again(tmp_path):
    """W state, L = 16, 10^4 `pauli6` records: real tensors from seed 0 end 0.7 nats per
    record behind complex ones; from seed 1 they match them, and the real state is kept, at a
    higher fidelity than the complex one (0.9946 in states_N10000_mps.json)."""
    path = simulate("w", 16, povm="pauli6", samples=10_000, seed=0, device="cpu",
                    method="mps", out=tmp_path / "w.h5", quiet=True)
    dataset = read_dataset(path)
    selection = fit_recipe("mps", dataset, device="cpu", quiet=True)
    assert [(values["real"], seed) for values, seed, _ in selection.candidates] == \
        [(1, 0), (0, 0), (1, 1)]
    assert selection.candidates[0][2] > selection.candidates[1][2] + 0.5
    assert selection.hyperparameters["real"] == 1
    fidelity = pure_state_fidelity(dataset.reference["mps"], selection.best.model.tensors())
    assert fidelity > 0.996


def test_the_search_stops_before_a_size_that_would_not_fit_in_memory(random4, monkeypatch):
    """With the free memory just under twice what a χ = 4 pass needs, χ = 4 (the rung after 2)
    is refused: the search keeps χ = 2, says why and names the option, and stores what it
    refused."""
    needed = build("mps", L=5, K=4, povm="pauli4", chi=4, real=1).training_bytes(16384)
    monkeypatch.setattr("qtomo.growth.available_memory", lambda device: 2 * needed - 1)
    selection = fit_growing("mps", random4, QUICK, hyperparameters={"real": 1}, device="cpu",
                            quiet=True)
    search = selection.search
    assert search["stopped"] == "memory" and selection.hyperparameters["chi"] == 2
    assert [stage["sizes"]["chi"] for stage in search["stages"]] == [2]
    assert search["memory"]["value"] == 4 and search["memory"]["needed_bytes"] == needed
    assert "chi = 4" in search["reason"] and "give --chi" in search["reason"]


@pytest.mark.parametrize("family, options, message", [
    ("gru", QUICK, "no size left to choose"),
    ("mps", TrainOptions(refine=0), "give sweeps or refine > 0"),
])
def test_search_errors(random4, family, options, message):
    with pytest.raises(QtomoError, match=message):
        fit_growing(family, random4, options, device="cpu", quiet=True)


def test_cli_default_fit_chooses_chi_and_records_why(random4, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "mps", "--real", "1", "--data", str(random4.path),
                 "--epochs", "4", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    # one start of the first stage by default (mps), no seed in the names
    assert "size search: chi = 2" in printed and "kept chi = " in printed
    assert "seed 1" not in printed
    checkpoint = load_checkpoint(out)
    search = checkpoint.config["training"]["size_search"]
    assert checkpoint.config["hyperparameters"]["chi"] == search["chosen"]["chi"] >= 3
    # with 4 epochs the χ = 4 stage may or may not clear 1.5 standard errors; either way
    # the stop and its reason are stored and printed
    assert search["stopped"] in ("gain", "full") and search["reason"] in printed
    assert (tmp_path / "m.chi-2.pt").is_file()  # the first stage's run, beside it


def test_cli_given_chi_is_not_searched(random4, tmp_path):
    out = tmp_path / "m.pt"
    assert main(["fit", "--model", "mps", "--chi", "3", "--real", "1", "--data",
                 str(random4.path), "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.config["hyperparameters"]["chi"] == 3
    assert "size_search" not in checkpoint.config["training"]
    assert checkpoint.config["training"]["sweeps"]["half_sweeps"] >= 1


def test_set_tensors_rejects_what_the_model_cannot_hold():
    model = build("mps", L=3, K=4, povm=get_povm("pauli4"), chi=2, real=1)
    wide = [np.ones((1, 2, 4)), np.ones((4, 2, 1)), np.ones((1, 2, 1))]
    with pytest.raises(QtomoError, match="raise --chi"):
        model.set_tensors(wide)
    with pytest.raises(QtomoError, match="real tensors"):
        model.set_tensors([1j * np.ones((1, 2, 1))] * 3)
