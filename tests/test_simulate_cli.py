"""`qtomo simulate` and `qtomo info` end to end, including every bad input of the foundation."""

import h5py
import numpy as np
import pytest

import qtomo.simulate
from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.simulate import SimulationWarning, simulate
from qtomo.states.mps import tfim_mps
from tests.commands import one_line_error

from .physics import X, Z, dense_born, dense_tfim, site_operator


@pytest.fixture(scope="module")
def tfim8(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tfim8.h5"
    assert main(["simulate", "--state", "tfim", "--L", "8", "--samples", "100000",
                 "--out", str(path), "--quiet"]) == 0
    return path


def test_simulate_tfim8_log_prob_and_references_match_ed(tfim8):
    dataset = read_dataset(tfim8)
    assert dataset.n_records == 100_000 and dataset.L == 8
    energies, vectors = np.linalg.eigh(dense_tfim(8, 1.0, 1.0))
    psi = vectors[:, 0]
    rho = np.outer(psi, psi.conj())
    rows = np.random.default_rng(0).choice(dataset.n_records, 300, replace=False)
    dense = dense_born(rho, dataset.povm.elements, dataset.outcomes()[np.sort(rows)])
    assert np.allclose(dataset.log_prob()[np.sort(rows)], np.log(dense), atol=1e-10, rtol=0)
    ref = dataset.reference
    assert float(ref["energy"]) == pytest.approx(energies[0], abs=1e-10)
    assert abs(abs(np.vdot(ref["psi"], psi)) - 1) < 1e-10
    for i in range(8):
        assert ref["X"][i] == pytest.approx(np.vdot(psi, site_operator(X, i, 8) @ psi).real)
    zz = site_operator(Z, 0, 8) @ site_operator(Z, 5, 8)
    assert ref["ZZ"][0, 5] == pytest.approx(np.vdot(psi, zz @ psi).real, abs=1e-10)


def test_info_prints_summary(tfim8, capsys):
    assert main(["info", str(tfim8)]) == 0
    out = capsys.readouterr().out
    assert "N = 100000" in out and "pauli4 (K = 4)" in out and "E = -9.8379514475" in out


def test_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--state", "ghz", "--L", "4", "--povm", "pauli6",
                 "--samples", "10", "--quiet"]) == 0
    assert main(["simulate", "--L", "3", "--h", "0.5", "--samples", "10", "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "ghz_L4_pauli6.h5", "tfim_L3_h0.5_pauli4.h5"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--L", "0"], "positive integer"),
        (["--L", "13", "--method", "exact"], "L <= 12"),
        (["--L", "10", "--povm", "pauli6", "--method", "exact"], "L <= 9"),
        (["--samples", "0"], "positive integer"),
        (["--samples", "-5"], "positive integer"),
        (["--state", "cat"], "invalid choice"),
        (["--povm", "sic"], "invalid choice"),
        (["--h", "nan"], "finite"),
        (["--J", "inf"], "finite"),
        (["--L", "1"], "L >= 2"),
        (["--state", "product", "--product-state", "up"], "unknown single-qubit state"),
        (["--depolarizing", "1.5"], "depolarizing must be a probability in [0, 1]; got 1.5"),
        (["--depolarizing", "-0.1"], "depolarizing must be a probability in [0, 1]"),
        (["--dephasing", "nan"], "dephasing must be a probability in [0, 1]; got nan"),
        (["--amplitude-damping", "inf"], "amplitude_damping must be a probability"),
        (["--amplitude-damping", "x"], "invalid float value"),
        (["--L", "11", "--method", "exact", "--depolarizing", "0.1"],
         "handles L <= 10 for POVM 'pauli4' (K = 4) with a noise channel"),
    ],
)
def test_simulate_bad_input_exits_2_without_output(argv, message, tmp_path, capsys):
    out = tmp_path / "out.h5"
    base = ["simulate", "--L", "4", "--samples", "10", "--out", str(out), "--quiet"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qtomo: error:") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["simulate", "--L", "3", "--samples", "5", "--out", str(blocker / "x.h5"),
                 "--quiet"]) == 2
    assert "file is not a folder" in capsys.readouterr().err


def test_info_bad_files(tfim8, tmp_path, capsys):
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(tfim8.read_bytes()[:4096])
    text = tmp_path / "n.h5"
    text.write_text("hello")
    foreign = tmp_path / "f.h5"
    with h5py.File(foreign, "w") as file:
        file["data"] = np.zeros(2)
    outside = tmp_path / "o.h5"
    outside.write_bytes(tfim8.read_bytes())
    with h5py.File(outside, "r+") as file:
        file["outcomes"][3, 0] = 9
    for path in (tmp_path / "missing.h5", truncated, text, foreign, outside):
        assert main(["info", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qtomo: error:") and err.count("\n") == 1


def test_simulate_into_a_folder_fails_before_the_work(tmp_path, monkeypatch, capsys):
    def no_work(*args):
        raise AssertionError("the state was built before the output was checked")

    monkeypatch.setattr(qtomo.simulate, "_build_state", no_work)
    assert main(["simulate", "--L", "3", "--samples", "10", "--out", str(tmp_path),
                 "--quiet"]) == 2
    one_line_error(capsys, "it is a folder")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method", ["exact", "mps"])
def test_classical_ising_point_warns_on_both_paths(tmp_path, method):
    with pytest.warns(SimulationWarning, match=r"parity gap 0.0e\+00 is below .* selected by "
                                               r"symmetry"):
        path = simulate("tfim", 6, h=0.0, samples=100, method=method, out=tmp_path / "d.h5",
                        quiet=True)
    assert "selected by symmetry" in read_dataset(path).attrs["warning"]


@pytest.mark.parametrize("method", ["exact", "mps"])
def test_zero_hamiltonian_is_one_line_on_both_paths(tmp_path, capsys, method):
    assert main(["simulate", "--L", "6", "--J", "0", "--h", "0", "--method", method,
                 "--samples", "10", "--out", str(tmp_path / "d.h5"), "--quiet"]) == 2
    one_line_error(capsys, "J = h = 0 makes H = 0")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(QtomoError, match="J = h = 0"):
        tfim_mps(6, J=0.0, h=0.0)


def test_a_dataset_larger_than_the_free_disk_is_refused_before_the_work(tmp_path, capsys):
    assert main(["simulate", "--L", "3", "--samples", str(2**61), "--out",
                 str(tmp_path / "huge.h5"), "--quiet"]) == 2
    one_line_error(capsys, "the ln P column alone (8 bytes per record) needs", "GiB free")
    assert list(tmp_path.iterdir()) == []
