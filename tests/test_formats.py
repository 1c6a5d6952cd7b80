"""``qtomo.formats``: the import and export readers and writers. Refused: outputs over their
inputs, huge or duplicated entries, foreign files, bad letters and bits, oversized array
headers; read: NetKet bases in a wider string dtype. Damaged files of each format (hypothesis)
are refused in one line or read as valid records."""

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.formats import export_records, import_records, read_genmodel_mps
from qtomo.readout import read_readout_errors
from qtomo.simulate import simulate
from tests.commands import one_line_error, refused
from tests.fuzz import FUZZ, one_line


def test_export_and_import_over_their_inputs_are_refused(ghz3_records, capsys, tmp_path):
    refused(capsys, ghz3_records.parent,
            ["export", "qucumber", str(ghz3_records), "--out", str(ghz3_records)], "input")
    samples = tmp_path / "s.txt"
    assert main(["export", "qucumber", str(ghz3_records), "--out", str(samples), "--quiet"]) == 0
    bases = tmp_path / "s_bases.txt"
    refused(capsys, tmp_path, ["import", "qucumber", str(samples), str(bases), "--out",
                                str(samples)], "input")
    # variant: the second output of a qucumber export (<stem>_bases) is the dataset
    named = tmp_path / "x_bases.h5"
    named.write_bytes(ghz3_records.read_bytes())
    refused(capsys, tmp_path, ["export", "qucumber", str(named), "--out",
                                str(tmp_path / "x.h5")], "x_bases.h5", "input")


def test_api_refuses_an_output_over_its_input(ghz3_records, tmp_path):
    with pytest.raises(QtomoError, match="input"):
        export_records("aqt", ghz3_records, ghz3_records)
    shots = export_records("aqt", ghz3_records, tmp_path / "shots.npy")[0]
    with pytest.raises(QtomoError, match="input"):
        import_records("aqt", [shots], shots)
    assert np.load(shots).shape == (2000, 3)


def test_huge_imports_are_refused_with_their_size(tmp_path):
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"ZZZ": {"000": 10**13}}))
    with pytest.raises(QtomoError, match="10000000000000 records of 3 qubits"):
        import_records("qiskit-counts", [counts], tmp_path / "c.h5")
    samples, bases = tmp_path / "s.txt", tmp_path / "b.txt"
    samples.write_text(" ".join(["0"] * 10**5) + "\n")
    bases.write_text(" ".join(["Z"] * 10**5) + "\n")
    with pytest.raises(QtomoError, match="s.txt: records of 100000 qubits; an import takes "
                                         "at most 1024"):
        import_records("qucumber", [samples, bases], tmp_path / "q.h5")
    # variant: the genmodel data file, and a genmodel MPS bond of 10^5
    with pytest.raises(QtomoError, match="100000 qubits"):
        import_records("genmodel", [samples], tmp_path / "g.h5", povm="Tetra")
    index, tensor = _genmodel_files(tmp_path, dims=((1, 2, 10**8), (10**8, 2, 1)))
    with pytest.raises(QtomoError, match=r"index.txt: tensor 0 has dimensions \[100000000, 2\]"):
        read_genmodel_mps(index, tensor)
    assert sorted(path.suffix for path in tmp_path.iterdir()) == [".json", ".txt", ".txt",
                                                                   ".txt", ".txt"]


def _genmodel_files(folder, dims, entries=None):
    """A two-site genmodel MPS: index.txt for (left, phys, right) ``dims`` and tensor.txt with
    ``entries`` per tensor (1-based index tuples in their leg order, value 1), by default the
    product state |00⟩."""
    first, last = dims
    index = folder / "index.txt"
    index.write_text(f"2 {len((entries or [[(1, 1)], [(1, 1)]])[0])} {first[2]} {first[1]}\n"
                     f"2 {len((entries or [[(1, 1)], [(1, 1)]])[1])} {last[1]} {last[0]}\n")
    tensor = folder / "tensor.txt"
    tensor.write_text("\n".join(" ".join(map(str, entry)) + " 1.0"
                                for block in (entries or [[(1, 1)], [(1, 1)]])
                                for entry in block) + "\n")
    return index, tensor


def test_genmodel_index_zero_and_duplicates_are_refused(tmp_path):
    dims = ((1, 2, 2), (2, 2, 1))
    index, tensor = _genmodel_files(tmp_path, dims)
    tensors = read_genmodel_mps(index, tensor)
    assert len(tensors) == 2 and np.isclose(abs(tensors[0][0, 0, 0]), 1.0)
    index, tensor = _genmodel_files(tmp_path, dims, [[(0, 1)], [(1, 1)]])
    with pytest.raises(QtomoError, match=r"entry \[0, 1\] outside .*1-based"):
        read_genmodel_mps(index, tensor)
    index, tensor = _genmodel_files(tmp_path, dims, [[(1, 1), (1, 1)], [(1, 1)]])
    with pytest.raises(QtomoError, match=r"entry \[1, 1\] more than once"):
        read_genmodel_mps(index, tensor)
    # variant: an index past the end, and a dimension of 0
    index, tensor = _genmodel_files(tmp_path, dims, [[(1, 1)], [(3, 1)]])
    with pytest.raises(QtomoError, match="outside its dimensions"):
        read_genmodel_mps(index, tensor)
    index, tensor = _genmodel_files(tmp_path, ((1, 2, 0), (0, 2, 1)))
    with pytest.raises(QtomoError, match="expected each >= 1"):
        read_genmodel_mps(index, tensor)


