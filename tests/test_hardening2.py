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

TINY = ["--epochs", "1", "--batch-size", "128", "--hidden", "8", "--layers", "1",
        "--device", "cpu", "--quiet"]


def one_line_error(capsys, *fragments):
    """The CLI's stderr is one line ``qtomo: error: …`` containing every fragment."""
    err = capsys.readouterr().err
    assert err.startswith("qtomo: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


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
