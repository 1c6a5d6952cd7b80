"""Property-based fuzzing of qtomo's doors (issue 14, "keep it so"), with hypothesis.

The contract everywhere: bad input is a :class:`~qtomo.errors.QtomoError` with one line from the
API (a ``DataFormatError`` or ``CheckpointError`` naming the file for files), ``qtomo: error: …``
and exit status 2 from the CLI, and nothing is left behind; input that is accepted is
self-consistent (a dataset that reads has rows in range and finite ln P ≤ 0; a written dataset
reads back equal; a checkpoint that loads evaluates to finite ln Q and resumes).

Derandomized with fixed example counts, so the run is the same every time and fits the default
test time (about a minute on a 2-core machine).
"""

import decimal
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qtomo.cli import build_parser, main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import CheckpointError, DataFormatError, QtomoError
from qtomo.models import build, load_checkpoint
from qtomo.models.checkpoint import describe
from qtomo.povm import get_povm
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def one_line(error: BaseException) -> None:
    assert str(error) and "\n" not in str(error), repr(error)


# --- CLI numbers --------------------------------------------------------------------------

COUNT_FLAGS = [  # (command, flag, its destination, the least value)
    (["simulate"], "--samples", "samples", 1), (["simulate"], "--L", "L", 1),
    (["simulate"], "--chi-max", "chi_max", 1), (["fit"], "--epochs", "epochs", 0),
    (["fit"], "--batch-size", "batch_size", 1), (["fit"], "--warmup", "warmup", 0),
    (["fit"], "--patience", "patience", 0), (["fit"], "--hidden", "hp_hidden", 0),
    (["evaluate", "--model", "m.pt"], "--samples", "samples", 1),
    (["simulate"], "--seed", "seed", 0)]

number_text = st.one_of(
    st.integers(-10**25, 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-99, 99), st.integers(-500, 500)),
    st.text(alphabet="0123456789.eE+-_xXnaifINF ", min_size=1, max_size=14),
)


@settings(FUZZ, max_examples=200)
@given(flag=st.sampled_from(COUNT_FLAGS), text=number_text)
def test_cli_counts_parse_to_the_exact_integer_or_fail_in_one_line(flag, text, capsys):
    prefix, name, dest, low = flag
    argv = [*prefix, f"{name}={text}"]
    try:
        value = getattr(build_parser().parse_args(argv), dest)
    except QtomoError as error:
        one_line(error)
        assert name in str(error)
        value = None
    if not isinstance(value, int):  # refused (or argparse's "--samples=--" quirk: [])
        event("refused")
        if prefix[0] != "evaluate":  # through main: exit 2, one line, before any work
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith("qtomo: error: ") and err.count("\n") == 1
        return
    event("parsed")
    assert isinstance(value, int) and not isinstance(value, bool) and value >= low
    assert decimal.Decimal(text.strip().replace("_", "")) == value  # exactly what was written


# --- dataset files ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset_bytes(tmp_path_factory):
    """A valid L = 3 TFIM dataset (exact path, with ψ) and a GHZ one (with an MPS), as bytes."""
    folder = tmp_path_factory.mktemp("fuzz-data")
    tfim = simulate("tfim", 3, h=0.7, samples=600, seed=2, out=folder / "t.h5", quiet=True)
    ghz = simulate("ghz", 3, povm="pauli6", samples=300, method="mps", out=folder / "g.h5",
                   quiet=True)
    return tfim.read_bytes(), ghz.read_bytes()


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=4),
    st.sampled_from(["tfim", "ghz", "exact", "mps", "open", "periodic", "pauli4", "tetra"]),
)
ATTRIBUTES = ["format", "version", "qtomo_version", "state", "L", "povm", "seed", "method", "J",
              "h", "boundary", "chi_max", "truncation_error", "warning", "product_state"]
ITEMS = ["outcomes", "log_prob", "povm/elements", "reference", "reference/energy",
         "reference/X", "reference/ZZ", "reference/entropy", "reference/psi", "reference/mps",
         "reference/mps/B_0", "reference/mps/B_1"]


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from([np.uint8, np.int64, np.float64, np.complex128, "S3"]))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    size = int(np.prod(shape))
    if dtype == "S3":
        return np.array(draw(st.lists(st.text("abc", max_size=3), min_size=size,
                                      max_size=size)), dtype="S3").reshape(shape)
    values = draw(st.lists(st.one_of(st.integers(-3, 9), st.floats(allow_nan=True,
                                                                   allow_infinity=True)),
                           min_size=size, max_size=size))
    with np.errstate(all="ignore"):
        array = np.array(values, dtype=np.float64).reshape(shape)
        return np.nan_to_num(array).astype(dtype) if dtype in (np.uint8, np.int64) else (
            array.astype(dtype))


