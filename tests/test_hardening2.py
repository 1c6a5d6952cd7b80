"""Hostile inputs of the second hardening round (issue 24), one section per class of defect.

1. Outputs that would overwrite an input or another output. 2. State trusted from another run.
3. Import readers that lost or changed data. 4. Numbers that were not what they said.
5. Tracebacks. 6. Unclear errors. Every refusal is one line, exit 2, and leaves every file as
it was.
"""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from qtomo.cli import main
from qtomo.errors import QtomoError
from qtomo.simulate import simulate
from tests.test_hardening import one_line_error

TINY = ["--epochs", "1", "--batch-size", "128", "--hidden", "8", "--layers", "1",
        "--device", "cpu", "--quiet"]


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in ``folder``: a refused command must leave it unchanged."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture(scope="module")
def pauli6(tmp_path_factory):
    """2 000 pauli6 records of the exact L = 3 GHZ state."""
    path = tmp_path_factory.mktemp("pauli6") / "ghz3.h5"
    return simulate("ghz", 3, povm="pauli6", samples=2000, seed=3, out=path, quiet=True)


@pytest.fixture(scope="module")
def run(pauli6):
    """A one-epoch GRU run on ``pauli6`` beside the data: the best checkpoint."""
    out = pauli6.parent / "m.pt"
    assert main(["fit", "--data", str(pauli6), "--out", str(out), *TINY]) == 0
    return out


# --- 1. an output never replaces an input or another output --------------------------------

def _refused(capsys, folder, argv, *fragments):
    before = digests(folder)
    assert main(argv) == 2
    one_line_error(capsys, *fragments)
    assert digests(folder) == before


def test_evaluate_json_over_its_dataset_is_refused(pauli6, run, capsys):
    folder = pauli6.parent
    _refused(capsys, folder, ["evaluate", "--model", str(run), "--data", str(pauli6), "--json",
                              str(pauli6), "--quiet"], "it is an input of this command")
    # variant: the run's own .last.pt, reached through a relative path with ..
    relative = os.path.relpath(folder / "sub" / ".." / "m.last.pt")
    _refused(capsys, folder, ["evaluate", "--model", str(run), "--json", relative, "--quiet"],
             "m.last.pt", "input")


def test_fit_out_over_its_dataset_through_a_link_is_refused(pauli6, capsys, tmp_path):
    link = tmp_path / "link.h5"
    link.symlink_to(pauli6)
    _refused(capsys, pauli6.parent, ["fit", "--data", str(link), "--out", str(pauli6), *TINY],
             "input")
    # variant: a hard link, another name for the same inode
    hard = pauli6.parent / "hard.h5"
    os.link(pauli6, hard)
    try:
        _refused(capsys, pauli6.parent, ["fit", "--data", str(pauli6), "--out", str(hard),
                                         *TINY], "input")
    finally:
        hard.unlink()


def test_export_and_import_over_their_inputs_are_refused(pauli6, capsys, tmp_path):
    _refused(capsys, pauli6.parent, ["export", "qucumber", str(pauli6), "--out", str(pauli6)],
             "input")
    samples = tmp_path / "s.txt"
    assert main(["export", "qucumber", str(pauli6), "--out", str(samples), "--quiet"]) == 0
    bases = tmp_path / "s_bases.txt"
    _refused(capsys, tmp_path, ["import", "qucumber", str(samples), str(bases), "--out",
                                str(samples)], "input")
    # variant: the second output of a qucumber export (<stem>_bases) is the dataset
    named = tmp_path / "x_bases.h5"
    named.write_bytes(pauli6.read_bytes())
    _refused(capsys, tmp_path, ["export", "qucumber", str(named), "--out",
                                str(tmp_path / "x.h5")], "x_bases.h5", "input")


