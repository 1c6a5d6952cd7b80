"""First contact: training in memory (no files), and the CLI's help and version."""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qtomo.cli import COMMANDS, build_parser, main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate
from qtomo.models import build
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit

L, N = 3, 2000
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("first") / "tfim.h5"
    return read_dataset(simulate("tfim", L, samples=N, seed=2, out=path, quiet=True))


def test_fit_in_memory_writes_nothing_and_matches_a_saved_run(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = TrainOptions(epochs=3, batch_size=128)
    torch.manual_seed(0)
    memory = fit(build("gru", L=L, K=4, hidden=8), dataset, options, device="cpu", quiet=True)
    assert list(tmp_path.iterdir()) == []
    assert memory.checkpoint is memory.last is memory.history_path is None
    assert memory.val_rows == (N - N // 10, N)
    torch.manual_seed(0)
    saved = fit(build("gru", L=L, K=4, hidden=8), dataset, options, out=tmp_path / "m.pt",
                device="cpu", quiet=True)
    assert saved.checkpoint.is_file() and saved.val_rows == memory.val_rows
    assert [row["val_nll"] for row in memory.history] == [row["val_nll"] for row in saved.history]
    evaluation = evaluate(memory.model, dataset, rows=memory.val_rows, blocks=())
    assert evaluation.classical.n_test == N // 10
    assert evaluation.classical.nll.value == pytest.approx(memory.best_val_nll, rel=1e-5)
    with pytest.raises(QtomoError, match="resuming needs the run's files"):
        fit(build("gru", L=L, K=4, hidden=8), dataset, options, resume=saved.last,
            device="cpu", quiet=True)


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


def test_info_json_describes_a_dataset_and_a_checkpoint(dataset, tmp_path, capsys):
    assert main(["info", str(dataset.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "dataset" and summary["L"] == L and summary["K"] == 4
    assert summary["povm"] == "pauli4" and summary["n_records"] == N and summary["log_prob"]
    log_prob = dataset.log_prob(0, N)
    assert summary["entropy"]["value"] == pytest.approx(-log_prob.mean(), rel=1e-12)
    assert summary["entropy"]["records"] == N
    assert summary["reference"]["energy"] == pytest.approx(float(dataset.reference["energy"]))
    assert summary["reference"]["X"]["max"] == pytest.approx(dataset.reference["X"].max())
    assert summary["state"] == "tfim" and summary["parameters"]["h"] == 1.0
    assert summary["noise"] is None and summary["warning"] is None
    assert main(["info", str(dataset.path)]) == 0  # the text form reads the same summary
    text = capsys.readouterr().out
    assert f"H(P) ≈ {summary['entropy']['value']:.6f}" in text and f"N = {N}" in text

    torch.manual_seed(0)
    result = fit(build("gru", L=L, K=4, hidden=8), dataset, TrainOptions(epochs=2),
                 out=tmp_path / "m.pt", device="cpu", quiet=True)
    for path, resumable in ((result.checkpoint, None), (result.last, 2)):
        assert main(["info", str(path), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["kind"] == "checkpoint" and summary["family"] == "gru"
        assert summary["hyperparameters"]["hidden"] == 8 and summary["resumable_epoch"] == resumable
        assert summary["data"]["val_rows"] == list(result.val_rows)
        assert summary["training"]["time_s"] == pytest.approx(
            sum(row["time_s"] for row in result.history))
    assert main(["info", str(tmp_path / "m.history.json"), "--json"]) == 2
    assert "neither a qtomo dataset" in capsys.readouterr().err