def test_duplicate_json_keys_are_refused(tmp_path):
    counts = tmp_path / "counts.json"
    counts.write_text('{"ZZ": {"00": 5, "11": 2, "00": 7}}')
    with pytest.raises(QtomoError, match="counts.json: key '00' appears twice"):
        import_records("qiskit-counts", [counts], tmp_path / "c.h5")
    counts.write_text('{"ZZ": {"00": 5}, "XX": {"01": 1}, "ZZ": {"11": 7}}')  # variant
    with pytest.raises(QtomoError, match="key 'ZZ' appears twice"):
        import_records("qiskit-counts", [counts], tmp_path / "c.h5")
    assert not (tmp_path / "c.h5").exists()
    table = tmp_path / "readout.json"
    table.write_text('[[0.01, 0.02]]')
    assert read_readout_errors(table).tolist() == [[0.01, 0.02]]


def test_foreign_files_are_named_for_what_they_are(ghz3_records, tmp_path, capsys):
    fake = tmp_path / "fake.npz"
    fake.write_bytes(ghz3_records.read_bytes())
    with pytest.raises(QtomoError, match=r"fake.npz: not a .npz archive \(it is an HDF5 file\)"):
        import_records("netket", [fake], tmp_path / "o.h5")
    text = tmp_path / "t.npy"
    text.write_text("0 1\n")
    with pytest.raises(QtomoError, match=r"t.npy: not a .npy array \(it is a text file\)"):
        import_records("aqt", [text], tmp_path / "o.h5")
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("x.txt", "hi")
    assert main(["info", str(archive)]) == 2
    one_line_error(capsys, "a.zip is a zip archive but not a qtomo checkpoint")
    # variant: a folder where a file is expected, for each kind of input
    for argv, what in ((["import", "aqt", str(tmp_path), "--out", str(tmp_path / "o.h5")],
                        "a folder; expected a file"),
                       (["fit", "--data", str(tmp_path)], "a folder; expected a dataset file"),
                       (["fit", "--resume", str(tmp_path)],
                        "a folder; expected a checkpoint file")):
        assert main(argv) == 2
        one_line_error(capsys, str(tmp_path), what)


def test_reader_errors_name_the_files(tmp_path):
    samples, bases = tmp_path / "s.txt", tmp_path / "b.txt"
    samples.write_text("0 1\n1 0\n")
    bases.write_text("Z Q\nX Y\n")
    with pytest.raises(QtomoError, match=r"s.txt, .*b.txt: basis letters must be X, Y or Z"):
        import_records("qucumber", [samples, bases], tmp_path / "o.h5")
    samples.write_text("0 2\n1 0\n")  # variant: a bit that is not 0 or 1
    bases.write_text("Z X\nX Y\n")
    with pytest.raises(QtomoError, match="s.txt"):
        import_records("qucumber", [samples, bases], tmp_path / "o.h5")


def test_netket_bases_in_a_wider_string_dtype_are_read(tmp_path):
    data = simulate("ghz", 3, povm="pauli6", samples=300, seed=1, out=tmp_path / "d.h5",
                    quiet=True)
    written = export_records("netket", data, tmp_path / "n.npz")[0]
    with np.load(written) as archive:
        sigma, bases = archive["sigma"], archive["bases"]
    np.savez(tmp_path / "wide.npz", sigma=sigma, bases=bases.astype("<U5"))
    out = import_records("netket", [tmp_path / "wide.npz"], tmp_path / "w.h5", shuffle=False)

    assert np.array_equal(read_dataset(out).outcomes(), read_dataset(data).outcomes())
    # variant: one letter per row where L = 3 is expected is named, not a reshape error
    np.savez(tmp_path / "short.npz", sigma=sigma, bases=np.full(len(sigma), "Z"))
    with pytest.raises(QtomoError, match="basis string 'Z' in row 0 has 1 letters"):
        import_records("netket", [tmp_path / "short.npz"], tmp_path / "s.h5")


def test_an_array_header_announcing_too_much_is_refused_before_loading(tmp_path):
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as handle:  # a header for 10^11 int64 and no data: 800 GB announced
        npy.write_array_header_1_0(handle, {"descr": "<i8", "fortran_order": False,
                                            "shape": (10**9, 100)})
    with pytest.raises(QtomoError, match=r"huge.npy: the array has shape \(1000000000, 100\)"):
        import_records("aqt", [huge], tmp_path / "o.h5")
    archive = tmp_path / "huge.npz"  # variant: the same header inside a netket archive
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(huge, "sigma.npy")
        handle.write(huge, "bases.npy")
    with pytest.raises(QtomoError, match="huge.npz: sigma has shape"):
        import_records("netket", [archive], tmp_path / "o.h5")
    assert not (tmp_path / "o.h5").exists()


FORMATS = ["pauli-shots", "qucumber", "qiskit-counts", "netket", "aqt", "genmodel"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each format's files of the same 300 pauli6 GHZ records (genmodel: their data.txt), as
    {format: [path, …]}."""
    folder = tmp_path_factory.mktemp("fuzz-import")
    data = simulate("ghz", 3, povm="pauli6", samples=300, seed=5, out=folder / "d.h5",
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
