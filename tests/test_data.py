"""The HDF5 v1 dataset: round trip, validation of corrupt and foreign files, atomic writes."""

import h5py
import numpy as np
import pytest

from qtomo.data import FORMAT, read_dataset, write_dataset
from qtomo.errors import DataFormatError, QtomoError
from qtomo.povm import get_povm
from qtomo.simulate import simulate


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


def _copy_and_edit(source, target, edit):
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as file:
        edit(file)
    return target


def _replace(name, data):
    def edit(file):
        del file[name]
        file.create_dataset(name, data=data)
    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.attrs.__setitem__("format", "other"), "not a qtomo dataset"),
        (lambda f: f.attrs.__setitem__("version", 2), "unsupported format version 2"),
        (lambda f: f.attrs.__delitem__("L"), "missing root attribute"),
        (lambda f: f["outcomes"].__setitem__((7, 2), 4), "got 4 in row 7"),
        (_replace("outcomes", np.zeros((10, 4), dtype=np.int64)), "must be uint8"),
        (_replace("log_prob", np.full(5000, np.nan)), "ln P must be finite .*got nan in row 0"),
        (_replace("log_prob", np.zeros(3)), r"must be float64 \(5000,\)"),
        (_replace("povm/elements", get_povm("tetra").elements), "do not match"),
        (_replace("reference/X", np.zeros(3)), "shape"),
        (lambda f: f.__delitem__("outcomes"), "missing /outcomes"),
    ],
)
def test_invalid_files_are_rejected(small_file, tmp_path, edit, message):
    bad = _copy_and_edit(small_file, tmp_path / "bad.h5", edit)
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
    bad = _copy_and_edit(ghz, tmp_path / "bad.h5",
                         _replace("reference/mps/B_2", np.zeros((3, 2, 2), dtype=complex)))
    with pytest.raises(DataFormatError, match=r"/reference/mps: MPS tensor 2 must have shape"):
        read_dataset(bad)
