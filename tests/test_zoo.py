"""The rbm, vae and gan families (issue 13): each against an independent truth.

RBM: free energy against the sum over all hidden configurations, Σ Q = 1 by enumeration, AIS
against the exact partition function, Gibbs samples against exact Q (χ²), the contrastive
gradient against the exact NLL gradient. VAE: the importance-weighted estimate against
Gauss–Hermite quadrature of Q(a) = ∫ p(z) p(a|z) dz for a one-dimensional latent, bound ≤
estimate. GAN: no likelihood, the straight-through sample, which network each update moves.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from qtomo.cli import main
from qtomo.errors import QtomoError
from qtomo.models import build, hyperparameter_types, load
from qtomo.models import rbm as rbm_module
from qtomo.povm import enumerate_outcomes
from qtomo.simulate import simulate


def randomized_rbm(L: int, K: int, scale: float = 0.6, **hyperparameters):
    torch.manual_seed(0)
    model = build("rbm", L=L, K=K, **hyperparameters).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, scale)
    return model.eval()


def counts(a: torch.Tensor, K: int) -> np.ndarray:
    L = a.shape[1]
    index = a @ (K ** torch.arange(L - 1, -1, -1))
    return np.bincount(index.numpy(), minlength=K**L)


# --- cnn ------------------------------------------------------------------------------------

@pytest.mark.parametrize("L, kernel", [(1, 2), (2, 2), (6, 2), (9, 2), (10, 3), (50, 2)])
def test_cnn_receptive_field_covers_every_earlier_site(L, kernel):
    """k^m ≥ L, and the last site's conditional depends on the first outcome."""
    torch.manual_seed(0)
    model = build("cnn", L=L, K=4, channels=8, kernel=kernel, blocks=1).eval()
    assert model.receptive_field >= L and model.dilations[-1] < max(L, 2)
    if L > 1:
        a = torch.randint(4, (8, L), generator=torch.Generator().manual_seed(1))
        b = a.clone()
        b[:, 0] = (b[:, 0] + 1) % 4
        with torch.no_grad():
            assert not torch.allclose(model.conditionals(a)[:, -1], model.conditionals(b)[:, -1])


# --- rbm ------------------------------------------------------------------------------------

def test_free_energy_is_the_sum_over_hidden_configurations():
    model = randomized_rbm(3, 4, hidden=5)
    a = torch.as_tensor(enumerate_outcomes(3, 4))
    v = torch.nn.functional.one_hot(a, 4).double().flatten(1)  # (64, 12)
    h = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=torch.float64)
    energy = -(v @ model.visible_bias.flatten())[:, None] - (h @ model.hidden_bias)[None] \
        - v @ model.weight @ h.T  # E(a, h), (64, 32)
    with torch.no_grad():
        assert torch.allclose(model.free_energy(a), -torch.logsumexp(-energy, 1), atol=1e-12)


def test_log_prob_is_normalised_and_ais_agrees_with_enumeration():
    model = randomized_rbm(4, 4, hidden=8)
    a = torch.as_tensor(enumerate_outcomes(4, 4))
    with torch.no_grad():
        assert model.log_prob(a).exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    exact = model.log_partition_exact()
    ais = model.log_partition_ais(1000, 512, generator=torch.Generator().manual_seed(1))
    assert model.exact_log_prob and model.log_partition().stderr == 0.0
    assert 0 < ais.stderr < 0.05
    assert abs(ais.value - exact) < 4 * ais.stderr


def test_above_the_enumeration_limit_log_prob_is_the_ais_estimate(monkeypatch):
    model = randomized_rbm(3, 4, hidden=6)
    exact = model.log_partition_exact()
    monkeypatch.setattr(rbm_module, "EXACT_MAX_RECORDS", 4**3 - 1)
    assert not model.exact_log_prob
    estimate = model.log_partition()
    assert estimate.stderr > 0 and abs(estimate.value - exact) < 4 * estimate.stderr
    a = torch.as_tensor(enumerate_outcomes(3, 4))
    with torch.no_grad():
        assert torch.allclose(model.log_prob(a), -model.free_energy(a) - estimate.value)