def test_readout_file_is_an_input(tmp_path, capsys):
    table = tmp_path / "readout.txt"
    table.write_text("0.01 0.02\n")
    _refused(capsys, tmp_path, ["simulate", "--state", "ghz", "--L", "1", "--povm", "pauli6",
                                "--readout-error", str(table), "--out", str(table)], "input")


def test_two_outputs_on_one_path_and_duplicate_models_are_refused(pauli6, run, capsys):
    folder = pauli6.parent
    copy = folder / "n.pt"
    copy.write_bytes(run.read_bytes())
    json = str(folder / "a.json")
    _refused(capsys, folder, ["compare", "--model", str(run), "--model", str(copy), "--json",
                              json, "--json", json, "--quiet"], "same file")
    _refused(capsys, folder, ["compare", "--model", str(run), "--model",
                              str(folder / "." / "m.pt"), "--quiet"], "same file")
    _refused(capsys, folder, ["evaluate", "--model", str(run), str(run), "--quiet"],
             "same file")
    # variant: --json and --plot on one file
    image = folder / "a.png"
    _refused(capsys, folder, ["evaluate", "--model", str(run), "--json", str(image), "--plot",
                              str(folder / "." / "a.png"), "--quiet"], "same file")
    copy.unlink()


def test_api_refuses_an_output_over_its_input(pauli6, tmp_path):
    from qtomo.formats import export_records, import_records

    with pytest.raises(QtomoError, match="input"):
        export_records("aqt", pauli6, pauli6)
    shots = export_records("aqt", pauli6, tmp_path / "shots.npy")[0]
    with pytest.raises(QtomoError, match="input"):
        import_records("aqt", [shots], shots)
    assert np.load(shots).shape == (2000, 3)


# --- 5. no traceback ------------------------------------------------------------------------

def _families():
    from qtomo.models import FAMILIES

    return list(FAMILIES)


@pytest.mark.parametrize("family", _families())
def test_every_family_takes_records_of_every_integer_dtype(family):
    import torch

    from qtomo.models import build
    from qtomo.povm import get_povm

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


@pytest.mark.parametrize("family", _families())
def test_every_family_refuses_a_count_that_is_not_a_whole_number(family):
    import torch

    from qtomo.models import build
    from qtomo.povm import get_povm

    torch.manual_seed(0)
    model = build(family, L=3, K=4, povm=get_povm("pauli4"))
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(QtomoError, match="number of records must be an integer >= 0"):
            model.sample(bad)
    assert model.sample(np.int64(2)).shape == (2, 3)  # variant: a numpy integer is a count
    assert model.sample(0).shape == (0, 3)


def test_api_takes_paths_and_checks_rows(pauli6, run):
    import torch

    from qtomo.evaluate import evaluate
    from qtomo.models import build
    from qtomo.train import TrainOptions, fit

    torch.manual_seed(0)
    result = fit(build("gru", L=3, K=6, hidden=4), str(pauli6), TrainOptions(epochs=1),
                 device="cpu", quiet=True)
    assert np.isfinite(result.best_val_nll)
    evaluation = evaluate(str(run), pauli6, blocks=(), rows=(0, 100))
    assert evaluation.classical.n_test == 100
    for rows in ((-5, 10), (0, 10**6), (7, 7), (0.0, 10), (0, 2001)):
        with pytest.raises(QtomoError, match="0 <= start < stop <= 2000"):
            evaluate(run, str(pauli6), blocks=(), rows=rows)


@pytest.mark.parametrize("argv", [["info", "{data}"], ["evaluate", "--model", "{run}",
                                                       "--json", "-", "--blocks", "none"]])
