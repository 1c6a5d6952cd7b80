"""Autoregressive families: normalisation, sampling, causality, registry and checkpoints."""

import numpy as np
import pytest
import torch
from scipy import stats

from qtomo.errors import CheckpointError, QtomoError
from qtomo.models import build, family_classes, load, load_checkpoint, save_checkpoint
from qtomo.models.autoregressive import AutoregressiveModel
from qtomo.models.registry import FAMILIES
from qtomo.povm import enumerate_outcomes

AUTOREGRESSIVE = [name for name in FAMILIES
                  if issubclass(family_classes(name)[0], AutoregressiveModel)]
#: sizes that keep the tests fast (a family not named here runs at its defaults)
SMALL = {"rnn": {"hidden": 16}, "gru": {"hidden": 16}, "lstm": {"hidden": 16},
         "transformer": {"d_model": 16, "heads": 2}, "cnn": {"channels": 16}}


def peaked(name: str, L: int, scale: float = 8.0, K: int = 4) -> AutoregressiveModel:
    """A small model whose conditionals are far from uniform (output layer scaled by ``scale``)."""
    torch.manual_seed(0)
    model = build(name, L=L, K=K, **SMALL.get(name, {}))
    with torch.no_grad():
        model.head.weight.mul_(scale)
        model.head.bias.normal_(0.0, 1.0)
    return model.eval()


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_probabilities_sum_to_one_by_enumeration(name):
    model = peaked(name, L=5)
    a = torch.from_numpy(enumerate_outcomes(5, 4))  # (4^5, 5)
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(a).double(), 0).exp().item()
    assert abs(total - 1.0) < 1e-5


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("K", [4, 6])
@pytest.mark.parametrize("cache", [True, False])
def test_tree_enumeration_equals_log_prob_of_every_record(name, K, cache):
    """The prefix-tree walk (blocks of 7 prefixes) against one teacher-forced pass per record."""
    model = peaked(name, L=5, K=K)
    if not cache:  # the default step and state of the base class
        model.step = lambda previous, state: AutoregressiveModel.step(model, previous, state)
        model.select_state = lambda state, index: AutoregressiveModel.select_state(
            model, state, index)
    walked = torch.cat(list(model.enumerate_log_probs(block=7)))  # (K^5,)
    with torch.no_grad():
        forced = model.log_prob(torch.from_numpy(enumerate_outcomes(5, K))).double()  # (K^5,)
    assert walked.dtype == torch.float64 and walked.shape == (K**5,)
    # log_prob sums float32 conditionals: a few ulps of ln Q ≈ −54 (the cnn's rarest) is 1e-5
    assert torch.allclose(walked, forced, atol=1e-5, rtol=1e-6)
    assert abs(torch.logsumexp(walked, 0).exp().item() - 1.0) < 1e-6


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_log_prob_is_sum_of_conditionals(name):
    model = peaked(name, L=6)
    a = model.sample(64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logq = model.conditionals(a)  # (B, L, K)
        by_hand = sum(logq[torch.arange(64), i, a[:, i]] for i in range(6))
        assert torch.allclose(torch.logsumexp(logq, -1), torch.zeros(64, 6), atol=1e-6)
        assert torch.allclose(model.log_prob(a), by_hand, atol=1e-5)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_cached_steps_equal_teacher_forcing(name):
    model = peaked(name, L=7)
    a = model.sample(32, generator=torch.Generator().manual_seed(2))  # (B, L)
    with torch.no_grad():
        teacher = model.conditionals(a)  # (B, L, K)
        previous, state, stepped = torch.full((32,), 4), None, []
        for i in range(7):
            logits, state = model.step(previous, state)
            stepped.append(torch.log_softmax(logits, -1))
            previous = a[:, i]
    assert torch.allclose(torch.stack(stepped, 1), teacher, atol=1e-5)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_cached_and_uncached_sampling_draw_the_same_records(name):
    model = peaked(name, L=6)
    cached = model.sample(200, generator=torch.Generator().manual_seed(3))
    uncached = model.sample(200, generator=torch.Generator().manual_seed(3), cache=False)
    assert cached.dtype == torch.long and cached.shape == (200, 6)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
@pytest.mark.parametrize("j", [0, 3, 5])
def test_changing_site_j_leaves_earlier_conditionals_unchanged(name, j):
    model = peaked(name, L=6)
    a = model.sample(16, generator=torch.Generator().manual_seed(4))
    b = a.clone()
    b[:, j] = (b[:, j] + 1) % 4
    with torch.no_grad():
        qa, qb = model.conditionals(a), model.conditionals(b)
    assert torch.equal(qa[:, : j + 1], qb[:, : j + 1])
    if j < 5:  # later sites do depend on site j
        assert not torch.allclose(qa[:, j + 1:], qb[:, j + 1:])


@pytest.mark.parametrize("name", ["gru", "lstm", "transformer", "cnn"])
def test_samples_follow_log_prob_chi_squared(name):
    """10^5 samples over the 4^3 records against exp(log_prob); fixed seed, p-value > 1e-3."""
    model = peaked(name, L=3, scale=2.0)
    a = model.sample(100_000, generator=torch.Generator().manual_seed(5))
    index = (a * torch.tensor([16, 4, 1])).sum(1)
    observed = np.bincount(index.numpy(), minlength=64)
    with torch.no_grad():
        expected = model.log_prob(torch.from_numpy(enumerate_outcomes(3, 4))).double().exp()
    expected = expected.numpy() * 100_000 / expected.sum().item()
    rare = expected < 5  # pooled into one bin so that the χ² approximation holds
    if rare.any():
        observed = np.append(observed[~rare], observed[rare].sum())
        expected = np.append(expected[~rare], expected[rare].sum())
    assert expected.size >= 40
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_build_rejects_bad_names_and_hyperparameters():
    with pytest.raises(QtomoError, match="unknown model 'gpt'; expected one of: rnn, gru"):
        build("gpt", L=4, K=4)
    with pytest.raises(QtomoError, match="unknown hyperparameter 'heads' for model 'gru'"):
        build("gru", L=4, K=4, heads=2)
    with pytest.raises(QtomoError, match="hidden must be an integer in 1..4096; got 0"):
        build("lstm", L=4, K=4, hidden=0)
    with pytest.raises(QtomoError, match="layers must be an integer in 1..16; got True"):
        build("rnn", L=4, K=4, layers=True)
    with pytest.raises(QtomoError, match="d_model must be a multiple of heads = 3; got 64"):
        build("transformer", L=4, K=4, heads=3)
    with pytest.raises(QtomoError, match="L must be an integer >= 1; got 0"):
        build("gru", L=0, K=4)


def test_defaults_and_published_settings():
    assert build("gru", L=4, K=4).config.__dict__ == {"hidden": 64, "layers": 2}
    assert build("gru", L=4, K=4, hidden=100, layers=3).core.num_layers == 3
    transformer = build("transformer", L=4, K=4).config
    assert (transformer.layers, transformer.d_model, transformer.heads) == (2, 64, 4)
    assert all(p.dtype == torch.float32 for p in build("lstm", L=4, K=4).parameters())


def test_registry_knows_the_flow_family():
    model = build("flow", L=3, K=4, layers=2, hidden=8)
    assert (model.family, model.L, model.K) == ("flow", 3, 4)


@pytest.mark.parametrize("name", ["gru", "transformer", "cnn"])
def test_checkpoint_round_trip(tmp_path, name):
    model = peaked(name, L=5)
    data = {"path": "data/x.h5", "train_rows": [0, 90], "val_rows": [90, 100]}
    path = save_checkpoint(tmp_path / "m.pt", model, povm="pauli4", data=data,
                           training={"epochs_run": 1})
    checkpoint = load_checkpoint(path)
    a = model.sample(50, generator=torch.Generator().manual_seed(6))
    assert torch.equal(checkpoint.model.log_prob(a), model.log_prob(a))
    assert checkpoint.config["povm"] == "pauli4" and checkpoint.config["data"] == data
    assert checkpoint.config["hyperparameters"] == SMALL[name] | checkpoint.config[
        "hyperparameters"]
    assert not checkpoint.model.training and checkpoint.trainer is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


def test_foreign_corrupt_and_mismatched_checkpoints(tmp_path):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")
    good = save_checkpoint(tmp_path / "good.pt", build("gru", L=4, K=4, hidden=8), povm="tetra")
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:300])
    payload = torch.load(good, weights_only=True)
    payload["config"]["hyperparameters"]["hidden"] = 9
    torch.save(payload, tmp_path / "mismatch.pt")
    expected = {"missing.pt": "no such checkpoint file", "text.pt": "not a torch.save archive",
                "foreign.pt": "expected format 'qtomo.checkpoint'",
                "pickled.pt": "objects other than tensors", "truncated.pt": "not a",
                "mismatch.pt": "config does not match the stored tensors \\(size mismatch"}
    for name, message in expected.items():
        with pytest.raises(CheckpointError, match=message):
            load(tmp_path / name)
