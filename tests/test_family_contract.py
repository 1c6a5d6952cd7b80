"""The contract every registered family keeps (docs/training.md "The model interface"), checked
for each entry of the registry with its default hyperparameters: samples in range and
reproducible, ln Q finite and normalised where it is exact, bad records refused in one line,
and a checkpoint that loads back to the same distribution."""

import numpy as np
import pytest
import torch

from qtomo.errors import QtomoError
from qtomo.models import build, family_classes, load, save_checkpoint
from qtomo.models.registry import FAMILIES
from qtomo.povm import enumerate_outcomes, get_povm

L, K = 3, 4





def small(family: str):
    """The family at its defaults on L = 3 qubits, ``pauli4`` records, seeded."""
    torch.manual_seed(0)
    return build(family, L=L, K=K, povm=get_povm("pauli4")).eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_samples_are_records_and_repeat_with_the_generator(family):
    model = small(family)
    first = model.sample(64, generator=torch.Generator().manual_seed(3))
    again = model.sample(64, generator=torch.Generator().manual_seed(3))
    assert first.shape == (64, L) and not first.dtype.is_floating_point
    assert int(first.min()) >= 0 and int(first.max()) < K
    assert torch.equal(first, again)


@pytest.mark.parametrize("family", [f for f in FAMILIES if family_classes(f)[0].has_log_prob])
def test_log_prob_is_finite_and_normalised_where_exact(family):
    model = small(family)
    records = torch.from_numpy(enumerate_outcomes(L, K))  # (K^L, L)
    with torch.no_grad():
        log_q = model.log_prob(records).double()
    assert log_q.shape == (K**L,) and torch.isfinite(log_q).all()
    if model.exact_log_prob:
        assert abs(torch.logsumexp(log_q, 0).exp().item() - 1.0) < 1e-4


@pytest.mark.parametrize("family", [f for f in FAMILIES if family_classes(f)[0].has_log_prob])
@pytest.mark.parametrize(("records", "message"), [
    (torch.zeros(2, L + 1, dtype=torch.long), f"shape (B, {L})"),
    (torch.zeros(2, L), "integer array"),
    (torch.tensor([[0, 1, K]]), f"got {K} in row 0"),
    (torch.tensor([[0, 1, 2], [0, -1, 0]]), "got -1 in row 1"),
])
def test_bad_records_are_one_line(family, records, message):
    with pytest.raises(QtomoError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        small(family).log_prob(records)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_checkpoint_loads_the_same_distribution(family, tmp_path):
    model = small(family)
    loaded = load(save_checkpoint(tmp_path / "m.pt", model, povm="pauli4"))
    assert type(loaded) is type(model)
    if model.has_log_prob and model.exact_log_prob:
        records = torch.from_numpy(enumerate_outcomes(L, K))
        with torch.no_grad():
            np.testing.assert_allclose(loaded.log_prob(records).numpy(),
                                       model.log_prob(records).numpy(), rtol=1e-6, atol=1e-6)
    else:  # same weights: the same samples from the same generator
        assert torch.equal(loaded.sample(32, generator=torch.Generator().manual_seed(5)),
                           model.sample(32, generator=torch.Generator().manual_seed(5)))


# --- moved from the zoo tests ------------------------------------------------------------
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


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_takes_records_of_every_integer_dtype(family):
    torch.manual_seed(0)
    model = build(family, L=3, K=4, povm=get_povm("pauli4")).eval()
    records = torch.tensor([[0, 1, 2], [3, 3, 0], [2, 0, 1]])
    method = model.log_prob if model.has_log_prob else model.training_nll
    torch.manual_seed(1)  # estimated ln Q (flow, vae) draws importance samples
    expected = method(records)
    variants = [records.to(dtype) for dtype in (torch.uint8, torch.int8, torch.int16,
                                                torch.int32)]
    variants += [records.numpy(), records.numpy().astype(np.uint8)]
    for variant in variants:
        torch.manual_seed(1)
        assert torch.allclose(method(variant), expected), (family, variant.dtype)
    with pytest.raises(QtomoError, match="integer array"):
        method(records.double())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_refuses_a_count_that_is_not_a_whole_number(family):
    torch.manual_seed(0)
    model = build(family, L=3, K=4, povm=get_povm("pauli4"))
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(QtomoError, match="number of records must be an integer >= 0"):
            model.sample(bad)
    assert model.sample(np.int64(2)).shape == (2, 3)  # variant: a numpy integer is a count
    assert model.sample(0).shape == (0, 3)
