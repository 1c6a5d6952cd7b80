"""``qtomo.models.checkpoint``: crafted checkpoints (wrong types, missing fields, non-finite
weights) are refused in one line naming the file, by the loader and by ``qtomo info`` and
``qtomo evaluate``."""

import pytest
import torch

from qtomo.cli import main
from qtomo.errors import CheckpointError
from qtomo.models import load_checkpoint
from tests.commands import one_line_error


def _nan_weights(payload):
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first][0] = float("nan")


def _nan_average(payload):
    payload["trainer"]["average"] = {k: v.clone() for k, v in payload["state_dict"].items()}
    first = next(iter(payload["trainer"]["average"]))
    payload["trainer"]["average"][first].fill_(float("inf"))


CRAFTED = {
    "hyperparameters not a mapping": (
        lambda p: p["config"].__setitem__("hyperparameters", [8, 1]),
        "config.hyperparameters must be a mapping"),
    "data without train_rows": (
        lambda p: p["config"]["data"].pop("train_rows"),
        "config.data lacks the field 'train_rows'"),
    "reversed rows": (
        lambda p: p["config"]["data"].__setitem__("val_rows", [3000, 2700]),
        "config.data.val_rows must be a row range"),
    "string best_val_nll": (
        lambda p: p["config"]["training"].__setitem__("best_val_nll", "low"),
        "config.training.best_val_nll must be a number; got 'low'"),
    "NaN best_val_nll": (
        lambda p: p["config"]["training"].__setitem__("best_val_nll", float("nan")),
        "config.training.best_val_nll is NaN"),
    "unknown training option": (
        lambda p: p["config"]["training"]["options"].__setitem__("turbo", True),
        "unknown option(s) turbo"),
    "string training option": (
        lambda p: p["config"]["training"]["options"].__setitem__("lr", "fast"),
        "training option lr must be of type float"),
    "string L": (lambda p: p["config"].__setitem__("L", "3"), "config.L must be an integer"),
    "trainer epoch a string": (
        lambda p: p["trainer"].__setitem__("epoch", "1"), "trainer.epoch must be an integer"),
    "trainer without optimizer": (
        lambda p: p["trainer"].pop("optimizer"), "trainer lacks the field 'optimizer'"),
    "trainer a list": (lambda p: p.__setitem__("trainer", [1]), "trainer must be a mapping"),
    "history entry without val_nll": (
        lambda p: p["trainer"]["history"][0].pop("val_nll"),
        "trainer.history[0] lacks the field 'val_nll'"),
    "rng not a tensor": (
        lambda p: p["trainer"]["rng"].__setitem__("cpu", [1, 2]),
        "trainer.rng.cpu must be a tensor"),
    "NaN weights": (_nan_weights, "holds non-finite weights"),
    "infinite average": (_nan_average, "trainer.average.* holds non-finite weights"),
    "state dict a list": (lambda p: p.__setitem__("state_dict", [1]),
                          "state_dict must be a mapping"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_checkpoints_are_one_line(tfim3_gru, tmp_path, capsys, case):
    edit, message = CRAFTED[case]
    payload = torch.load(tfim3_gru[1], weights_only=True)
    edit(payload)
    path = tmp_path / "crafted.last.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert any(part in str(info.value) for part in message.split("*")), str(info.value)
    assert main(["info", str(path)]) == 2
    one_line_error(capsys)


def test_nan_weights_stop_evaluate_before_any_work(tfim3_gru, tfim3_records, tmp_path, capsys):
    payload = torch.load(tfim3_gru[0], weights_only=True)
    _nan_weights(payload)
    torch.save(payload, tmp_path / "nan.pt")
    assert main(["evaluate", "--model", str(tmp_path / "nan.pt"), "--data", str(tfim3_records),
                 "--quiet"]) == 2
    one_line_error(capsys, "non-finite weights")
