"""The contract every registered family keeps (docs/training.md "The model interface"), checked
for each entry of the registry with its default hyperparameters: samples in range and
reproducible, ln Q finite and normalised where it is exact, bad records refused in one line,
and a checkpoint that loads back to the same distribution. Records of every integer dtype and
counts that are not whole numbers, also drawn by hypothesis."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qtomo.errors import QtomoError
from qtomo.models import build, family_classes, load, save_checkpoint
from qtomo.models.registry import FAMILIES
from qtomo.povm import enumerate_outcomes, get_povm
from tests.fuzz import FUZZ, accepted_or_refused

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


@pytest.fixture(scope="module")
def models():
    """One model per kind of log_prob: recurrent, Born rule (mps), energy-based (rbm)."""
    torch.manual_seed(0)
    return {family: build(family, L=L, K=K, povm=get_povm("pauli4")).eval()
            for family in ("gru", "mps", "rbm")}


DTYPES = ["uint8", "int8", "int16", "int32", "int64", "float32", "bool"]


@st.composite
def records(draw):
    """Records of a random dtype, container (torch or numpy), shape and range."""
    rows = draw(st.integers(0, 4))
    width = draw(st.sampled_from([L, L, L, L - 1, L + 1]))
    values = draw(st.lists(st.integers(-2, K + 1), min_size=rows * width,
                           max_size=rows * width))
    array = np.array(values, dtype=np.int64).reshape(rows, width)
    if draw(st.booleans()):
        array = array.reshape(-1) if rows == 1 else array
    dtype = draw(st.sampled_from(DTYPES))
    with np.errstate(all="ignore"):
        array = array.astype(dtype)
    return torch.from_numpy(array) if draw(st.booleans()) else array, array


@settings(FUZZ, max_examples=120)
@given(family=st.sampled_from(["gru", "mps", "rbm"]), drawn=records())
def test_log_prob_takes_every_integer_record_or_refuses_in_one_line(models, family, drawn):
    given_records, array = drawn
    model = models[family]
    valid = (array.dtype.kind in "iu" and array.ndim == 2 and array.shape[1] == L
             and (array.size == 0 or (array.min() >= 0 and array.max() < K)))
    log_q = accepted_or_refused(lambda: model.log_prob(given_records), valid,
                                (family, array.dtype, array.shape))
    if log_q is None:
        return
    expected = model.log_prob(torch.from_numpy(array.astype(np.int64)))
    assert torch.equal(log_q, expected)
    assert bool((log_q <= 1e-6).all())


@settings(FUZZ, max_examples=60)
@given(family=st.sampled_from(["gru", "mps", "rbm"]),
       n=st.one_of(st.integers(-3, 4), st.floats(-2, 4), st.booleans(), st.text(max_size=2),
                   st.integers(0, 3).map(np.int32)))
def test_sample_takes_a_whole_count_or_refuses_in_one_line(models, family, n):
    whole = isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0
    drawn = accepted_or_refused(lambda: models[family].sample(n), whole, (family, n))
    assert drawn is None or (drawn.shape == (int(n), L) and drawn.dtype == torch.int64)
