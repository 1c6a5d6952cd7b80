"""Property-based fuzzing of the doors hardened in issue 24, with hypothesis (the companion of
tests/test_fuzz.py, same contract and settings).

The API's entry points (``log_prob``/``training_nll`` with records of every dtype and shape,
``sample(n)``, the classical metrics, the fidelities with states of any normalisation) and the
import readers (randomly damaged files of each format): bad input is one line of
:class:`~qtomo.errors.QtomoError` and no file; accepted input gives what its valid form gives.
Derandomized with fixed example counts (about half a minute on a 2-core machine).
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.metrics import LOG_PROB_TOL, classical_fidelity, kl_divergence, nll
from qtomo.models import build
from qtomo.povm import get_povm
from qtomo.reconstruct import quantum_fidelity
from tests.test_fuzz import FUZZ, one_line

L, K = 3, 4


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


def accepted_or_refused(call, valid: bool, label=()):
    """``call()``'s result where ``valid``; else it must raise a one-line QtomoError (None)."""
    try:
        result = call()
    except QtomoError as error:
        one_line(error)
        assert not valid, (*label, error)
        event("refused")
        return None
    event("accepted")
    assert valid, label
    return result


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


log_values = st.one_of(st.floats(-30, 0), st.floats(allow_nan=True, allow_infinity=True),
                       st.floats(0, 1e-7))


@settings(FUZZ, max_examples=150)
@given(log_p=st.lists(log_values, max_size=5), log_q=st.lists(log_values, max_size=5))
def test_metrics_refuse_what_is_not_a_log_probability(log_p, log_q):
    p, q = np.array(log_p, dtype=float), np.array(log_q, dtype=float)
    valid = (p.size == q.size > 0 and np.all(np.isfinite(p)) and not np.isnan(q).any()
             and np.all(p <= LOG_PROB_TOL) and np.all(q <= LOG_PROB_TOL))
    figures = accepted_or_refused(
        lambda: (kl_divergence(p, q), classical_fidelity(p, q), nll(q)), valid, (p, q))
    if figures is None:
        return
    kl, fidelity, cross = figures
    assert cross.value >= -LOG_PROB_TOL and fidelity.value >= 0
    assert np.isclose(kl.value, np.mean(p - q)) or np.isinf(kl.value)


@settings(FUZZ, max_examples=100)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 1.0, 2.0, 0.5, 1 + 1e-9]),
       trace=st.sampled_from([1.0, 1.0, 3.0, 1 + 1e-9]), mixed=st.booleans(),
       poison=st.booleans())
def test_fidelity_is_in_0_1_for_states_and_refused_otherwise(seed, scale, trace, mixed,
                                                              poison):
    rng = np.random.default_rng(seed)
    D = 4
    vector = rng.normal(size=D) + 1j * rng.normal(size=D)
    vector /= np.linalg.norm(vector)
    factor = rng.normal(size=(D, D)) + 1j * rng.normal(size=(D, D))
    rho = factor @ factor.conj().T
    rho *= trace / np.trace(rho).real
    if poison:
        rho[0, 0] = np.nan if seed % 2 else np.inf
    target = np.outer(vector, vector.conj()) * scale if mixed else vector * np.sqrt(scale)
    valid = abs(scale - 1) < 1e-6 and abs(trace - 1) < 1e-6 and not poison
    fidelity = accepted_or_refused(lambda: quantum_fidelity(rho, target), valid,
                                   (seed, scale, trace, mixed, poison))
    assert fidelity is None or -1e-9 <= fidelity.value <= 1 + 1e-6


# --- import readers: damaged files of each format ---------------------------------------------

FORMATS = ["pauli-shots", "qucumber", "qiskit-counts", "netket", "aqt", "genmodel"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each format's files of the same 300 pauli6 GHZ records (genmodel: their data.txt), as
    {format: [path, …]}."""
    from qtomo.formats import export_records
    from qtomo.simulate import simulate

    folder = tmp_path_factory.mktemp("fuzz-import")
    data = simulate("ghz", L, povm="pauli6", samples=300, seed=5, out=folder / "d.h5",
                    quiet=True)
    files = {}
    for fmt, name in (("pauli-shots", "s.npz"), ("qucumber", "s.txt"),
                      ("qiskit-counts", "c.json"), ("netket", "n.npz"), ("aqt", "a.npy")):
        files[fmt] = export_records(fmt, data, folder / name)
    theirs = np.array([2, 3, 4, 5, 0, 1])  # genmodel's Pauli order, inverted
    records = np.argsort(theirs)[read_dataset(data).outcomes()]
    np.savetxt(folder / "data.txt", records, fmt="%d")
    files["genmodel"] = [folder / "data.txt"]
    return files


@st.composite
def damage(draw):
    """One to three byte-level edits: cut, overwrite, insert, or duplicate a line."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cut", "overwrite", "insert", "repeat", "empty"]))
        edits.append((kind, draw(st.floats(0, 1)), draw(st.binary(min_size=1, max_size=6))))
    return edits


def _damaged(content: bytes, edits) -> bytes:
    for kind, where, text in edits:
        at = int(where * len(content))
        if kind == "cut":
            content = content[:at]
        elif kind == "overwrite":
            content = content[:at] + text + content[at + len(text):]
        elif kind == "insert":
            content = content[:at] + text + content[at:]
        elif kind == "repeat":
            lines = content.splitlines(keepends=True)
            if lines:
                line = lines[min(int(where * len(lines)), len(lines) - 1)]
                content = content[:at] + line + content[at:]
        else:
            content = b""
    return content


@settings(FUZZ, max_examples=150)
@given(fmt=st.sampled_from(FORMATS), which=st.integers(0, 1), edits=damage())
def test_import_of_a_damaged_file_refuses_in_one_line_or_reads_valid_records(exported, fmt,
                                                                             which, edits):
    from qtomo.formats import import_records

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        paths = []
        for index, source in enumerate(exported[fmt]):
            path, content = folder / source.name, source.read_bytes()
            path.write_bytes(_damaged(content, edits) if index == which % len(exported[fmt])
                             else content)
            paths.append(path)
        before = sorted(folder.iterdir())
        out = folder / "out.h5"
        try:
            import_records(fmt, paths, out, povm="Pauli" if fmt == "genmodel" else None,
                           allow_biased_bases=True)
        except QtomoError as error:
            one_line(error)
            assert sorted(folder.iterdir()) == before  # no output, inputs untouched
            event(f"{fmt} refused")
            return
        event(f"{fmt} read")
        with read_dataset(out) as dataset:
            outcomes = dataset.outcomes()
            assert outcomes.shape[1] >= 1 and outcomes.min() >= 0 and outcomes.max() < 6
