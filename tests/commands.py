"""Helpers for the tests that run ``qtomo`` commands: one-line errors, refusals, tiny fits and
strict JSON."""

import json

from qtomo.cli import main
from tests.files import digests


def tiny_fit(epochs: int) -> list[str]:
    """``qtomo fit`` options of a one-layer GRU of width 8 trained ``epochs`` epochs on the CPU."""
    return ["--epochs", str(epochs), "--batch-size", "128", "--hidden", "8", "--layers", "1",
            "--device", "cpu", "--quiet"]


def one_line_error(capsys, *fragments):
    """The CLI's stderr is one line ``qtomo: error: …`` containing every fragment."""
    err = capsys.readouterr().err
    assert err.startswith("qtomo: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def refused(capsys, folder, argv, *fragments):
    """``qtomo argv`` exits 2 with one error line holding every fragment, and leaves every file
    in ``folder`` as it was."""
    before = digests(folder)
    assert main(argv) == 2
    one_line_error(capsys, *fragments)
    assert digests(folder) == before


def strict_json(text):
    """json.loads that refuses Infinity and NaN, as jq and JavaScript do."""

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)
