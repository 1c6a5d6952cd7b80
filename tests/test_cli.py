"""``qtomo.cli`` across its commands: counts are whole numbers or one-line errors, negative
values name the expected form (also fuzzed with hypothesis), a closed pipe ends a command
silently (status 141)."""

import argparse
import decimal
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qtomo.cli import COMMANDS, build_parser, main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from tests.commands import one_line_error
from tests.fuzz import FUZZ, one_line

ROOT = Path(__file__).resolve().parents[1]


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
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
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


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys, time; started = time.perf_counter()\n"
            "from qtomo.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', "
            "'NUMPY' if 'numpy' in sys.modules else 'NO-NUMPY', "
            "time.perf_counter() - started, file=sys.stderr)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_do_not_import_torch(argv):
    run = _run_cli(*argv)
    marks = run.stderr.split()
    assert marks[:2] == ["NO-TORCH", "NO-NUMPY"], run.stderr
    assert ("qtomo 0.1.0" if argv == ["--version"] else "compare") in run.stdout


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_help_shows_its_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    parser = build_parser([command])
    sub = next(action for action in parser._actions
               if isinstance(action, argparse._SubParsersAction)).choices[command]
    blocks = re.split(r"\n(?=  -)", text.split("options:", 1)[1])
    for action in sub._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue
        block = next(b for b in blocks if b.lstrip().startswith(action.option_strings[0] + " "))
        assert "default" in block, (command, action.option_strings[0], block)
