"""JSON output (``qtomo.jsontext``): an undefined standard error is ``null`` with a reason, in
``qtomo evaluate --json`` and ``qtomo info --json`` alike, never Infinity or NaN."""

import pytest

from qtomo.cli import main
from qtomo.evaluate import evaluate
from qtomo.report import write_json
from qtomo.simulate import simulate
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