def test_gibbs_samples_follow_the_exact_distribution_chi_squared():
    model = randomized_rbm(3, 4, scale=0.5, hidden=6, chains=500, burn_in=200, thinning=5)
    a = model.sample(50_000, generator=torch.Generator().manual_seed(2))
    assert a.shape == (50_000, 3) and a.dtype == torch.long
    with torch.no_grad():
        expected = model.log_prob(torch.as_tensor(enumerate_outcomes(3, 4))).exp().numpy()
    # thinned records of 500 chains: nearly independent, so the plain χ² test applies
    assert stats.chisquare(counts(a, 4), expected * 50_000).pvalue > 1e-3


def test_contrastive_gradient_estimates_the_exact_nll_gradient():
    """Long persistent chains (many, well mixed) make the PCD surrogate's gradient the exact
    gradient of the mean NLL, computed here by autograd through ln Z by enumeration."""
    model = randomized_rbm(3, 4, scale=0.4, hidden=4, chains=20000, gibbs_steps=100)
    data = torch.randint(4, (256, 3), generator=torch.Generator().manual_seed(3))
    every = torch.as_tensor(enumerate_outcomes(3, 4))
    exact_nll = (model.free_energy(data).mean()
                 + torch.logsumexp(-model.free_energy(every), 0))
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(exact_nll, model.parameters())])
    model.train()
    torch.manual_seed(4)
    surrogate = model.training_nll(data).mean()
    cd = torch.cat([g.flatten() for g in torch.autograd.grad(surrogate, model.parameters())])
    assert (cd - exact).norm() < 0.05 * exact.norm()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.training_nll(data), -model.log_prob(data))


def test_persistent_chains_move_and_travel_in_the_checkpoint(tmp_path):
    from qtomo.models import save_checkpoint

    model = build("rbm", L=4, K=4, hidden=8, chains=16).train()
    before = model.persistent.clone()
    model.training_nll(torch.zeros(8, 4, dtype=torch.long))
    assert not torch.equal(before, model.persistent)
    same = load(save_checkpoint(tmp_path / "rbm.pt", model, povm="pauli4"))
    assert torch.equal(same.persistent, model.persistent)
    cd = build("rbm", L=4, K=4, hidden=8, chains=16, contrastive="cd").train()
    chains = cd.persistent.clone()
    cd.training_nll(torch.zeros(8, 4, dtype=torch.long))
    assert torch.equal(chains, cd.persistent)  # CD restarts at the data, keeps no chains


# --- vae ------------------------------------------------------------------------------------

def test_iwae_estimate_converges_to_the_quadrature_of_the_latent_integral():
    torch.manual_seed(0)
    model = build("vae", L=3, K=4, latent=1, hidden=16).double()
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(2.0)  # a decoder that depends strongly on z
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)  # ∫ N(z) f(z) dz, 120 nodes
    a = torch.as_tensor(enumerate_outcomes(3, 4))
    with torch.no_grad():
        z = torch.as_tensor(nodes)[:, None, None].expand(-1, len(a), 1)  # (120, 64, 1)
        log_p = model._log_likelihood(a, z)  # (120, 64)
        truth = torch.logsumexp(log_p + torch.as_tensor(np.log(weights / math.sqrt(2 * math.pi)))
                                [:, None], 0)
        w = model.log_weights(a, 4096, torch.Generator().manual_seed(1))  # (64, 4096)
        estimate = model.log_prob(a, 4096, torch.Generator().manual_seed(1))
        bound = model.log_prob_bound(a, 4096, torch.Generator().manual_seed(1))
    ratios = (w - w.max(1, keepdim=True).values).exp()
    stderr = ratios.std(1) / (ratios.mean(1) * math.sqrt(4096))  # delta method for ln mean e^w
    assert truth.exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    assert torch.equal(estimate, torch.logsumexp(w, 1) - math.log(4096))
    assert ((estimate - truth).abs() < 5 * stderr + 1e-3).all()
    assert (bound <= estimate).all() and (bound < truth).all()