@st.composite
def dataset_mutations(draw):
    """A list of edits (a callable on the open h5py file) and byte-level damage."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set attribute", "delete attribute", "replace item",
                                     "delete item", "group for item", "write cell"]))
        if kind == "set attribute":
            name, value = draw(st.sampled_from(ATTRIBUTES)), draw(VALUES)
            edits.append(lambda f, n=name, v=value: f.attrs.__setitem__(n, v)
                         if v is not None else None)
        elif kind == "delete attribute":
            name = draw(st.sampled_from(ATTRIBUTES))
            edits.append(lambda f, n=name: f.attrs.__delitem__(n) if n in f.attrs else None)
        elif kind in ("replace item", "delete item", "group for item"):
            name, array = draw(st.sampled_from(ITEMS)), draw(arrays())

            def edit(f, n=name, a=array, k=kind):
                if n in f:
                    del f[n]
                if k == "replace item":
                    f.create_dataset(n, data=a)
                elif k == "group for item":
                    f.create_group(n)
            edits.append(edit)
        else:
            row, value = draw(st.integers(0, 599)), draw(st.floats(allow_nan=True,
                                                                    allow_infinity=True))
            name = draw(st.sampled_from(["log_prob", "outcomes"]))

            def edit(f, n=name, r=row, v=value):
                if n in f and isinstance(f[n], h5py.Dataset) and f[n].shape and \
                        f[n].shape[0] > r:
                    with np.errstate(all="ignore"):
                        f[n][r] = np.nan_to_num(v) % 256 if n == "outcomes" else v
            edits.append(edit)
    truncate = draw(st.one_of(st.none(), st.floats(0, 1)))
    flips = draw(st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), max_size=2))
    return edits, truncate, flips


def check_dataset_contract(path: Path) -> None:
    """read_dataset either refuses in one line naming the file, or serves checked rows."""
    try:
        dataset = read_dataset(path)
    except DataFormatError as error:
        one_line(error)
        assert str(path) in str(error)
        event("refused")
        return
    event("read")
    with dataset:
        for outcomes, log_prob in dataset.iter_chunks(256):
            assert outcomes.dtype == np.uint8 and outcomes.shape[1] == dataset.L
            assert outcomes.size == 0 or int(outcomes.max()) < dataset.K
            if log_prob is not None:
                assert np.all(np.isfinite(log_prob)) and np.all(log_prob <= 1e-9)
        reference = dataset.reference
        if "psi" in reference:
            assert abs(np.linalg.norm(reference["psi"]) - 1) < 1e-6
        for name in ("X", "Z", "ZZ", "XX", "entropy", "energy"):
            if name in reference:
                assert np.all(np.isfinite(reference[name]))
        if dataset.attrs.get("state") == "tfim":
            assert all(np.isfinite(dataset.attrs[key]) for key in ("J", "h"))


@settings(FUZZ, max_examples=150)
@given(which=st.integers(0, 1), mutation=dataset_mutations())
def test_dataset_reader_refuses_in_one_line_or_serves_checked_rows(dataset_bytes, which,
                                                                   mutation):
    edits, truncate, flips = mutation
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.h5"
        path.write_bytes(dataset_bytes[which])
        with h5py.File(path, "r+") as file:
            for edit in edits:
                try:
                    edit(file)
                except (ValueError, TypeError, KeyError, OSError):
                    pass  # an edit h5py cannot make here (a group under a dataset, …)
        data = bytearray(path.read_bytes())
        for position, mask in flips:
            data[int(position * (len(data) - 1))] ^= mask
        if truncate is not None:
            data = data[: int(truncate * len(data))]
        path.write_bytes(bytes(data))
        check_dataset_contract(path)


@st.composite
def writer_inputs(draw):
    """Well-formed records with up to two of their parts replaced by arbitrary values."""
    faults = draw(st.sets(st.sampled_from(["L", "outcomes", "log_prob", "n_records",
                                           "reference", "attrs"]), max_size=2))
    L = draw(VALUES) if "L" in faults else draw(st.integers(1, 3))
    n = draw(st.integers(1, 4))
    shape = (n, L) if isinstance(L, int) and not isinstance(L, bool) and 0 < L <= 4 else (n, 2)
    size = shape[0] * shape[1]
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.int64]))
    outcomes = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size).map(
        lambda v: np.array(v, dtype=dtype).reshape(shape)))
    log_prob = draw(st.lists(st.floats(-50, 0), min_size=n, max_size=n).map(np.array))
    if "outcomes" in faults:
        outcomes = draw(st.one_of(arrays(), st.lists(
            st.integers(-1, 6), min_size=size, max_size=size).map(
                lambda v: np.array(v).reshape(shape))))
    if "log_prob" in faults:
        log_prob = draw(st.one_of(arrays(), st.lists(
            st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n).map(
                np.array)))
    n_records = draw(st.one_of(st.integers(-1, 6), VALUES)) if "n_records" in faults else n
    reference = draw(st.dictionaries(st.sampled_from(["energy", "X", "ZZ", "psi", "entropy"]),
                                     arrays(), max_size=2)) if "reference" in faults else {}
    attrs = draw(st.dictionaries(st.sampled_from(ATTRIBUTES[3:]), VALUES, max_size=2)
                 ) if "attrs" in faults else {}
    return outcomes, log_prob, L, attrs, reference, n_records


@settings(FUZZ, max_examples=150)
@given(inputs=writer_inputs())
def test_writer_refuses_in_one_line_or_writes_what_its_reader_accepts(inputs):
    outcomes, log_prob, L, attrs, reference, n_records = inputs
    base = {"state": "product", "seed": 0, "method": "exact", "L": L, **attrs}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "written.h5"
        try:
            write_dataset(path, povm=get_povm("pauli4"), attrs=base, n_records=n_records,
                          chunks=[(outcomes, log_prob)], reference=reference)
        except QtomoError as error:
            one_line(error)
            assert list(Path(folder).iterdir()) == []
            event("refused")
            return
        event("written")
        dataset = read_dataset(path)  # never a file its own reader refuses
        with dataset:
            assert np.array_equal(dataset.outcomes(), outcomes)
            assert np.array_equal(dataset.log_prob(), log_prob.astype(np.float64))


# --- checkpoints --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    """A two-epoch GRU run (best checkpoint and .last.pt) on 1 200 records of L = 3."""
    folder = tmp_path_factory.mktemp("fuzz-run")
    data = simulate("tfim", 3, samples=1200, seed=4, out=folder / "d.h5", quiet=True)
    torch.manual_seed(0)
    result = fit(build("gru", L=3, K=4, hidden=4, layers=1), read_dataset(data),
                 TrainOptions(epochs=2, batch_size=256, warmup=0), out=folder / "m.pt",
                 device="cpu", quiet=True)
    return data, result.checkpoint, result.last


TENSOR_VALUES = st.builds(
    lambda shape, dtype, fill: torch.full(shape, fill, dtype=torch.float64).to(dtype),
    st.lists(st.integers(0, 3), max_size=2).map(tuple),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]),
    st.floats(allow_nan=True, allow_infinity=True))
PAYLOAD_VALUES = st.one_of(VALUES, TENSOR_VALUES, st.just({}), st.just([]),
                           st.dictionaries(st.text("abc", max_size=3), VALUES, max_size=2))


def _paths(value, prefix=()):
    """Every key path of nested dicts and lists (tensors are leaves)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@settings(FUZZ, max_examples=80)
