"""Measured data: datasets without truth, importers/exporters, bases test, readout errors."""

import json
import os
import re
from functools import reduce
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.stats import chisquare

from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import QtomoError
from qtomo.formats import (
    EXPORT_FORMATS,
    bases_uniformity,
    export_records,
    genmodel_tfim_sign_map,
    import_records,
    read_genmodel_mps,
)
from qtomo.povm import born_probabilities, get_povm


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


# --- importers against shots drawn here from an exact state, in each tool's own layout --------


L_SHOTS, N_SHOTS = 3, 30_000
_S = 1 / np.sqrt(2)
# rows = ⟨eigenvalue +1|, ⟨eigenvalue −1| of the measured Pauli: measuring in a basis is U then Z
ROTATION = {"Z": np.eye(2), "X": np.array([[_S, _S], [_S, -_S]]),
            "Y": np.array([[_S, -1j * _S], [_S, 1j * _S]])}


@pytest.fixture(scope="module")
def shots():
    """Uniform random bases and bits drawn from |U ψ|² for a random 3-qubit ψ (no symmetry)."""
    rng = np.random.default_rng(7)
    psi = rng.normal(size=2**L_SHOTS) + 1j * rng.normal(size=2**L_SHOTS)
    psi /= np.linalg.norm(psi)
    bases = rng.choice(list("XYZ"), size=(N_SHOTS, L_SHOTS))
    bits = np.zeros((N_SHOTS, L_SHOTS), dtype=int)
    settings, inverse = np.unique(bases, axis=0, return_inverse=True)
    for s, setting in enumerate(settings):
        rows = np.flatnonzero(inverse.reshape(-1) == s)
        amplitudes = reduce(np.kron, [ROTATION[b] for b in setting]) @ psi
        index = rng.choice(2**L_SHOTS, size=rows.size, p=np.abs(amplitudes) ** 2)
        bits[rows] = (index[:, None] >> np.arange(L_SHOTS - 1, -1, -1)) & 1  # qubit 0 = MSB
    return psi, bases, bits


def _pauli6_chi2(dataset_path, psi):
    """p-value of the imported records against P(a) = Tr(M_a |ψ⟩⟨ψ|) over all 6^L cells."""
    records = read_dataset(dataset_path).outcomes().astype(np.int64)
    index = records @ (6 ** np.arange(L_SHOTS - 1, -1, -1))
    expected = born_probabilities(np.outer(psi, psi.conj()), get_povm("pauli6")) * len(records)
    return chisquare(np.bincount(index, minlength=6**L_SHOTS), expected).pvalue


def _write_layout(fmt, bases, bits, folder):
    """The files each tool writes, built here from the layout descriptions (README)."""
    if fmt == "pauli-shots":
        np.savez(folder / "shots.npz", bases=bases, bits=bits)
        return [folder / "shots.npz"]
    if fmt == "pauli-shots-integer":
        np.savez(folder / "shots.npz", bases=np.searchsorted(list("XYZ"), bases), bits=bits)
        return [folder / "shots.npz"]
    if fmt == "qucumber":
        np.savetxt(folder / "samples.txt", bits.astype(float))  # QuCumber reads floats
        np.savetxt(folder / "bases.txt", bases, fmt="%s")
        return [folder / "samples.txt", folder / "bases.txt"]
    if fmt == "qiskit-counts":
        counts = {}
        for b, r in zip(bases, bits, strict=True):
            label, key = "".join(b[::-1]), "".join(map(str, r[::-1]))  # rightmost = qubit 0
            counts.setdefault(label, {}).setdefault(key, 0)
            counts[label][key] += 1
        (folder / "counts.json").write_text(json.dumps(counts))
        return [folder / "counts.json"]
    if fmt == "netket":
        np.savez(folder / "qsr.npz", sigma=1 - 2 * bits, bases=["".join(b) for b in bases])
        return [folder / "qsr.npz"]
    if fmt == "aqt":  # |0⟩,|+⟩,|+i⟩,|1⟩,|−⟩,|−i⟩
        np.save(folder / "aqt.npy", 3 * bits + np.vectorize({"Z": 0, "X": 1, "Y": 2}.get)(bases))
        return [folder / "aqt.npy"]
    if fmt == "genmodel":  # Pauli: |+⟩,|−⟩,|+i⟩,|−i⟩,|0⟩,|1⟩
        np.savetxt(folder / "data.txt", 2 * np.searchsorted(list("XYZ"), bases) + bits, fmt="%d")
        return [folder / "data.txt"]
    raise AssertionError(fmt)