def test_vae_samples_match_its_likelihood_and_the_training_objective_is_the_elbo():
    torch.manual_seed(0)
    model = build("vae", L=2, K=4, latent=2, hidden=16)
    every = torch.as_tensor(enumerate_outcomes(2, 4))
    with torch.no_grad():
        q = model.log_prob(every, 4096, torch.Generator().manual_seed(2)).double().exp()
        sampled = counts(model.sample(100_000, generator=torch.Generator().manual_seed(3)), 4)
        torch.manual_seed(4)
        objective = torch.stack([model.training_nll(every) for _ in range(400)])  # (400, 16)
        elbo = model.log_weights(every, 400, torch.Generator().manual_seed(5))  # (16, 400)
    assert 0.5 * np.abs(q.numpy() - sampled / 100_000).sum() < 0.01
    # β = 1: the closed-form-KL objective and the Monte Carlo ELBO estimate the same −ELBO
    gap = objective.mean(0) + elbo.mean(1)
    error = 3 * (objective.var(0) / 400 + elbo.var(1) / 400).sqrt() + 1e-3
    assert (gap.abs() < error).all()


# --- gan ------------------------------------------------------------------------------------

def test_gan_has_no_likelihood_and_samples_straight_through():
    torch.manual_seed(0)
    model = build("gan", L=3, K=4, hidden=16)
    assert not model.has_log_prob and not model.exact_log_prob
    with pytest.raises(QtomoError, match=r"^gan has no log_prob \(an implicit model"):
        model.log_prob(torch.zeros(2, 3, dtype=torch.long))
    a, x = model.generate(64, torch.Generator().manual_seed(1))
    assert torch.equal(x.detach().view(64, 3, 4), torch.nn.functional.one_hot(a, 4).float())
    x.square().sum().backward()  # the relaxed gradient reaches the generator
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    again = model.sample(64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, again)


