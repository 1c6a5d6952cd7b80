"""The HDF5 v1 dataset: round trip, validation of corrupt and foreign files (attributes,
references), the writer's input checks, atomic writes, a read file that is replaced; hypothesis
fuzzing of the reader (mutated files) and the writer (drawn inputs)."""

import math
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qtomo.data import FORMAT, read_dataset, write_dataset
from qtomo.errors import DataFormatError, QtomoError
from qtomo.povm import get_povm
from qtomo.simulate import simulate
from qtomo.states.mps import ghz_mps
from tests.files import copy_and_edit, replace_item
from tests.fuzz import FUZZ, VALUES, one_line, read_or_refused


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tfim.h5"
    return simulate("tfim", 4, h=0.7, samples=5000, seed=3, out=path, quiet=True)


def test_round_trip(small_file):
    dataset = read_dataset(small_file)
    assert (dataset.L, dataset.K, dataset.n_records) == (4, 4, 5000)
    assert dataset.povm == get_povm("pauli4")
    assert dataset.attrs["format"] == FORMAT and dataset.attrs["version"] == 1
    assert dataset.attrs["state"] == "tfim" and dataset.attrs["h"] == 0.7
    assert dataset.attrs["method"] == "exact" and dataset.attrs["seed"] == 3
    with h5py.File(small_file) as file:
        assert file["outcomes"].dtype == np.uint8 and file["outcomes"].compression == "gzip"
        assert file["log_prob"].dtype == np.float64
        outcomes, log_prob = file["outcomes"][()], file["log_prob"][()]
    chunks = list(dataset.iter_chunks(size=1200))
    assert len(chunks) == 5
    assert np.array_equal(np.concatenate([c[0] for c in chunks]), outcomes)
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), log_prob)
    assert np.array_equal(dataset.outcomes(10, 20), outcomes[10:20])
    assert set(dataset.reference) == {"energy", "X", "Z", "ZZ", "XX", "entropy", "psi"}
    assert np.allclose(np.diag(dataset.reference["ZZ"]), 1)


def test_same_seed_same_records(small_file, tmp_path):
    again = simulate("tfim", 4, h=0.7, samples=5000, seed=3, out=tmp_path / "b.h5", quiet=True)
    assert np.array_equal(read_dataset(again).outcomes(), read_dataset(small_file).outcomes())






