"""``qtomo fit`` and ``qtomo info`` on checkpoints, through ``qtomo.cli.main``."""

import json
import os

import pytest
import torch

from qtomo.cli import main
from qtomo.models import hyperparameter_types, load, load_checkpoint
from qtomo.simulate import simulate
from tests.commands import one_line_error, refused, tiny_fit

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
    (["--heads", "2"], "unknown hyperparameter 'heads' for model 'mps'"),
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


# --- moved from the zoo tests ------------------------------------------------------------
def test_every_hyperparameter_has_one_type_and_floats_parse_as_floats():
    types = hyperparameter_types()
    assert types["beta"] is float and types["penalty"] is float and types["latent"] is int
    assert types["contrastive"] is str and types["transform"] is str




@pytest.mark.parametrize("argv, message", [
    (["--model", "rbm", "--gibbs-steps", "0"],
     "rbm hyperparameter gibbs_steps must be an integer in 1..1000; got 0"),
    (["--model", "vae", "--latent", "0"],
     "vae hyperparameter latent must be an integer in 1..4096; got 0"),
    (["--model", "vae", "--beta", "-0.5"],
     "vae hyperparameter beta must be a number in 0..1000000.0; got -0.5"),
    (["--model", "rbm", "--contrastive", "gibbs"],
     "rbm hyperparameter contrastive must be one of cd, pcd; got 'gibbs'"),
])
def test_bad_hyperparameters_are_one_line_and_exit_2(tiny_data, tmp_path, capsys, argv, message):
    out = tmp_path / "m.pt"
    assert main(["fit", "--data", str(tiny_data), "--out", str(out), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"qtomo: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("family, options", [
    ("cnn", ["--channels", "8"]),
    ("rbm", ["--hidden", "8", "--gibbs-steps", "2", "--burn-in", "20"]),
    ("vae", ["--latent", "2", "--hidden", "16", "--beta", "0.5"]),
    ("gan", ["--latent", "2", "--hidden", "16", "--penalty", "5.5"]),
    ("flow", ["--layers", "2", "--hidden", "8", "--transform", "additive"]),
])
def test_every_family_fits_and_resumes_from_the_command_line(tiny_data, tmp_path, family,
                                                             options):
    out = tmp_path / f"{family}.pt"
    common = ["--batch-size", "128", "--quiet", "--device", "cpu"]
    assert main(["fit", "--model", family, "--data", str(tiny_data), "--out", str(out),
                 "--epochs", "1", *options, *common]) == 0
    assert main(["fit", "--resume", str(out), "--epochs", "2", *common]) == 0
    model = load(out)
    assert model.family == family
    assert model.sample(10, generator=torch.Generator().manual_seed(0)).shape == (10, 3)
    if family == "vae":
        assert model.config.beta == 0.5 and isinstance(model.config.beta, float)
    if family == "gan":
        assert model.config.penalty == 5.5
        trainer = torch.load(tmp_path / "gan.last.pt", weights_only=True)["trainer"]
        assert list(trainer["optimizer"]["param_groups"][0]["betas"]) == [0.5, 0.9]
    assert torch.load(out, weights_only=True)["config"]["training"]["epochs_run"] == 2


def test_fit_into_a_folder_fails_before_the_work_and_leaves_nothing(tfim3_records, tmp_path,
                                                                    capsys):
    out = tmp_path / "m.pt"
    out.mkdir()
    assert main(["fit", "--data", str(tfim3_records), "--out", str(out), *tiny_fit(2)]) == 2
    one_line_error(capsys, "it is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("model", [tiny_fit(2), ["--model", "mps", "--epochs", "1", "--quiet"]])
def test_fit_onto_its_own_data_fails_and_leaves_the_data(tfim3_records, capsys, model):
    """A plain fit and a size search (which copies its kept run to --out) both refuse."""
    before = tfim3_records.read_bytes()
    assert main(["fit", "--data", str(tfim3_records), "--out", str(tfim3_records), *model]) == 2
    one_line_error(capsys, "it is an input of this command")
    assert tfim3_records.read_bytes() == before


def test_fit_out_over_its_dataset_through_a_link_is_refused(ghz3_records, capsys, tmp_path):
    link = tmp_path / "link.h5"
    link.symlink_to(ghz3_records)
    refused(capsys, ghz3_records.parent,
            ["fit", "--data", str(link), "--out", str(ghz3_records), *tiny_fit(1)], "input")
    # variant: a hard link, another name for the same inode
    hard = ghz3_records.parent / "hard.h5"
    os.link(ghz3_records, hard)
    try:
        refused(capsys, ghz3_records.parent,
                ["fit", "--data", str(ghz3_records), "--out", str(hard), *tiny_fit(1)], "input")
    finally:
        hard.unlink()