def test_each_adversarial_update_moves_only_its_network():
    torch.manual_seed(0)
    model = build("gan", L=3, K=4, hidden=16, critic_steps=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.randint(4, (32, 3))

    def snapshot(network):
        return [p.detach().clone() for p in network.parameters()]

    moved = []
    for _ in range(2):
        generator, critic = snapshot(model.generator), snapshot(model.critic)
        loss = model.train_step(data, optimizer, clip=1.0)
        moved.append((any(not torch.equal(a, b) for a, b in zip(generator, snapshot(
            model.generator), strict=True)), any(not torch.equal(a, b) for a, b in zip(
                critic, snapshot(model.critic), strict=True))))
        assert loss.ndim == 0 and torch.isfinite(loss)
    assert moved == [(False, True), (True, True)]  # the generator every 2nd step


def test_gan_validation_criterion_prefers_its_own_distribution():
    """v = MMD² − E_P k: lowest when the records come from Q itself (MMD² ≈ 0)."""
    torch.manual_seed(0)
    model = build("gan", L=4, K=4, hidden=16).eval()
    with torch.no_grad():
        generator = model.generator[-1]
        generator.weight.mul_(10.0)  # far from uniform
    own = model.sample(4096, generator=torch.Generator().manual_seed(9))
    uniform = torch.randint(4, (4096, 4), generator=torch.Generator().manual_seed(9))
    assert model.training_nll(own).mean() < model.training_nll(uniform).mean() - 0.01
    assert torch.equal(model.training_nll(own), model.training_nll(own))  # deterministic


# --- registry, command line and bad input -----------------------------------------------------

def test_every_hyperparameter_has_one_type_and_floats_parse_as_floats():
    types = hyperparameter_types()
    assert types["beta"] is float and types["penalty"] is float and types["latent"] is int
    assert types["contrastive"] is str and types["transform"] is str


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return simulate("tfim", 3, samples=1200, method="exact", out=folder / "tfim3.h5", quiet=True)


@pytest.mark.parametrize("argv, message", [
    (["--model", "rbm", "--gibbs-steps", "0"],
     "rbm hyperparameter gibbs_steps must be an integer in 1..1000; got 0"),
    (["--model", "vae", "--latent", "0"],
     "vae hyperparameter latent must be an integer in 1..4096; got 0"),
    (["--model", "vae", "--beta", "-0.5"],
     "vae hyperparameter beta must be a number in 0..1000000.0; got -0.5"),
    (["--model", "rbm", "--contrastive", "gibbs"],
     "rbm hyperparameter contrastive must be one of cd, pcd; got 'gibbs'"),
])
def test_bad_hyperparameters_are_one_line_and_exit_2(tiny_data, tmp_path, capsys, argv, message):
    out = tmp_path / "m.pt"
    assert main(["fit", "--data", str(tiny_data), "--out", str(out), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"qtomo: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("family, options", [
    ("cnn", ["--channels", "8"]),
    ("rbm", ["--hidden", "8", "--gibbs-steps", "2", "--burn-in", "20"]),
    ("vae", ["--latent", "2", "--hidden", "16", "--beta", "0.5"]),
    ("gan", ["--latent", "2", "--hidden", "16", "--penalty", "5.5"]),
    ("flow", ["--layers", "2", "--hidden", "8", "--transform", "additive"]),
])
def test_every_family_fits_and_resumes_from_the_command_line(tiny_data, tmp_path, family,
                                                             options):
    out = tmp_path / f"{family}.pt"
    common = ["--batch-size", "128", "--quiet", "--device", "cpu"]
    assert main(["fit", "--model", family, "--data", str(tiny_data), "--out", str(out),
                 "--epochs", "1", *options, *common]) == 0
    assert main(["fit", "--resume", str(out), "--epochs", "2", *common]) == 0
    model = load(out)
    assert model.family == family
    assert model.sample(10, generator=torch.Generator().manual_seed(0)).shape == (10, 3)
    if family == "vae":
        assert model.config.beta == 0.5 and isinstance(model.config.beta, float)
    if family == "gan":
        assert model.config.penalty == 5.5
        trainer = torch.load(tmp_path / "gan.last.pt", weights_only=True)["trainer"]
        assert list(trainer["optimizer"]["param_groups"][0]["betas"]) == [0.5, 0.9]
    assert torch.load(out, weights_only=True)["config"]["training"]["epochs_run"] == 2


# --- evaluation of a model without log_prob --------------------------------------------------

class SamplesOnly:
    """The exact distribution of a state, seen only through its samples (as a GAN is)."""

    exact_log_prob = False
    has_log_prob = False
    family = "samples-only"
    povm = None  # a model of the records alone

    def __init__(self, truth):
        self.truth, self.L, self.K = truth, truth.L, truth.K

    def log_prob(self, a):
        raise QtomoError("no log_prob")

    def sample(self, n, generator=None):
        return self.truth.sample(n, generator)


def test_histogram_fidelity_agrees_with_the_exact_one():
    """Q = product of P's one-site marginals, sampled; F_c(P, Q) by enumeration is the truth."""
    from qtomo.metrics import histogram_classical_fidelity
    from qtomo.povm import get_povm
    from qtomo.states.exact import ExactDistribution, tfim_ground_state

    povm = get_povm("pauli4")
    p = tfim_ground_state(4, h=0.5).distribution(povm)
    every = enumerate_outcomes(4, 4)
    marginals = [np.bincount(every[:, i], weights=p.probabilities, minlength=4) for i in range(4)]
    q = np.prod([marginals[i][every[:, i]] for i in range(4)], axis=0)
    exact = np.sum(np.sqrt(p.probabilities * q)) ** 2
    test, log_p = p.sample_with_log_prob(20000, torch.Generator().manual_seed(1))
    drawn = ExactDistribution(povm, q).sample(200000, torch.Generator().manual_seed(2))
    estimate = histogram_classical_fidelity(drawn.numpy(), test.numpy(), log_p.numpy(), 4)
    assert exact < 0.95 and 0 < estimate.stderr < 0.01
    assert abs(estimate.value - exact) < 3 * estimate.stderr


def test_a_model_without_log_prob_is_evaluated_from_samples(tmp_path):
    from qtomo.data import read_dataset
    from qtomo.evaluate import evaluate
    from qtomo.povm import get_povm
    from qtomo.report import format_report
    from qtomo.states.exact import tfim_ground_state

    dataset = read_dataset(simulate("tfim", 4, h=0.9, samples=4000, seed=3, method="exact",
                                    out=tmp_path / "tfim4.h5", quiet=True))
    model = SamplesOnly(tfim_ground_state(4, h=0.9).distribution(get_povm("pauli4")))
    evaluation = evaluate(model, dataset, samples=100000)
    report = evaluation.as_dict()
    assert "nll" not in report and "kl" not in report and "density_matrix" not in report
    fidelity = report["classical_fidelity"]
    assert fidelity["method"] == "histogram" and fidelity["samples"] == 100000
    assert 0.995 < fidelity["value"] <= 1 + 3 * fidelity["stderr"]
    quantum = report["quantum_fidelity"]
    assert quantum["method"] == "monte-carlo" and abs(quantum["value"] - 1) < 4 * quantum["stderr"]
    zz = report["observables"]["ZZ"]
    assert report["observables"]["method"] == "monte-carlo"
    assert np.all(np.abs(np.asarray(zz["model"]["value"]) - zz["reference"])
                  <= 4 * np.asarray(zz["model"]["stderr"]) + 1e-12)
    assert report["model"]["log_prob"] == "none"
    blocks = report["reduced_states"]  # from the model's samples alone
    assert blocks and all(block["method"] == "monte-carlo" for block in blocks)
    # SGS projection biases block fidelities from samples low (docs/evaluate.md "Reduced states of
    # blocks"): the 10^5 exact samples behind the model's blocks beat the 4 000 records of the data
    assert all(block["fidelity"]["value"] > max(0.94, block["data"]["fidelity"]["value"])
               for block in blocks)
    assert any("skipped NLL, KL, the exact ρ" in note for note in report["warnings"])
    text = format_report(evaluation)
    nll_row = next(line for line in text.splitlines() if line.startswith("NLL"))
    assert nll_row.split()[5] == "—" and "note: F_c from a histogram" in text
    with pytest.raises(QtomoError, match="has no log_prob, and exact evaluation sums"):
        evaluate(model, dataset, method="exact")


def test_cli_evaluates_a_gan_from_its_samples(tiny_data, tmp_path, capsys):
    out = tmp_path / "gan.pt"
    assert main(["fit", "--model", "gan", "--data", str(tiny_data), "--out", str(out),
                 "--epochs", "1", "--hidden", "16", "--batch-size", "128", "--quiet",
                 "--device", "cpu"]) == 0
    json_path = tmp_path / "gan.json"
    assert main(["evaluate", "--model", str(out), "--samples", "5000", "--json", str(json_path),
                 "--quiet"]) == 0
    import json

    report = json.loads(json_path.read_text())
    assert "nll" not in report and report["classical_fidelity"]["method"] == "histogram"
    assert main(["evaluate", "--model", str(out), "--method", "exact", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("qtomo: error: the gan model has no log_prob")


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["cnn", "rbm", "vae", "gan"])
def test_new_families_run_on_cuda(family):
    torch.manual_seed(0)
    model = build(family, L=4, K=4, **({"hidden": 16} if family != "cnn" else {})).to("cuda")
    generator = torch.Generator("cuda").manual_seed(0)
    a = model.sample(500, generator=generator)
    assert a.device.type == "cuda" and a.shape == (500, 4)
    if family == "gan":
        optimizer = torch.optim.AdamW(model.parameters(), **model.optimizer_defaults)
        assert torch.isfinite(model.train_step(a, optimizer, 1.0))
        assert model.eval().training_nll(a).device.type == "cuda"
        return
    model.train()
    model.training_nll(a).mean().backward()
    with torch.no_grad():
        log_q = model.eval().log_prob(torch.as_tensor(enumerate_outcomes(4, 4), device="cuda"))
    assert log_q.device.type == "cuda"
    assert log_q.double().exp().sum().item() == pytest.approx(1.0, abs=0.02)
