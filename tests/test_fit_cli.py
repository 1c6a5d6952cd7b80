"""``qtomo fit`` and ``qtomo info`` on checkpoints, through ``qtomo.cli.main``."""

import json
import os

import pytest

from qtomo.cli import main
from qtomo.models import load_checkpoint
from qtomo.simulate import simulate

QUICK = ["--epochs", "2", "--batch-size", "128", "--hidden", "16", "--device", "cpu"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder with two datasets in data/, the L = 3 one the newest."""
    monkeypatch.chdir(tmp_path)
    simulate("tfim", 4, samples=3_000, out="data/tfim_L4.h5", seed=1, quiet=True)
    newest = simulate("tfim", 3, samples=3_000, out="data/tfim_L3.h5", seed=2, quiet=True)
    os.utime(newest, (newest.stat().st_mtime + 10,) * 2)
    return tmp_path


def test_fit_uses_newest_dataset_and_default_output(workdir, capsys):
    assert main(["fit", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "using the newest dataset data/tfim_L3.h5" in out
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == [
        "tfim_L3_gru.history.json", "tfim_L3_gru.last.pt", "tfim_L3_gru.pt"]
    checkpoint = load_checkpoint("runs/tfim_L3_gru.pt")
    assert checkpoint.config["hyperparameters"] == {"hidden": 16, "layers": 2}
    assert checkpoint.config["L"] == 3 and checkpoint.config["povm"] == "pauli4"
    assert len(json.loads((workdir / "runs/tfim_L3_gru.history.json").read_text())["epochs"]) == 2

    assert main(["info", "runs/tfim_L3_gru.pt"]) == 0
    info = capsys.readouterr().out
    assert "qtomo checkpoint, model gru (hidden=16, layers=2)" in info
    assert "train rows [0, 2700), validation rows [2700, 3000))" in info


def test_fit_transformer_then_resume_for_more_epochs(workdir, capsys):
    args = ["fit", "--model", "transformer", "--d-model", "16", "--heads", "2", "--quiet",
            "--data", "data/tfim_L4.h5", "--out", "runs/t.pt", "--epochs", "1"]
    assert main(args) == 0
    assert capsys.readouterr().out == ""  # --quiet
    assert main(["fit", "--resume", "runs/t.pt", "--epochs", "2", "--device", "cpu"]) == 0
    assert "resuming runs/t.last.pt after epoch 1" in capsys.readouterr().out
    last = load_checkpoint("runs/t.last.pt")
    assert last.trainer["epoch"] == 2 and last.config["family"] == "transformer"
    assert last.config["data"]["path"].endswith("data/tfim_L4.h5")


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt"], "invalid choice: 'gpt'"),
    (["--heads", "2"], "unknown hyperparameter 'heads' for model 'gru'"),
    (["--hidden", "0"], "hidden must be an integer in 1..4096; got 0"),
    (["--lr", "-1"], "training option lr must be > 0; got -1.0"),
    (["--data", "notes.txt"], "notes.txt: not a readable HDF5 file"),
    (["--batch-size", "5000"], "need at least one batch of 5000"),
    (["--resume", "notes.txt"], "notes.txt is not a qtomo checkpoint"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, args, message):
    (workdir / "notes.txt").write_text("hello")
    assert main(["fit", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qtomo: error: ") and message in err and err.count("\n") == 1
    assert not (workdir / "runs").exists()


def test_resume_against_a_different_dataset_is_refused(workdir, capsys):
    assert main(["fit", *QUICK, "--quiet", "--data", "data/tfim_L3.h5", "--out", "a.pt"]) == 0
    assert main(["fit", "--quiet", "--resume", "a.pt", "--data", "data/tfim_L4.h5"]) == 2
    err = capsys.readouterr().err
    assert "has L = 4, povm pauli4, 3000 records; the run in a.last.pt was trained on L = 3" in err


def test_no_dataset_found(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fit"]) == 2
    assert "no --data given and no dataset in data/" in capsys.readouterr().err