LAYOUTS = ["pauli-shots", "pauli-shots-integer", "qucumber", "qiskit-counts", "netket", "aqt",
           "genmodel"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_importer_records_follow_the_born_rule(layout, shots, tmp_path):
    psi, bases, bits = shots
    files = _write_layout(layout, bases, bits, tmp_path)
    fmt = "pauli-shots" if layout == "pauli-shots-integer" else layout
    out = import_records(fmt, files, tmp_path / "in.h5",
                         povm="Pauli" if fmt == "genmodel" else None)
    dataset = read_dataset(out)
    assert (dataset.n_records, dataset.L, dataset.povm) == (N_SHOTS, L_SHOTS, get_povm("pauli6"))
    assert dataset.attrs["source"] == f"imported:{fmt}" and not dataset.has_log_prob
    assert _pauli6_chi2(out, psi) > 1e-4


def test_the_born_rule_check_has_power(shots, tmp_path):
    """Reading qiskit's strings big-endian (the classic mistake) is caught by the χ² test."""
    psi, bases, bits = shots
    files = _write_layout("qiskit-counts", bases[:, ::-1], bits[:, ::-1], tmp_path)
    assert _pauli6_chi2(import_records("qiskit-counts", files, tmp_path / "x.h5"), psi) < 1e-10


@pytest.mark.parametrize("povm, ours", [("4Pauli", "pauli4"), ("Tetra", "tetra")])
def test_genmodel_pauli4_and_tetra_records(povm, ours, shots, tmp_path):
    """Their 4Pauli and Tetra elements, written here from their definitions, equal ours."""
    psi = shots[0]
    s = np.sqrt(2)
    if povm == "4Pauli":
        first = [np.diag([1, 0]) / 3, np.ones((2, 2)) / 6, np.array([[1, -1j], [1j, 1]]) / 6]
        elements = np.array([*first, np.eye(2) - sum(first)])
    else:
        bloch = [(0, 0, 1), (2 * s / 3, 0, -1 / 3), (-s / 3, np.sqrt(2 / 3), -1 / 3),
                 (-s / 3, -np.sqrt(2 / 3), -1 / 3)]
        sigma = [np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.diag([1, -1])]
        elements = np.array([(np.eye(2) + sum(c * p for c, p in zip(v, sigma, strict=True))) / 4
                             for v in bloch])
    P = born_probabilities(np.outer(psi, psi.conj()), get_povm(ours))
    assert np.allclose(get_povm(ours).elements, elements)
    index = np.random.default_rng(1).choice(P.size, size=20_000, p=P)
    records = (index[:, None] // 4 ** np.arange(L_SHOTS - 1, -1, -1)) % 4
    np.savetxt(tmp_path / "data.txt", records, fmt="%d")
    out = import_records("genmodel", [tmp_path / "data.txt"], tmp_path / "g.h5", povm=povm,
                         shuffle=False)
    dataset = read_dataset(out)
    assert dataset.povm == get_povm(ours) and np.array_equal(dataset.outcomes(), records)


# --- genmodel MPS files ---------------------------------------------------------------------

def _write_genmodel_mps(tensors, folder):
    """index.txt / tensor.txt in POVM_GENMODEL's layout: 1-based non-zero entries, legs
    (right, phys) first, (right, phys, left) bulk, (phys, left) last, blank line between."""
    L = len(tensors)
    blocks = [tensors[0][0].T] + [B.transpose(2, 1, 0) for B in tensors[1:-1]] \
        + [tensors[-1][:, :, 0].T]
    index_lines, tensor_lines = [], []
    for block in blocks:
        assert np.allclose(block.imag, 0)
        nonzero = np.argwhere(block.real != 0)
        index_lines.append(f"{block.ndim}\t{len(nonzero)}\t" + "   ".join(map(str, block.shape)))
        tensor_lines += [" ".join(str(i + 1) for i in entry)
                         + f"\t{float(block.real[tuple(entry)])!r}" for entry in nonzero] + [""]
    (folder / "index.txt").write_text("\n".join(index_lines) + "\n")
    (folder / "tensor.txt").write_text("\n".join(tensor_lines[:-1]) + "\n")
    assert len(index_lines) == L
    return folder / "index.txt", folder / "tensor.txt"


def _their_tfim_state(tensors):
    """Our −ΣZZ − ΣX ground state mapped to theirs (+ΣZZ + ΣX): Z on every site, then X on odd
    sites, inverted (Z X per odd site), and a non-canonical gauge on one bond."""
    Z, X = np.diag([1.0, -1.0]), np.array([[0.0, 1.0], [1.0, 0.0]])
    theirs = [np.einsum("st,atb->asb", Z @ X if i % 2 else Z, B) for i, B in enumerate(tensors)]
    gauge = np.diag(np.linspace(0.5, 2.0, theirs[3].shape[2]))
    theirs[3] = np.einsum("asb,bc->asc", theirs[3], gauge)
    theirs[4] = np.einsum("cb,bsd->csd", np.linalg.inv(gauge), theirs[4])
    return [B.real.astype(float) for B in theirs]


def test_genmodel_mps_sign_map_gives_our_tfim_energy(tmp_path):
    """Their layout written here from our DMRG state (their real L = 50 file is not shipped:
    see test_genmodel_real_tfim_file); the map brings back the free-fermion energy."""
    from qtomo.states.hamiltonians import TFIM
    from qtomo.states.mps import MPSState, tfim_mps

    L = 20
    ours = tfim_mps(L).mps
    index, tensor = _write_genmodel_mps(_their_tfim_state(ours), tmp_path)
    read = read_genmodel_mps(index, tensor)
    theirs = MPSState(read).references()  # right-canonical and normalised, or MPSState refuses
    assert np.all(theirs["X"] < 0) and np.all(np.diag(theirs["ZZ"], 1) < 0)
    mapped = MPSState(genmodel_tfim_sign_map(read)[0], hamiltonian=TFIM(L)).references()
    exact = TFIM(L).free_fermion_ground_energy()
    assert abs(float(mapped["energy"]) - exact) < 2e-4 * abs(exact)
    assert np.all(mapped["X"] > 0) and np.all(np.diag(mapped["ZZ"], 1) > 0)


@pytest.mark.skipif("QTOMO_GENMODEL_MPS" not in os.environ,
                    reason="set QTOMO_GENMODEL_MPS to POVM_GENMODEL's "
                           "data/training_data_1D_TFIM_model/Matrix_product_state folder")
def test_genmodel_real_tfim_file():
    from qtomo.states.hamiltonians import TFIM
    from qtomo.states.mps import MPSState

    folder = Path(os.environ["QTOMO_GENMODEL_MPS"])
    tensors, _ = genmodel_tfim_sign_map(read_genmodel_mps(folder / "index.txt",
                                                          folder / "tensor.txt"))
    H = TFIM(len(tensors))
    energy = float(MPSState(tensors, hamiltonian=H).references()["energy"])
    assert abs(energy - H.free_fermion_ground_energy()) < 2e-4 * abs(
        H.free_fermion_ground_energy())


def test_genmodel_import_with_mps_relabels_records_consistently(shots, tmp_path):
    """Records of their state ψ, mapped with the MPS, follow the Born rule of the mapped MPS."""
    from qtomo.states.mps import mps_to_vector, vector_to_mps

    psi, bases, bits = shots
    real_psi = np.abs(psi) * np.sign(psi.real)  # their files hold real tensors
    real_psi /= np.linalg.norm(real_psi)
    rng = np.random.default_rng(3)
    P = born_probabilities(np.outer(real_psi, real_psi), get_povm("pauli6"))
    index = rng.choice(P.size, size=N_SHOTS, p=P)
    ours = (index[:, None] // 6 ** np.arange(L_SHOTS - 1, -1, -1)) % 6
    their_order = np.array([4, 5, 0, 1, 2, 3])  # ours → theirs (|+⟩,|−⟩,|+i⟩,|−i⟩,|0⟩,|1⟩)
    np.savetxt(tmp_path / "data.txt", their_order[ours], fmt="%d")
    mps_files = _write_genmodel_mps(vector_to_mps(real_psi.astype(complex)), tmp_path)
    out = import_records("genmodel", [tmp_path / "data.txt", *mps_files], tmp_path / "g.h5",
                         povm="Pauli", tfim_sign_map=True)
    mapped = mps_to_vector(read_dataset(out).reference["mps"])
    assert abs(abs(np.vdot(mapped, real_psi)) - 1) > 0.01  # the map changed the state
    assert _pauli6_chi2(out, mapped) > 1e-4
    with pytest.raises(QtomoError, match="Pauli \\(pauli6\\) POVM only"):
        np.savetxt(tmp_path / "tetra.txt", ours % 4, fmt="%d")
        import_records("genmodel", [tmp_path / "tetra.txt", *mps_files], tmp_path / "t.h5",
                       povm="Tetra", tfim_sign_map=True)


# --- uniform bases ----------------------------------------------------------------------------

def test_uniform_bases_test(shots, tmp_path):
    _, bases, bits = shots
    codes = np.vectorize({"Z": 0, "X": 1, "Y": 2}.get)(bases)
    assert bases_uniformity(codes)["uniform"]
    # NetKet's QSR example draws X, Y with probability 1/L each: refused, the worst site named
    rng = np.random.default_rng(0)
    skewed = rng.choice(list("XYZ"), size=bases.shape, p=[0.25, 0.25, 0.5])
    np.savez(tmp_path / "s.npz", bases=skewed, bits=bits)
    with pytest.raises(QtomoError, match=r"site \d has χ² = .*--allow-biased-bases"):
        import_records("pauli-shots", [tmp_path / "s.npz"], tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()
    # uniform per site but the same basis on every qubit: the pair test names a pair
    same = np.repeat(bases[:, :1], L_SHOTS, axis=1)
    np.savez(tmp_path / "p.npz", bases=same, bits=bits)
    with pytest.raises(QtomoError, match=r"pair \(\d, \d\)"):
        import_records("pauli-shots", [tmp_path / "p.npz"], tmp_path / "p.h5")
    with pytest.warns(UserWarning, match="not uniform"):
        out = import_records("pauli-shots", [tmp_path / "p.npz"], tmp_path / "p.h5",
                             allow_biased_bases=True)
    assert "not uniform" in read_dataset(out).attrs["warning"]


def test_every_setting_with_equal_shots_passes():
    settings = (np.arange(3**4)[:, None] // 3 ** np.arange(3, -1, -1)) % 3
    result = bases_uniformity(np.repeat(settings, 5, axis=0))
    assert result["uniform"] and result["chi2"] == 0


# --- exporters: exact inverses ----------------------------------------------------------------

@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_export_then_import_gives_the_records_back(fmt, shots, tmp_path):
    _, bases, bits = shots
    dataset = import_records("pauli-shots", _write_layout("pauli-shots", bases, bits, tmp_path),
                             tmp_path / "d.h5")
    written = export_records(fmt, dataset, tmp_path / "out.txt")
    again = read_dataset(import_records(fmt, written, tmp_path / "again.h5", shuffle=False))
    first = read_dataset(dataset).outcomes()
    if fmt == "qiskit-counts":  # counts keep the multiset, not the order
        assert np.array_equal(np.unique(first, axis=0, return_counts=True)[1],
                              np.unique(again.outcomes(), axis=0, return_counts=True)[1])
        assert np.array_equal(np.unique(first, axis=0), np.unique(again.outcomes(), axis=0))
    else:
        assert np.array_equal(again.outcomes(), first)


@pytest.mark.parametrize("layout", ["pauli-shots", "qucumber", "qiskit-counts", "netket", "aqt"])
def test_import_then_export_gives_the_files_back(layout, shots, tmp_path):
    _, bases, bits = shots
    (tmp_path / "in").mkdir()
    files = _write_layout(layout, bases[:500], bits[:500], tmp_path / "in")
    dataset = import_records(layout, files, tmp_path / "d.h5", shuffle=False)
    written = export_records(layout, dataset, tmp_path / files[0].name)
    for original, copy in zip(files, written, strict=True):
        if original.suffix == ".json":
            assert json.loads(copy.read_text()) == json.loads(original.read_text())
        elif original.suffix == ".txt":
            assert np.array_equal(np.loadtxt(copy, dtype=str), np.loadtxt(original, dtype=str)) \
                or np.array_equal(np.loadtxt(copy), np.loadtxt(original))
        elif original.suffix == ".npy":
            assert np.array_equal(np.load(copy), np.load(original))
        else:
            with np.load(copy) as a, np.load(original) as b:
                assert sorted(a.files) == sorted(b.files)
                assert all(np.array_equal(a[key], b[key]) for key in a.files)


def test_export_refuses_other_povms(tmp_path):
    path = _imported(tmp_path / "t.h5", [[0, 3]], povm="tetra")
    with pytest.raises(QtomoError, match="export needs pauli6 records"):
        export_records("qucumber", path, tmp_path / "x.txt")


# --- readout errors -------------------------------------------------------------------------

E0, E1 = 0.05, 0.12
#: per-qubit readout errors, one (e0, e1) row per qubit of the 3-qubit ψ; qubit 1 reads perfectly
PER_QUBIT = [[0.02, 0.08], [0.0, 0.0], [0.15, 0.04]]


@pytest.mark.parametrize("errors", [[[E0, E1]] * L_SHOTS, PER_QUBIT], ids=["same", "per-qubit"])
def test_readout_povm_duals_undo_the_readout_error_exactly(shots, errors):
    """Exact distribution of a known ψ under readout errors, the same on every qubit or one pair
    per qubit: the true duals give ρ and Tr(ρ O) to 1e-12, the ideal pauli6 duals are off by
    the closed form ⟨Z_i⟩ → (1 − e0_i − e1_i)⟨Z_i⟩ + e1_i − e0_i."""
    from qtomo.blocks import reduced_states, target_reduced_states
    from qtomo.observables import exact_observables
    from qtomo.povm import PerQubitPOVM
    from qtomo.readout import readout_povms
    from qtomo.reconstruct import density_matrix

    psi = shots[0]
    rho = np.outer(psi, psi.conj())
    measured = readout_povms(errors, L_SHOTS)
    assert isinstance(measured, PerQubitPOVM) == (errors == PER_QUBIT)
    P = born_probabilities(rho, measured)
    # independent: flip each read bit of the ideal records with the qubit's probabilities
    ideal = born_probabilities(rho, get_povm("pauli6")).reshape((3, 2) * L_SHOTS)
    for site, (e0, e1) in enumerate(errors):
        flip = np.array([[1 - e0, e1], [e0, 1 - e1]])  # [read, true]
        ideal = np.moveaxis(np.tensordot(flip, ideal, axes=([1], [2 * site + 1])), 0,
                            2 * site + 1)
    assert np.allclose(P, ideal.reshape(-1), atol=1e-15)
    assert np.allclose(density_matrix(P, measured).rho, rho, atol=1e-12)
    z_true = np.array([np.vdot(psi, site_z(site) @ psi).real for site in range(L_SHOTS)])
    assert np.allclose(exact_observables(P, measured).Z.value, z_true, atol=1e-12)
    e0, e1 = np.array(errors).T
    ignored = exact_observables(P, get_povm("pauli6")).Z.value
    assert np.allclose(ignored, (1 - e0 - e1) * z_true + e1 - e0, atol=1e-12)
    blocks = [(0, 1), (1, 2), (0, 1, 2)]  # reduced states: each qubit's duals in its factor
    targets = target_reduced_states({"psi": psi}, blocks)
    for state in reduced_states(blocks, measured, model=P, targets=targets):
        assert state.model.fidelity.value == pytest.approx(1.0, abs=1e-10), state.block


def test_per_qubit_readout_file_bad_input(tmp_path, capsys):
    """A readout file of the wrong width, length or range: one line, exit 2, no dataset left."""
    out = tmp_path / "lab.h5"
    shots_file = tmp_path / "s.npz"
    np.savez(shots_file, bases=np.array([list("XZ"), list("ZY")] * 20),
             bits=np.zeros((40, 2), dtype=int))
    cases = {"0.1 0.2 0.3\n0.1 0.2 0.3\n": "expected two entries per qubit",
             "0.1 0.2\n0.1 0.2\n0.1 0.2\n": "given for 3 qubits; the records have L = 2",
             "0.1 0.2\n0.1 0.6\n": "qubit 1: readout error e1 = P(read 0 | 1) must lie in "
                                    "[0, 0.5)",
             "0.1 zero\n0.1 0.2\n": "entries must be numbers",
             "# no rows\n": "empty; expected one row e0 e1 per qubit"}
    for text, message in cases.items():
        errors = tmp_path / "readout.txt"
        errors.write_text(text)
        assert main(["import", "pauli-shots", str(shots_file), "--out", str(out),
                     "--readout-error", str(errors), "--allow-biased-bases", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (text, err)
        assert sorted(tmp_path.iterdir()) == sorted([shots_file, errors])  # nothing written
    assert main(["import", "pauli-shots", str(shots_file), "--out", str(out),
                 "--readout-error", "0.1", "0.2", "0.3", "--quiet"]) == 2
    assert "takes E0 E1 or one FILE; got 3 values" in capsys.readouterr().err
    assert not out.exists()


def site_z(site):
    return reduce(np.kron, [np.diag([1.0, -1.0]) if i == site else np.eye(2)
                            for i in range(L_SHOTS)])


def test_readout_error_files_in_text_csv_json_and_npy_read_the_same_table(tmp_path):
    from qtomo.readout import read_readout_errors

    table = np.array(PER_QUBIT)
    files = {"a.txt": "# e0 e1\n" + "".join(f"{e0} {e1}  # qubit\n" for e0, e1 in PER_QUBIT),
             "b.csv": "".join(f"{e0},{e1}\n" for e0, e1 in PER_QUBIT),
             "c.json": json.dumps(PER_QUBIT)}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    np.save(tmp_path / "d.npy", table)
    for name in [*files, "d.npy"]:
        assert np.array_equal(read_readout_errors(tmp_path / name), table), name
    (tmp_path / "e.json").write_text(json.dumps([[0.1, 0.2], [0.1]]))
    with pytest.raises(QtomoError, match="expected two entries per qubit.*qubit 1 has 1"):
        read_readout_errors(tmp_path / "e.json")


#: the L = 4 TFIM's readout errors: the same on every qubit, or one line per qubit in a file
READOUT_ERRORS = {"same": [E0, E1],
                  "per-qubit": [[0.02, 0.08], [0.0, 0.0], [0.15, 0.04], [0.07, 0.12]]}


@pytest.fixture(scope="module", params=list(READOUT_ERRORS))
def readout_file(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("readout")
    path = folder / "tfim_readout.h5"
    errors = READOUT_ERRORS[request.param]
    if request.param == "per-qubit":
        table = folder / "readout.txt"
        table.write_text("# e0 e1, qubit 0 first\n" + "".join(f"{e0} {e1}\n" for e0, e1 in errors))
        option = [str(table)]
    else:
        option = [str(e) for e in errors]
    assert main(["simulate", "--state", "tfim", "--L", "4", "--povm", "pauli6", "--samples",
                 "200000", "--readout-error", *option, "--out", str(path), "--quiet"]) == 0
    return path, errors, option


def _z_scores(dataset, povm, reference):
    from qtomo.observables import estimate_observables

    estimate = estimate_observables(dataset.outcomes(), povm)
    return np.concatenate([(estimate.X.value - reference["X"]) / estimate.X.stderr,
                           (estimate.Z.value - reference["Z"]) / estimate.Z.stderr])


def test_simulated_readout_error_is_undone_by_the_stored_povm(readout_file):
    from qtomo.readout import readout_povms

    path, errors, _ = readout_file
    dataset = read_dataset(path)
    assert dataset.povm == readout_povms(errors, 4) and dataset.attrs["readout_error"] == errors
    assert dataset.has_log_prob  # simulated: exact ln P under the POVM actually measured
    assert np.max(np.abs(_z_scores(dataset, dataset.povm, dataset.reference))) < 4.5
    ignored = _z_scores(dataset, get_povm("pauli6"), dataset.reference)
    assert np.max(np.abs(ignored)) > 10


def test_imported_readout_error_is_stored_and_undone(readout_file, tmp_path):
    """The raw bits of the corrupted records, exported and re-imported with --readout-error
    (E0 E1, or the per-qubit file)."""
    path, errors, option = readout_file
    shots_file = export_records("pauli-shots", path, tmp_path / "raw.npz")
    out = tmp_path / "lab.h5"
    assert main(["import", "pauli-shots", str(shots_file[0]), "--out", str(out),
                 "--readout-error", *option, "--quiet"]) == 0
    lab = read_dataset(out)
    assert lab.povm == read_dataset(path).povm and not lab.has_log_prob
    assert lab.attrs["readout_error"] == errors
    truth = read_dataset(path).reference  # the lab file has none
    assert np.max(np.abs(_z_scores(lab, lab.povm, truth))) < 4.5
    assert np.max(np.abs(_z_scores(lab, get_povm("pauli6"), truth))) > 10


@pytest.mark.parametrize("readout_file", ["per-qubit"], indirect=True)
def test_mps_model_of_per_qubit_readout_records_round_trips_and_recovers_the_state(
        readout_file, tmp_path, capsys):
    """An ``mps`` fitted to 2·10^4 records with readout errors that differ by qubit keeps the
    per-qubit POVM in its checkpoint, and its ⟨X_i⟩, ⟨Z_i⟩, ⟨Z_iZ_j⟩ match the uncorrupted TFIM
    within 0.04 (about 3 data-only standard errors; ignoring the errors biases ⟨X_2⟩ by −0.25)."""
    import torch

    from qtomo.models import build, load_checkpoint
    from qtomo.observables import model_observables
    from qtomo.povm import PerQubitPOVM
    from qtomo.train import TrainOptions, fit

    path, _, _ = readout_file
    corrupted = read_dataset(path)
    assert isinstance(corrupted.povm, PerQubitPOVM)
    rows = corrupted.outcomes()[:20_000]
    subset = write_dataset(tmp_path / "lab.h5", povm=corrupted.povm,
                           attrs={"L": 4, "source": "imported:test",
                                  "readout_error": corrupted.attrs["readout_error"]},
                           n_records=len(rows),
                           chunks=[(rows, None)], reference={})
    uniform = build("mps", L=4, K=6, povm="pauli6", chi=4)  # ignores the readout errors
    with pytest.raises(QtomoError, match=re.escape(
            "was measured with PerQubitPOVM('pauli6+readout', K=6, L=4); the mps model's Born "
            "rule uses POVM('pauli6', K=6)")):
        fit(uniform, read_dataset(subset), out=None, device="cpu", quiet=True)
    torch.manual_seed(0)
    fit(build("mps", L=4, K=6, povm=corrupted.povm, chi=4), read_dataset(subset),
        TrainOptions(epochs=8, seed=0), out=tmp_path / "m.pt", device="cpu", quiet=True)
    model = load_checkpoint(tmp_path / "m.pt").model
    assert model.povm == corrupted.povm
    estimate, truth = model_observables(model, model.povm, exact=True), corrupted.reference
    for name in ("X", "Z", "ZZ"):
        assert np.max(np.abs(getattr(estimate, name).value - truth[name])) < 0.04, name
    assert main(["evaluate", "--model", str(tmp_path / "m.pt"), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "kl" not in report and report["quantum_fidelity"] is None  # measured data
    assert report["data"]["readout_error"] == READOUT_ERRORS["per-qubit"]


# --- portable checkpoints -------------------------------------------------------------------

QUICK_FIT = ["--epochs", "1", "--batch-size", "128", "--hidden", "8", "--device", "cpu",
             "--quiet"]


def test_evaluate_finds_the_dataset_after_the_folder_moved(tmp_path, capsys):
    from qtomo.models import load_checkpoint
    from qtomo.simulate import simulate

    project = tmp_path / "project"
    simulate("ghz", 3, povm="pauli6", samples=2000, out=project / "data" / "g.h5", quiet=True)
    assert main(["fit", "--data", str(project / "data" / "g.h5"), "--out",
                 str(project / "runs" / "g.pt"), *QUICK_FIT]) == 0
    data = load_checkpoint(project / "runs" / "g.pt").config["data"]
    assert data["relative_path"] == os.path.join("..", "data", "g.h5")
    moved = project.rename(tmp_path / "elsewhere")
    assert main(["evaluate", "--model", str(moved / "runs" / "g.pt"), "--samples", "200",
                 "--json", str(moved / "e.json")]) == 0
    assert "using the training dataset " + str(moved / "runs" / ".." / "data" / "g.h5") \
        in capsys.readouterr().out
    report = json.loads((moved / "e.json").read_text())
    assert report["test_rows"] == load_checkpoint(moved / "runs" / "g.pt").config["data"][
        "val_rows"]  # recognised as the training file: only unseen rows are tested
    (moved / "data" / "g.h5").unlink()
    assert main(["evaluate", "--model", str(moved / "runs" / "g.pt")]) == 2
    assert "give --data" in capsys.readouterr().err


# --- the worked example: QuCumber files → import → fit → evaluate → export --------------------

EXAMPLE = Path(__file__).parent / "data"


def test_worked_example_import_fit_evaluate_export(tmp_path, capsys):
    from qtomo.states.exact import tfim_ground_state

    samples, bases = EXAMPLE / "tfim4_samples.txt", EXAMPLE / "tfim4_samples_bases.txt"
    data = tmp_path / "lab.h5"
    assert main(["import", "qucumber", str(samples), str(bases), "--out", str(data),
                 "--quiet"]) == 0
    dataset = read_dataset(data)
    assert (dataset.n_records, dataset.L, dataset.povm.name) == (2000, 4, "pauli6")
    truth = tfim_ground_state(4).references()
    from qtomo.observables import estimate_observables

    observed = estimate_observables(dataset.outcomes(), dataset.povm)
    for name in ("X", "Z", "ZZ"):  # the committed shots are shots of the TFIM ground state
        off = np.abs(getattr(observed, name).value - truth[name])
        assert np.all(off <= 4 * getattr(observed, name).stderr + 1e-12), name

    run = tmp_path / "runs" / "lab.pt"
    assert main(["fit", "--data", str(data), "--out", str(run), *QUICK_FIT]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--json", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    assert "quantum fidelity" not in table  # no reference state: no fidelity
    assert "smallest eigenvalue of rho" in table and "z (model - data)" in table
    assert "2-site Renyi-2 entropy" in table and "block fidelity" not in table
    report = json.loads((tmp_path / "e.json").read_text())
    assert "kl" not in report and "classical_fidelity" not in report
    assert report["quantum_fidelity"] is None and report["n_test"] == 200  # held-out rows
    assert report["nll"]["stderr"] > 0 and np.isfinite(report["nll"]["value"])
    assert report["data"]["source"] == "imported:qucumber"
    assert len(report["observables"]["X"]["z"]) == 4
    assert set(report["density_matrix"]) >= {"trace", "min_eigenvalue", "purity"}

    written = export_records("qucumber", data, tmp_path / "back.txt")
    def shots_of(samples_file, bases_file):
        return sorted(tuple(bits) + tuple(letters) for bits, letters in zip(
            np.loadtxt(samples_file, dtype=int).tolist(),
            np.loadtxt(bases_file, dtype=str).tolist(), strict=True))

    # import shuffles the rows; the multiset of shots comes back unchanged
    assert shots_of(*written) == shots_of(samples, bases)


# --- bad input: one line, exit 2, no file left ------------------------------------------------

GOOD_BITS, GOOD_BASES = "0 1 1\n1 0 0\n", "X Y Z\nZ Z X\n"


@pytest.mark.parametrize("samples, bases, extra, message", [
    (GOOD_BITS, "X Y W\nZ Z X\n", [], "basis letters must be X, Y or Z; got 'W' in row 0"),
    ("0 1 2\n1 0 0\n", GOOD_BASES, [], "bits must be 0 or 1; got 2 in row 0, qubit 2"),
    ("0 1 1\n1 0\n", GOOD_BASES, [], "rows of different lengths: row 0 has 3 entries, row 1"),
    ("", GOOD_BASES, [], "empty file"),
    ("0 1 1\n", GOOD_BASES, [], "2 rows of 3 bases; the samples file has 1 rows"),
    (GOOD_BITS, GOOD_BASES, ["--readout-error", "0.5", "0.1"], "must lie in [0, 0.5); got 0.5"),
    (GOOD_BITS, GOOD_BASES, ["--readout-error", "-0.01", "0"], "must lie in [0, 0.5)"),
    (GOOD_BITS, GOOD_BASES, ["--readout-error", "nan", "0"], "expected a finite number"),
    (GOOD_BITS, GOOD_BASES, ["--povm", "Tetra"], "--povm and --tfim-sign-map apply to genmodel"),
])
def test_bad_qucumber_input(samples, bases, extra, message, tmp_path, capsys):
    (tmp_path / "s.txt").write_text(samples)
    (tmp_path / "b.txt").write_text(bases)
    out = tmp_path / "out" / "x.h5"
    status = main(["import", "qucumber", str(tmp_path / "s.txt"), str(tmp_path / "b.txt"),
                   "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("qtomo: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists() and not list(tmp_path.glob("out/.*tmp"))


@pytest.mark.parametrize("argv, message", [
    (["import", "csv", "x.txt", "--out", "x.h5"], "unknown import format 'csv'; expected one of"),
    (["export", "aqtt", "x.h5", "--out", "x.npy"], "unknown export format 'aqtt'"),
    (["export", "genmodel", "x.h5", "--out", "x.txt"], "unknown export format 'genmodel'"),
    (["import", "qucumber", "a.txt", "--out", "x.h5"], "format qucumber reads 2 file(s); got 1"),
    (["import", "genmodel", "data.txt", "--out", "x.h5"], "genmodel records need --povm"),
    (["import", "genmodel", "data.txt", "--povm", "Trine", "--out", "x.h5"],
     "one of 4Pauli, Tetra, Pauli"),
    (["import", "netket", "missing.npz", "--out", "x.h5"], "missing.npz: no such file"),
    (["simulate", "--L", "3", "--povm", "pauli4", "--readout-error", "0.1", "0.1", "--out",
      "x.h5"], "needs --povm pauli6"),
    (["simulate", "--L", "3", "--povm", "pauli6", "--readout-error", "0.6", "0.1", "--out",
      "x.h5"], "must lie in [0, 0.5)"),
])
def test_bad_import_export_arguments(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("0 1\n2 3\n")
    (tmp_path / "a.txt").write_text("0 1\n")
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "data.txt"]


@pytest.mark.parametrize("content, message", [
    ({"XZ": {"01": 3, "1": 2}}, "bitstring '1' has 1 bits; its basis label 'XZ' has 2"),
    ({"XZ": {"01": 3}, "Z": {"1": 1}}, "basis label 'Z' has 1 qubits; the first label has 2"),
    ({"XQ": {"01": 3}}, "basis letters must be X, Y or Z; got 'Q'"),
    ({"XZ": {"0a": 3}}, "must hold only 0 and 1"),
    ({"XZ": {"01": -1}}, "non-negative integer; got -1"),
    ({}, "non-empty JSON object"),
    ({"XZ": {"01": 0}}, "empty; expected at least one record"),
])
def test_bad_qiskit_counts(content, message, tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps(content))
    status = main(["import", "qiskit-counts", str(tmp_path / "c.json"), "--out",
                   str(tmp_path / "x.h5")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.h5").exists()


def test_bad_array_files(tmp_path, capsys):
    np.savez(tmp_path / "n.npz", sigma=np.array([[1, 0]]), bases=np.array(["XZ"]))
    np.savez(tmp_path / "m.npz", sigma=np.array([[1, -1]]), bases=np.array(["XZY"]))
    np.savez(tmp_path / "p.npz", bases=np.array([["X", "Z"]]))
    np.save(tmp_path / "a.npy", np.array([[0, 6]]))
    np.save(tmp_path / "e.npy", np.zeros((0, 3), dtype=int))
    for fmt, name, message in [("netket", "n.npz", "sigma must be +1 or -1; got 0"),
                               ("netket", "m.npz", "has 3 letters; sigma has L = 2"),
                               ("pauli-shots", "p.npz", "missing array(s) bits"),
                               ("aqt", "a.npy", "aqt outcomes must lie in 0..5; got 6"),
                               ("aqt", "e.npy", "empty"),
                               ("pauli-shots", "a.npy", "not a .npz archive (it is a .npy")]:
        status = main(["import", fmt, str(tmp_path / name), "--out", str(tmp_path / "x.h5")])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and message in err, (name, err)
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("errors", [(0.1, 0.25), [[0.1, 0.25], [0.0, 0.05], [0.2, 0.1]]],
                         ids=["same", "per-qubit"])
def test_a_model_trained_on_readout_corrupted_records_recovers_the_state(tmp_path, errors):
    """GRU fitted to the raw records of a readout-corrupted TFIM L = 3 (the same errors on every
    qubit, or one pair per qubit): its observables through the stored POVM's duals match the
    true state; through the ideal pauli6 duals they do not (qubit 0's closed-form bias is
    (1 − e0 − e1)⟨Z⟩ + e1 − e0 − ⟨Z⟩ = +0.15 on ⟨Z_0⟩ = 0)."""
    import torch

    from qtomo.distribution import enumerate_probabilities
    from qtomo.models import build
    from qtomo.observables import exact_observables
    from qtomo.simulate import simulate
    from qtomo.train import TrainOptions, fit

    path = simulate("tfim", 3, povm="pauli6", samples=30_000, readout_error=errors, seed=4,
                    out=tmp_path / "r.h5", quiet=True)
    dataset = read_dataset(path)
    torch.manual_seed(0)
    model = build("gru", L=3, K=6, hidden=32, layers=1)
    fit(model, dataset, TrainOptions(epochs=6, batch_size=256, lr=1e-2, seed=0),
        out=tmp_path / "r.pt", device="cpu", quiet=True)
    Q = enumerate_probabilities(model)
    truth = dataset.reference
    undone = exact_observables(Q, dataset.povm)
    ignored = exact_observables(Q, get_povm("pauli6"))
    for name in ("X", "Z"):
        assert np.max(np.abs(getattr(undone, name).value - truth[name])) < 0.05, name
    assert np.max(np.abs(ignored.Z.value - truth["Z"])) > 0.1  # (1 − e0 − e1)⟨Z⟩ + e1 − e0
    assert np.max(np.abs(ignored.X.value - truth["X"])) > 0.1


def test_an_ensemble_on_measured_data_reports_no_kl(tmp_path, capsys):
    import torch

    from qtomo.models import build, save_checkpoint

    data = tmp_path / "lab.h5"
    import_records("qucumber", [EXAMPLE / "tfim4_samples.txt", EXAMPLE / "tfim4_samples_bases.txt"],
                   data)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build("gru", L=4, K=6, hidden=8, layers=1)
        paths.append(str(save_checkpoint(tmp_path / f"m{seed}.pt", model, povm="pauli6")))
    assert main(["evaluate", "--model", *paths, "--data", str(data), "--plot",
                 str(tmp_path / "e.png"), "--json", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    assert "NLL" in table and not [line for line in table.splitlines()
                                    if line.startswith(("KL", "classical fidelity"))]
    report = json.loads((tmp_path / "e.json").read_text())
    assert "kl" not in report and report["nll"]["spread"] > 0


def test_per_qubit_povm_dataset_round_trips_and_bad_tables_are_refused(tmp_path):
    """/povm/elements (L, K, 2, 2) is read back as the same PerQubitPOVM; a table for another L,
    a site that is not a POVM, or a malformed readout_error attribute is refused in one line."""
    from qtomo.readout import readout_povms

    povm = readout_povms(PER_QUBIT)
    outcomes = np.random.default_rng(0).integers(0, 6, size=(30, 3)).astype(np.uint8)
    path = write_dataset(tmp_path / "p.h5", povm=povm, attrs={
        "L": 3, "source": "imported:test", "readout_error": PER_QUBIT}, n_records=30,
        chunks=[(outcomes, None)], reference={})
    dataset = read_dataset(path)
    assert dataset.povm == povm and dataset.povm != readout_povms(PER_QUBIT[::-1])
    assert np.array_equal(dataset.outcomes(), outcomes)
    with pytest.raises(QtomoError, match="defined on 3 qubits; the records have L = 2"):
        write_dataset(tmp_path / "q.h5", povm=povm, attrs={"L": 2, "source": "imported:test"},
                      n_records=30, chunks=[(outcomes[:, :2], None)], reference={})
    def unbalance_qubit_2(file):
        elements = file["povm/elements"][()]
        elements[2, 0] *= 2  # qubit 2's elements no longer sum to 1
        file["povm/elements"][...] = elements

    def drop_a_qubit(file):
        del file["povm/elements"]
        file["povm/elements"] = povm.site_elements(3)[:2]

    def short_attribute(file):
        file.attrs["readout_error"] = np.array(PER_QUBIT[:2])

    cases = {unbalance_qubit_2: "qubit 2: POVM 'pauli6+readout' elements do not sum to the "
                                "identity",
             drop_a_qubit: "must be complex128 (K, 2, 2), or (3, K, 2, 2) per qubit",
             short_attribute: "attribute readout_error: readout errors are given for 2 qubits"}
    for damage, message in cases.items():
        broken = tmp_path / f"{damage.__name__}.h5"
        broken.write_bytes(path.read_bytes())
        with h5py.File(broken, "r+") as file:
            damage(file)
        with pytest.raises(QtomoError, match=re.escape(message)):
            read_dataset(broken)