def test_a_closed_pipe_ends_the_command_silently(argv, pauli6, run):
    import subprocess
    import sys

    argv = [word.format(data=pauli6, run=run) for word in argv]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has already gone
    done = subprocess.run([sys.executable, "-m", "qtomo.cli", *argv], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


@pytest.mark.parametrize("option, value", [("--samples", "-5"), ("--samples", "-1e5"),
                                           ("--L", "-.5"), ("--h", "-inf"), ("--seed", "-3")])
def test_a_negative_option_value_names_the_expected_form(option, value, capsys, tmp_path):
    argv = ["simulate", "--state", "ghz", "--L", "2", option, value, "--out",
            str(tmp_path / "x.h5")]
    assert main(argv) == 2
    one_line_error(capsys, f"argument {option}", "expected", repr(value))
    assert list(tmp_path.iterdir()) == []


def test_huge_imports_are_refused_with_their_size(tmp_path):
    import json

    from qtomo.formats import import_records

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
        read_genmodel_mps_(index, tensor)
    assert sorted(path.suffix for path in tmp_path.iterdir()) == [".json", ".txt", ".txt",
                                                                   ".txt", ".txt"]


def read_genmodel_mps_(index, tensor):
    from qtomo.formats import read_genmodel_mps

    return read_genmodel_mps(index, tensor)


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
    tensors = read_genmodel_mps_(index, tensor)
    assert len(tensors) == 2 and np.isclose(abs(tensors[0][0, 0, 0]), 1.0)
    index, tensor = _genmodel_files(tmp_path, dims, [[(0, 1)], [(1, 1)]])
    with pytest.raises(QtomoError, match=r"entry \[0, 1\] outside .*1-based"):
        read_genmodel_mps_(index, tensor)
    index, tensor = _genmodel_files(tmp_path, dims, [[(1, 1), (1, 1)], [(1, 1)]])
    with pytest.raises(QtomoError, match=r"entry \[1, 1\] more than once"):
        read_genmodel_mps_(index, tensor)
    # variant: an index past the end, and a dimension of 0
    index, tensor = _genmodel_files(tmp_path, dims, [[(1, 1)], [(3, 1)]])
    with pytest.raises(QtomoError, match="outside its dimensions"):
        read_genmodel_mps_(index, tensor)
    index, tensor = _genmodel_files(tmp_path, ((1, 2, 0), (0, 2, 1)))
    with pytest.raises(QtomoError, match="expected each >= 1"):
        read_genmodel_mps_(index, tensor)


def test_duplicate_json_keys_are_refused(tmp_path):
    from qtomo.formats import import_records
    from qtomo.readout import read_readout_errors

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


@pytest.mark.parametrize("content", ["0.1", "null", '"x"', '{"e0": 0.1}', "[[0.1, 0.2], [0.1]]"])
def test_readout_json_that_is_not_a_table(content, tmp_path, capsys):
    table = tmp_path / "readout.json"
    table.write_text(content)
    argv = ["simulate", "--state", "ghz", "--L", "2", "--povm", "pauli6", "--readout-error",
            str(table), "--out", str(tmp_path / "x.h5")]
    assert main(argv) == 2
    one_line_error(capsys, "readout.json", "expected")
    assert not (tmp_path / "x.h5").exists()


def test_a_complex_readout_table_is_refused(tmp_path):
    from qtomo.readout import read_readout_errors

    path = tmp_path / "readout.npy"
    np.save(path, np.array([[0.01 + 0.001j, 0.02]]))
    with pytest.raises(QtomoError, match="must be real numbers"):
        read_readout_errors(path)
    np.save(path, np.array([[0.01, 0.02]], dtype=np.complex128))  # variant: zero imaginary part
    with pytest.raises(QtomoError, match="must be real numbers"):
        read_readout_errors(path)


# --- 2. no state trusted from another run ---------------------------------------------------

def test_resume_refuses_a_last_checkpoint_of_another_family(pauli6, run, capsys, tmp_path):
    import shutil

    mine = tmp_path / "x.pt"
    shutil.copy(run, mine)
    other = tmp_path / "other.pt"
    assert main(["fit", "--data", str(pauli6), "--out", str(other), "--model", "mps", "--chi",
                 "2", "--real", "1", "--epochs", "1", "--refine", "0", "--batch-size", "128",
                 "--device", "cpu", "--quiet"]) == 0
    shutil.copy(tmp_path / "other.last.pt", tmp_path / "x.last.pt")  # the gru's .last.pt is an mps
    _refused(capsys, tmp_path, ["fit", "--resume", str(mine), "--epochs", "2", "--quiet"],
             "x.last.pt is not the last state of the run of", "family 'mps'", "'gru'")
    # variant: the same family with other hyperparameters, through the API
    from qtomo.errors import CheckpointError
    from qtomo.train import load_resume

    assert main(["fit", "--data", str(pauli6), "--out", str(other), "--epochs", "1",
                 "--batch-size", "128", "--hidden", "5", "--layers", "1", "--device", "cpu",
                 "--quiet"]) == 0
    shutil.copy(tmp_path / "other.last.pt", tmp_path / "x.last.pt")
    with pytest.raises(CheckpointError, match="hyperparameters"):
        load_resume(mine)


def test_resume_on_another_dataset_names_the_dataset(pauli6, run, capsys, tmp_path):
    small = simulate("ghz", 3, povm="pauli6", samples=150, seed=4, out=tmp_path / "small.h5",
                     quiet=True)
    last = Path(str(run).replace("m.pt", "m.last.pt"))
    before = digests(run.parent)
    assert main(["fit", "--resume", str(last), "--data", str(small), "--epochs", "2",
                 "--quiet"]) == 2
    one_line_error(capsys, "small.h5", "150 records", "2000 records")
    assert digests(run.parent) == before


def test_evaluate_refuses_readout_elements_that_differ_under_one_name(tmp_path, capsys):
    common = ["--state", "ghz", "--L", "2", "--povm", "pauli6", "--samples", "1500", "--quiet"]
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert main(["simulate", *common, "--readout-error", "0.01", "0.02", "--out", str(a)]) == 0
    assert main(["simulate", *common, "--readout-error", "0.05", "0.02", "--out", str(b)]) == 0
    for family in (["--hidden", "4", "--layers", "1"], ["--model", "mps", "--chi", "2",
                                                         "--real", "1", "--refine", "0"]):
        model = tmp_path / f"{family[1]}.pt"
        assert main(["fit", "--data", str(a), "--out", str(model), "--epochs", "1",
                     "--batch-size", "128", "--device", "cpu", "--quiet", *family]) == 0
        _refused(capsys, tmp_path, ["evaluate", "--model", str(model), "--data", str(b),
                                    "--json", str(tmp_path / "e.json"), "--quiet"],
                 "model does not match", "other elements")
        assert main(["evaluate", "--model", str(model), "--data", str(a), "--blocks", "none",
                     "--quiet"]) == 0  # the data it was trained on


# --- 4. numbers that are what they say --------------------------------------------------------

def _strict_json(text):
    """json.loads that refuses Infinity and NaN, as jq and JavaScript do."""
    import json

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_of_one_test_record_has_null_and_a_reason(pauli6, run, tmp_path):
    from qtomo.evaluate import evaluate
    from qtomo.report import write_json

    evaluation = evaluate(run, pauli6, rows=(1999, 2000), blocks=())
    report = _strict_json(write_json(evaluation, tmp_path / "e.json").read_text())
    assert report["nll"]["stderr"] is None and "two records" in report["nll"]["stderr_reason"]
    assert report["nll"]["value"] == pytest.approx(evaluation.classical.nll.value)
    # variant: two records give a finite stderr and no reason
    report = _strict_json(write_json(evaluate(run, pauli6, rows=(1998, 2000), blocks=()),
                                     tmp_path / "f.json").read_text())
    assert report["nll"]["stderr"] > 0 and "stderr_reason" not in report["nll"]


def test_info_of_one_record_says_inf_like_evaluate(tmp_path, capsys):
    one = simulate("ghz", 2, samples=1, seed=0, out=tmp_path / "one.h5", quiet=True)
    assert main(["info", str(one)]) == 0
    assert "± inf nats" in capsys.readouterr().out
    assert main(["info", str(one), "--json"]) == 0
    entropy = _strict_json(capsys.readouterr().out)["entropy"]
    assert entropy["stderr"] is None and entropy["records"] == 1
    assert "stderr_reason" in entropy


def test_negative_renyi2_is_flagged_and_the_reference_has_no_minus_zero(pauli6, run):
    from qtomo.evaluate import evaluate
    from qtomo.report import format_report

    evaluation = evaluate(run, pauli6, blocks=(3,), seed=0)
    rows = [line for line in format_report(evaluation).splitlines() if "Renyi-2" in line]
    state = evaluation.reduced_states[0]
    # 2000 GHZ records: ρ_A from the data alone is unphysical, the model's is not
    assert state.model.renyi2.value > 0 and state.data.renyi2.value < 0
    assert rows[0].count("UNPHYSICAL (Tr rho_A^2 > 1)") == 1  # the data column only
    assert rows[0].split()[-1] == "0" and "-0" not in rows[0].split()[-1]


def test_metrics_refuse_what_is_not_a_log_probability():
    from qtomo.metrics import classical_fidelity, kl_divergence, nll

    log_p = np.log([0.5, 0.25])
    with pytest.raises(QtomoError, match=r"ln Q must be <= 0 .*got 0.5 at record 1"):
        kl_divergence(log_p, [-1.0, 0.5])
    with pytest.raises(QtomoError, match="ln Q must be <= 0"):
        classical_fidelity(log_p, [0.2, -1.0])
    with pytest.raises(QtomoError, match=r"ln Q must have shape \(2,\)"):
        kl_divergence(log_p, [-1.0, -1.0, -1.0])
    with pytest.raises(QtomoError, match="ln P must be <= 0 .*and finite"):
        kl_divergence([np.nan, -1.0], log_p)
    with pytest.raises(QtomoError, match=r"\(a log-probability\) and finite; got -inf"):
        classical_fidelity([-np.inf, -1.0], log_p)
    # variant: ln Q = -inf (Q = 0 at a record) is a true, infinite NLL; rounding above 0 passes
    assert nll([-np.inf, -1.0]).value == np.inf
    assert kl_divergence(log_p, log_p + 1e-9).value == pytest.approx(-1e-9)


def test_fidelities_refuse_targets_that_are_not_states():
    from qtomo.reconstruct import quantum_fidelity, uhlmann_fidelity

    psi = np.array([1, 0, 0, 1]) / np.sqrt(2)
    rho = np.outer(psi, psi)
    assert quantum_fidelity(rho, psi).value == pytest.approx(1.0)
    with pytest.raises(QtomoError, match="squared norm 4"):
        quantum_fidelity(rho, 2 * psi)
    with pytest.raises(QtomoError, match="its trace is 2"):
        uhlmann_fidelity(2 * rho, 2 * rho)
    with pytest.raises(QtomoError, match="NaN"):
        quantum_fidelity(np.full((4, 4), np.nan), psi)
    with pytest.raises(QtomoError, match="ρ has trace 2"):
        quantum_fidelity(2 * rho, psi)
    # variant: a Hermitian, trace-1 σ with a negative eigenvalue is not a state either
    with pytest.raises(QtomoError, match="smallest eigenvalue is -0.2"):
        uhlmann_fidelity(rho, np.diag([1.2, -0.2, 0.0, 0.0]))
    assert float(uhlmann_fidelity(np.eye(4) / 4, rho)) == pytest.approx(0.25)


def test_records_must_be_whole_numbers():
    from qtomo.metrics import histogram_classical_fidelity
    from qtomo.observables import estimate_observables
    from qtomo.povm import get_povm

    whole = np.zeros((10, 2))
    assert np.allclose(estimate_observables(whole, get_povm("pauli6")).Z.value,
                       estimate_observables(whole.astype(int), get_povm("pauli6")).Z.value)
    with pytest.raises(QtomoError, match="records must be whole numbers; got 0.5"):
        estimate_observables(whole + 0.5, get_povm("pauli6"))
    with pytest.raises(QtomoError, match="test records must be whole numbers"):
        histogram_classical_fidelity(whole.astype(int), whole + 0.25, np.log(np.full(10, 0.5)), 6)


# --- 6. errors that say what is wrong ---------------------------------------------------------

def test_default_blocks_fit_small_L_and_an_L_mismatch_is_named(tmp_path, capsys):
    two = simulate("ghz", 2, samples=1500, seed=0, out=tmp_path / "two.h5", quiet=True)
    model = tmp_path / "m.pt"
    assert main(["fit", "--data", str(two), "--out", str(model), *TINY]) == 0
    assert main(["evaluate", "--model", str(model), "--json", str(tmp_path / "e.json"),
                 "--quiet"]) == 0
    report = _strict_json((tmp_path / "e.json").read_text())
    assert [len(state["sites"]) for state in report["reduced_states"]] == [2]
    one = simulate("product", 1, product_state="0", samples=500, seed=0,
                   out=tmp_path / "one.h5", quiet=True)
    assert main(["evaluate", "--model", str(model), "--data", str(one), "--quiet"]) == 2
    one_line_error(capsys, "model does not match", "L = 2 (data: 1)")
    # variant: a size given explicitly is still checked against L
    assert main(["evaluate", "--model", str(model), "--blocks", "3", "--quiet"]) == 2
    one_line_error(capsys, "block size '3'", "L = 2")


def test_foreign_files_are_named_for_what_they_are(pauli6, tmp_path, capsys):
    import zipfile

    from qtomo.formats import import_records

    fake = tmp_path / "fake.npz"
    fake.write_bytes(pauli6.read_bytes())
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
    from qtomo.formats import import_records

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
    from qtomo.formats import export_records, import_records

    data = simulate("ghz", 3, povm="pauli6", samples=300, seed=1, out=tmp_path / "d.h5",
                    quiet=True)
    written = export_records("netket", data, tmp_path / "n.npz")[0]
    with np.load(written) as archive:
        sigma, bases = archive["sigma"], archive["bases"]
    np.savez(tmp_path / "wide.npz", sigma=sigma, bases=bases.astype("<U5"))
    out = import_records("netket", [tmp_path / "wide.npz"], tmp_path / "w.h5", shuffle=False)
    from qtomo.data import read_dataset

    assert np.array_equal(read_dataset(out).outcomes(), read_dataset(data).outcomes())
    # variant: one letter per row where L = 3 is expected is named, not a reshape error
    np.savez(tmp_path / "short.npz", sigma=sigma, bases=np.full(len(sigma), "Z"))
    with pytest.raises(QtomoError, match="basis string 'Z' in row 0 has 1 letters"):
        import_records("netket", [tmp_path / "short.npz"], tmp_path / "s.h5")


def test_an_array_header_announcing_too_much_is_refused_before_loading(tmp_path):
    import zipfile

    from numpy.lib import format as npy

    from qtomo.formats import import_records

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


def test_api_ensemble_refuses_one_member_twice(pauli6, run):
    from qtomo.ensemble import evaluate_ensemble
    from qtomo.models import load_checkpoint

    first, second = load_checkpoint(run), load_checkpoint(run)
    with pytest.raises(QtomoError, match="ensemble members: .*m.pt and .*m.pt are the same"):
        evaluate_ensemble([first, second], pauli6, blocks=())
    with pytest.raises(QtomoError, match="are the same file"):  # variant: one object twice
        evaluate_ensemble([first, first], pauli6, blocks=())
