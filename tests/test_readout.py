"""``qtomo.readout``: readout-error tables that are not tables, complex, or the command's own
output are refused in one line."""

import numpy as np
import pytest

from qtomo.cli import main
from qtomo.errors import QtomoError
from qtomo.readout import read_readout_errors
from tests.commands import one_line_error, refused


def test_readout_file_is_an_input(tmp_path, capsys):
    table = tmp_path / "readout.txt"
    table.write_text("0.01 0.02\n")
    refused(capsys, tmp_path, ["simulate", "--state", "ghz", "--L", "1", "--povm", "pauli6",
                                "--readout-error", str(table), "--out", str(table)], "input")


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
    path = tmp_path / "readout.npy"
    np.save(path, np.array([[0.01 + 0.001j, 0.02]]))
    with pytest.raises(QtomoError, match="must be real numbers"):
        read_readout_errors(path)
    np.save(path, np.array([[0.01, 0.02]], dtype=np.complex128))  # variant: zero imaginary part
    with pytest.raises(QtomoError, match="must be real numbers"):
        read_readout_errors(path)
