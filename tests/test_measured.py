"""Measured data: datasets without truth, importers/exporters, bases test, readout errors."""

import json

import h5py
import numpy as np
import pytest

from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import QtomoError
from qtomo.povm import get_povm


def _imported(path, outcomes, povm="pauli6", **attrs):
    outcomes = np.asarray(outcomes, dtype=np.uint8)
    return write_dataset(path, povm=get_povm(povm),
                         attrs={"L": outcomes.shape[1], "source": "imported:test", **attrs},
                         n_records=len(outcomes), chunks=[(outcomes, None)], reference={})


def test_dataset_without_truth_round_trips_and_is_described(tmp_path, capsys):
    outcomes = np.random.default_rng(0).integers(0, 6, size=(50, 3))
    path = _imported(tmp_path / "m.h5", outcomes)
    dataset = read_dataset(path)
    assert not dataset.has_log_prob and dataset.reference == {}
    assert dataset.attrs["source"] == "imported:test"
    assert not {"state", "seed", "method"} & set(dataset.attrs)
    assert np.array_equal(dataset.outcomes(), outcomes)
    assert [lp for _, lp in dataset.iter_chunks(20)] == [None, None, None]
    with h5py.File(path) as file:
        assert "log_prob" not in file and "reference" not in file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "source    imported:test" in out and "state" not in out
    assert "no KL or classical fidelity" in out


def test_simulated_files_say_so_and_need_their_provenance(tmp_path):
    from qtomo.simulate import simulate

    path = simulate("ghz", 3, povm="pauli6", samples=10, out=tmp_path / "g.h5", quiet=True)
    assert read_dataset(path).attrs["source"] == "simulated"
    with pytest.raises(QtomoError, match="simulated records need the attribute"):
        _imported(tmp_path / "bad.h5", [[0, 1]], source="simulated")
    with pytest.raises(QtomoError, match="attribute source must be"):
        _imported(tmp_path / "bad.h5", [[0, 1]], source="lab")
    with h5py.File(path, "r+") as file:  # an older simulated file: no source attribute
        del file.attrs["source"]
    assert read_dataset(path).attrs["source"] == "simulated"
    with h5py.File(path, "r+") as file:
        del file.attrs["seed"]
    with pytest.raises(QtomoError, match="need the attribute.*seed"):
        read_dataset(path)
    assert not (tmp_path / "bad.h5").exists()


def test_writer_refuses_chunks_mixing_log_prob_and_none(tmp_path):
    chunks = [(np.zeros((2, 2), np.uint8), None), (np.zeros((2, 2), np.uint8), np.zeros(2))]
    with pytest.raises(QtomoError, match="in every chunk or in none"):
        write_dataset(tmp_path / "x.h5", povm=get_povm("pauli6"),
                      attrs={"L": 2, "source": "imported:test"}, n_records=4, chunks=chunks,
                      reference={})
    assert list(tmp_path.iterdir()) == []