@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.attrs.__setitem__("format", "other"), "not a qtomo dataset"),
        (lambda f: f.attrs.__setitem__("version", 2), "unsupported format version 2"),
        (lambda f: f.attrs.__delitem__("L"), "missing root attribute"),
        (lambda f: f["outcomes"].__setitem__((7, 2), 4), "got 4 in row 7"),
        (replace_item("outcomes", np.zeros((10, 4), dtype=np.int64)), "must be uint8"),
        (replace_item("log_prob", np.full(5000, np.nan)), "ln P must be finite .*got nan in row 0"),
        (replace_item("log_prob", np.zeros(3)), r"must be float64 \(5000,\)"),
        (replace_item("povm/elements", get_povm("tetra").elements), "do not match"),
        (replace_item("reference/X", np.zeros(3)), "shape"),
        (lambda f: f.__delitem__("outcomes"), "missing /outcomes"),
    ],
)
def test_invalid_files_are_rejected(small_file, tmp_path, edit, message):
    bad = copy_and_edit(small_file, tmp_path / "bad.h5", edit)
    with pytest.raises(DataFormatError, match=message) as info:
        read_dataset(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_truncated_foreign_and_missing_files(small_file, tmp_path):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(small_file.read_bytes()[: small_file.stat().st_size // 2])
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as file:
        file["x"] = np.arange(3)
    for path, message in [(truncated, "not a readable HDF5|unreadable"),
                          (text, "not a readable HDF5"), (foreign, "not a qtomo dataset"),
                          (tmp_path / "missing.h5", "no such dataset file")]:
        with pytest.raises(DataFormatError, match=message):
            read_dataset(path)


def test_writer_rejects_bad_chunks_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.h5"
    povm = get_povm("pauli4")
    attrs = {"state": "product", "L": 2, "seed": 0, "method": "exact"}
    bad_chunks = [
        [(np.array([[0, 4]]), np.array([-1.0]))],
        [(np.array([[0, 1, 2]]), np.array([-1.0]))],
        [(np.array([[0, 1]]), np.array([np.inf]))],
        [(np.array([[0, 1]]), np.array([-1.0]))],  # fewer rows than announced
    ]
    for chunks in bad_chunks:
        with pytest.raises(QtomoError):
            write_dataset(target, povm=povm, attrs=attrs, n_records=2, chunks=chunks,
                          reference={})
        assert list(tmp_path.iterdir()) == []


def test_broken_reference_mps_is_rejected(tmp_path):
    ghz = simulate("ghz", 4, povm="pauli6", samples=10, out=tmp_path / "ghz.h5", quiet=True)
    assert [t.shape for t in read_dataset(ghz).reference["mps"]] == [
        (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 1)]
    bad = copy_and_edit(ghz, tmp_path / "bad.h5",
                         replace_item("reference/mps/B_2", np.zeros((3, 2, 2), dtype=complex)))
    with pytest.raises(DataFormatError, match=r"/reference/mps: MPS tensor 2 must have shape"):
        read_dataset(bad)


def _set(name, value):
    return lambda file: file.attrs.__setitem__(name, value)


BAD_FILES = {
    "TFIM without J": (lambda f: f.attrs.__delitem__("J"), "needs the attribute(s) J"),
    "h a string": (_set("h", "strong"), "attribute h must be a finite number; got 'strong'"),
    "h NaN": (_set("h", np.nan), "attribute h must be a finite number"),
    "boundary unknown": (_set("boundary", "twisted"), "attribute boundary must be one of"),
    "L a float": (_set("L", 4.7), "attribute L must be a positive integer; got 4.7"),
    "L an array": (_set("L", np.array([3, 3])), "attribute L must be a positive integer"),
    "seed a string": (_set("seed", "x"), "attribute seed must be an integer"),
    "method unknown": (_set("method", "dmrg"), "attribute method must be 'exact' or 'mps'"),
    "chi_max zero": (_set("chi_max", 0), "attribute chi_max must be an integer >= 1"),
    "energy a string": (replace_item("reference/energy", "low"),
                        "/reference/energy must hold real"),
    "energy complex": (replace_item("reference/energy", 1j), "/reference/energy must hold real"),
    "psi not normalised": (replace_item("reference/psi", np.full(8, 1.0 + 0j)),
                           "/reference/psi must have norm 1; got 2.82843"),
    "psi NaN": (replace_item("reference/psi", np.full(8, np.nan + 0j)), "non-finite"),
    "psi of the wrong length": (replace_item("reference/psi", np.ones(4) / 2),
                                "/reference/psi must have shape (8,)"),
    "ZZ above one": (replace_item("reference/ZZ", np.full((3, 3), 3.0)), "outside [-1, 1]: 3"),
    "X infinite": (replace_item("reference/X", np.full(3, np.inf)), "non-finite"),
    "entropy negative": (replace_item("reference/entropy", -np.ones(2)), "must be >= 0"),
    "reference not a group": (replace_item("reference", np.zeros(3)), "/reference is not an HDF5"),
    "energy a group": (lambda f: (f.__delitem__("reference/energy"),
                                  f.create_group("reference/energy")),
                       "/reference/energy must have shape (); got a group"),
    "outcomes a group": (lambda f: (f.__delitem__("outcomes"), f.create_group("outcomes")),
                         "/outcomes is not an HDF5 dataset"),
    "ln P positive": (lambda f: f["log_prob"].__setitem__(17, 0.5),
                      "ln P must be finite and <= 0 (0 < P <= 1); got 0.5 in row 17"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_dataset_attributes_and_references_are_checked(tfim3_records, tmp_path, case):
    edit, message = BAD_FILES[case]
    bad = copy_and_edit(tfim3_records, tmp_path / "bad.h5", edit)
    with pytest.raises(DataFormatError) as info:
        read_dataset(bad)
    assert message in str(info.value) and str(bad) in str(info.value)
    assert "\n" not in str(info.value)


def test_absent_optional_items_are_fine(tfim3_records, tmp_path):
    bare = copy_and_edit(tfim3_records, tmp_path / "bare.h5",
                   lambda f: (f.__delitem__("reference"), f.__delitem__("log_prob")))
    dataset = read_dataset(bare)
    assert dataset.reference == {} and not dataset.has_log_prob


def test_mps_reference_must_be_normalised(tmp_path):
    path = simulate("ghz", 4, povm="pauli6", samples=10, out=tmp_path / "ghz.h5", quiet=True)
    scaled = 2 * read_dataset(path).reference["mps"][0]
    bad = copy_and_edit(path, tmp_path / "bad.h5", replace_item("reference/mps/B_0", scaled))
    with pytest.raises(DataFormatError, match="/reference/mps: MPS tensor 0 is not right-canon"):
        read_dataset(bad)


def test_replacing_the_file_after_reading_cannot_feed_other_rows(tfim3_records, tmp_path):
    path = tmp_path / "d.h5"
    path.write_bytes(tfim3_records.read_bytes())
    dataset = read_dataset(path)
    before = dataset.outcomes()
    simulate("tfim", 5, samples=4000, povm="pauli6", out=path, quiet=True)  # replaces path
    assert read_dataset(path).L == 5
    assert np.array_equal(dataset.outcomes(), before) and dataset.outcomes().shape[1] == 3
    assert np.array_equal(np.concatenate([c for c, _ in dataset.iter_chunks(700)]), before)
    dataset.close()


ATTRS = {"state": "product", "L": 2, "seed": 0, "method": "exact"}


@pytest.mark.parametrize("attrs, chunk, reference, message", [
    (ATTRS, (np.array([[0.0, 1.7]]), [-1.0]), {}, "integer array of shape (B, 2); got float64"),
    (ATTRS, (np.array([[0, np.nan]]), [-1.0]), {}, "integer array"),
    (ATTRS, (np.array([[0, -1]]), [-1.0]), {}, "must lie in 0..3 for POVM 'pauli4'; got -1 in "
                                               "row 0"),
    (ATTRS, (np.array([[0, 1]]), [0.3]), {}, "ln P must be finite and <= 0"),
    (ATTRS, (np.array([[0, 1]]), [np.nan]), {}, "got nan in row 0"),
    (ATTRS, (np.array([["a", "b"]]), [-1.0]), {}, "integer array"),
    (ATTRS, (np.array([[0, 1]]), ["x"]), {}, "real log_prob"),
    ({"state": "product", "seed": 0, "method": "exact"}, (np.array([[0, 1]]), [-1.0]), {},
     "missing root attribute(s) L"),
    ({**ATTRS, "L": 4.7}, (np.array([[0, 1]]), [-1.0]), {}, "attribute L must be a positive "
                                                             "integer; got 4.7"),
    ({**ATTRS, "state": "tfim"}, (np.array([[0, 1]]), [-1.0]), {}, "needs the attribute(s) J"),
    (ATTRS, (np.array([[0, 1]]), [-1.0]), {"psi": np.ones(3) / math.sqrt(3)},
     "/reference/psi must have shape (4,)"),
    (ATTRS, (np.array([[0, 1]]), [-1.0]), {"energy": "low"}, "must hold real numbers"),
    (ATTRS, (np.array([[0, 1]]), [-1.0]), {"mps": ghz_mps(3).mps}, "must hold L = 2 tensors"),
])
def test_write_dataset_checks_its_inputs(tmp_path, attrs, chunk, reference, message):
    with pytest.raises(QtomoError) as info:
        write_dataset(tmp_path / "d.h5", povm=get_povm("pauli4"), attrs=attrs, n_records=1,
                      chunks=[(chunk[0], np.asarray(chunk[1]))], reference=reference)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def dataset_bytes(tmp_path_factory):
    """A valid L = 3 TFIM dataset (exact path, with ψ) and a GHZ one (with an MPS), as bytes."""
    folder = tmp_path_factory.mktemp("fuzz-data")
    tfim = simulate("tfim", 3, h=0.7, samples=600, seed=2, out=folder / "t.h5", quiet=True)
    ghz = simulate("ghz", 3, povm="pauli6", samples=300, method="mps", out=folder / "g.h5",
                   quiet=True)
    return tfim.read_bytes(), ghz.read_bytes()


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
    dataset = read_or_refused(read_dataset, path, DataFormatError)
    if dataset is None:
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
