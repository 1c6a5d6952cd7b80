"""JSON output (``qtomo.jsontext``): an undefined standard error is ``null`` with a reason, in
``qtomo evaluate --json`` and ``qtomo info --json`` alike, never Infinity or NaN."""

import json

import pytest
import torch

from qtomo.cli import main
from qtomo.evaluate import evaluate
from qtomo.models import build
from qtomo.report import write_json
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit
from tests.commands import strict_json


def test_json_of_one_test_record_has_null_and_a_reason(ghz3_records, ghz3_gru, tmp_path):
    evaluation = evaluate(ghz3_gru, ghz3_records, rows=(1999, 2000), blocks=())
    report = strict_json(write_json(evaluation, tmp_path / "e.json").read_text())
    assert report["nll"]["stderr"] is None and "two records" in report["nll"]["stderr_reason"]
    assert report["nll"]["value"] == pytest.approx(evaluation.classical.nll.value)
    # variant: two records give a finite stderr and no reason
    report = strict_json(write_json(evaluate(ghz3_gru, ghz3_records, rows=(1998, 2000), blocks=()),
                                     tmp_path / "f.json").read_text())
    assert report["nll"]["stderr"] > 0 and "stderr_reason" not in report["nll"]


def test_info_of_one_record_says_inf_like_evaluate(tmp_path, capsys):
    one = simulate("ghz", 2, samples=1, seed=0, out=tmp_path / "one.h5", quiet=True)
    assert main(["info", str(one)]) == 0
    assert "± inf nats" in capsys.readouterr().out
    assert main(["info", str(one), "--json"]) == 0
    entropy = strict_json(capsys.readouterr().out)["entropy"]
    assert entropy["stderr"] is None and entropy["records"] == 1
    assert "stderr_reason" in entropy


def test_info_json_describes_a_dataset_and_a_checkpoint(tfim3_dataset, tmp_path, capsys):
    L, N = 3, 2000  # those of tfim3_dataset
    assert main(["info", str(tfim3_dataset.path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "dataset" and summary["L"] == L and summary["K"] == 4
    assert summary["povm"] == "pauli4" and summary["n_records"] == N and summary["log_prob"]
    log_prob = tfim3_dataset.log_prob(0, N)
    assert summary["entropy"]["value"] == pytest.approx(-log_prob.mean(), rel=1e-12)
    assert summary["entropy"]["records"] == N
    assert summary["reference"]["energy"] == pytest.approx(float(tfim3_dataset.reference["energy"]))
    assert summary["reference"]["X"]["max"] == pytest.approx(tfim3_dataset.reference["X"].max())
    assert summary["state"] == "tfim" and summary["parameters"]["h"] == 1.0
    assert summary["noise"] is None and summary["warning"] is None
    assert main(["info", str(tfim3_dataset.path)]) == 0  # the text form reads the same summary
    text = capsys.readouterr().out
    assert f"H(P) ≈ {summary['entropy']['value']:.6f}" in text and f"N = {N}" in text

    torch.manual_seed(0)
    result = fit(build("gru", L=L, K=4, hidden=8), tfim3_dataset, TrainOptions(epochs=2),
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
