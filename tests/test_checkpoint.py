"""``qtomo.models.checkpoint``: crafted checkpoints (wrong types, missing fields, non-finite
weights) are refused in one line naming the file, by the loader and by ``qtomo info`` and
``qtomo evaluate``; hypothesis fuzzing of the loader with payloads whose fields are replaced."""

import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import CheckpointError
from qtomo.models import build, load_checkpoint
from qtomo.models.checkpoint import describe
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit
from tests.commands import one_line_error
from tests.fuzz import FUZZ, VALUES, read_or_refused


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
    "time_s none": (
        lambda p: p["config"]["training"].__setitem__("time_s", None),
        "config.training.time_s must be a number; got None"),
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


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    """A two-epoch GRU run (best checkpoint and .last.pt) on 1 200 records of L = 3."""
    folder = tmp_path_factory.mktemp("fuzz-run")
    data = simulate("tfim", 3, samples=1200, seed=4, out=folder / "d.h5", quiet=True)
    torch.manual_seed(0)
    result = fit(build("gru", L=3, K=4, hidden=4, layers=1), read_dataset(data),
                 TrainOptions(epochs=2, batch_size=256, warmup=0), out=folder / "m.pt",
                 device="cpu", quiet=True)
    return data, result.checkpoint, result.last


TENSOR_VALUES = st.builds(
    lambda shape, dtype, fill: torch.full(shape, fill, dtype=torch.float64).to(dtype),
    st.lists(st.integers(0, 3), max_size=2).map(tuple),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]),
    st.floats(allow_nan=True, allow_infinity=True))


PAYLOAD_VALUES = st.one_of(VALUES, TENSOR_VALUES, st.just({}), st.just([]),
                           st.dictionaries(st.text("abc", max_size=3), VALUES, max_size=2))


def _paths(value, prefix=()):
    """Every key path of nested dicts and lists (tensors are leaves)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@settings(FUZZ, max_examples=80)
@given(which=st.integers(0, 1), data=st.data())
def test_checkpoint_loader_refuses_in_one_line_or_gives_a_working_model(fuzz_run, which, data):
    dataset, best, last = fuzz_run
    source = (best, last)[which]
    payload = torch.load(source, weights_only=True)
    paths = [p for p in _paths(payload) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = payload
        try:
            for key in path[:-1]:
                parent = parent[key]
            if not isinstance(parent, dict | list):
                continue  # an earlier edit replaced the container
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = data.draw(PAYLOAD_VALUES)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier edit removed the path
    truncate = data.draw(st.one_of(st.none(), st.floats(0, 1)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / source.name
        torch.save(payload, path)
        if truncate is not None:
            path.write_bytes(path.read_bytes()[: int(truncate * path.stat().st_size)])
        checkpoint = read_or_refused(load_checkpoint, path, CheckpointError)
        if checkpoint is None:
            return
        describe(checkpoint)  # what `qtomo info` prints
        model = checkpoint.model  # its config may describe another L or K than the run's
        a = torch.randint(0, model.K, (16, model.L), generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(model.log_prob(a)).all()
        if checkpoint.trainer is not None:  # it must resume, or refuse in one line
            out = Path(folder) / "resumed.pt"
            shutil.copy(path, out.with_name("resumed.last.pt"))
            argv = ["fit", "--resume", str(out), "--data", str(dataset), "--epochs", "3",
                    "--quiet", "--device", "cpu"]
            status = main(argv)
            assert status in (0, 2)
            event(f"resume exit {status}")
        else:
            event("loaded")
