"""``qtomo.cli`` across its commands: counts are whole numbers or one-line errors, negative
values name the expected form, a closed pipe ends a command silently (status 141)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qtomo.cli import main
from qtomo.data import read_dataset
from tests.commands import one_line_error


@pytest.mark.parametrize("argv, flag", [
    (["simulate", "--samples", "1e400"], "--samples"),
    (["simulate", "--samples", "1.5e0"], "--samples"),
    (["simulate", "--samples", "1.5"], "--samples"),
    (["simulate", "--samples", "nan"], "--samples"),
    (["simulate", "--samples", "inf"], "--samples"),
    (["simulate", "--samples", "1e19"], "--samples"),
    (["simulate", "--samples", "0x10"], "--samples"),
    (["simulate", "--L", "1e400"], "--L"),
    (["simulate", "--L", "2.5"], "--L"),
    (["simulate", "--chi-max", "1.5"], "--chi-max"),
    (["simulate", "--seed", "1e400"], "--seed"),
    (["simulate", "--seed", "-1"], "--seed"),
    (["fit", "--epochs", "1e400"], "--epochs"),
    (["fit", "--epochs", "2.5"], "--epochs"),
    (["fit", "--batch-size", "1.5e0"], "--batch-size"),
    (["fit", "--warmup", "1e400"], "--warmup"),
    (["fit", "--patience", "0.5"], "--patience"),
    (["fit", "--hidden", "1e400"], "--hidden"),
    (["fit", "--seed", "1e30"], "--seed"),
    (["evaluate", "--model", "m.pt", "--samples", "1e400"], "--samples"),
    (["evaluate", "--model", "m.pt", "--samples", "2.5"], "--samples"),
])
def test_cli_counts_are_integers_or_one_line_errors(argv, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_line_error(capsys, f"argument {flag}: expected ")
    assert list(tmp_path.iterdir()) == []


def test_cli_count_in_exact_scientific_notation(tmp_path):
    out = tmp_path / "d.h5"
    assert main(["simulate", "--L", "2", "--samples", "1e2", "--out", str(out), "--quiet"]) == 0
    assert read_dataset(out).n_records == 100


@pytest.mark.parametrize("argv", [["info", "{data}"], ["evaluate", "--model", "{run}",
                                                       "--json", "-", "--blocks", "none"]])
def test_a_closed_pipe_ends_the_command_silently(argv, ghz3_records, ghz3_gru):
    argv = [word.format(data=ghz3_records, run=ghz3_gru) for word in argv]
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