@given(which=st.integers(0, 1), data=st.data())
def test_checkpoint_loader_refuses_in_one_line_or_gives_a_working_model(fuzz_run, which, data):
    dataset, best, last = fuzz_run
    source = (best, last)[which]
    payload = torch.load(source, weights_only=True)
    paths = [p for p in _paths(payload) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = payload
        try:
            for key in path[:-1]:
                parent = parent[key]
            if not isinstance(parent, dict | list):
                continue  # an earlier edit replaced the container
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(PAYLOAD_VALUES)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit removed the path
    truncate = data.draw(st.one_of(st.none(), st.floats(0, 1)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / source.name
        torch.save(payload, path)
        if truncate is not None:
            path.write_bytes(path.read_bytes()[: int(truncate * path.stat().st_size)])
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            one_line(error)
            assert str(path) in str(error)
            event("refused")
            return
        describe(checkpoint)  # what `qtomo info` prints
        model = checkpoint.model  # its config may describe another L or K than the run's
        a = torch.randint(0, model.K, (16, model.L), generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(model.log_prob(a)).all()
        if checkpoint.trainer is not None:  # it must resume, or refuse in one line
            out = Path(folder) / "resumed.pt"
            shutil.copy(path, out.with_name("resumed.last.pt"))
            argv = ["fit", "--resume", str(out), "--data", str(dataset), "--epochs", "3",
                    "--quiet", "--device", "cpu"]
            status = main(argv)
            assert status in (0, 2)
            event(f"resume exit {status}")
        else:
            event("loaded")
