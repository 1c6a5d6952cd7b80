"""Shared test set-up: one torch thread, GPU tests skip without CUDA, an interrupted training,
small datasets and one-epoch runs on them shared by the modules that check bad input."""

import contextlib

import pytest
import torch

import qtomo.train
from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.models import build
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit
from tests.commands import tiny_fit

# The test networks are small: one intra-op thread beats two competing ones, and keeps timings
# steady on a busy 2-core machine.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def interrupt_after(monkeypatch):
    """``with interrupt_after(n):`` training stops with KeyboardInterrupt (as from Ctrl-C) right
    after the files of epoch n are written; the trainer is restored on leaving the block."""

    @contextlib.contextmanager
    def armed(epochs: int):
        write_history = qtomo.train._write_history

        def killed(path, history, summary):
            write_history(path, history, summary)
            if len(history) == epochs:
                raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(qtomo.train, "_write_history", killed)
            yield

    return armed


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """1 200 exact `pauli4` records of the L = 3 TFIM, shared by a test module."""
    folder = tmp_path_factory.mktemp("zoo")
    return simulate("tfim", 3, samples=1200, method="exact", out=folder / "tfim3.h5", quiet=True)


@pytest.fixture(scope="module")
def tfim3_records(tmp_path_factory):
    """3 000 pauli4 records of the exact L = 3 TFIM at h = 0.8."""
    path = tmp_path_factory.mktemp("tfim3") / "tfim3.h5"
    return simulate("tfim", 3, h=0.8, samples=3000, seed=1, out=path, quiet=True)


@pytest.fixture(scope="module")
def tfim3_gru(tfim3_records, tmp_path_factory):
    """A finished one-epoch GRU run on ``tfim3_records``: (best checkpoint, .last.pt)."""
    out = tmp_path_factory.mktemp("run") / "m.pt"
    torch.manual_seed(0)
    result = fit(build("gru", L=3, K=4, hidden=8, layers=1), read_dataset(tfim3_records),
                 TrainOptions(epochs=1, batch_size=256), out=out, device="cpu", quiet=True)
    return result.checkpoint, result.last


@pytest.fixture(scope="module")
def ghz3_records(tmp_path_factory):
    """2 000 pauli6 records of the exact L = 3 GHZ state."""
    path = tmp_path_factory.mktemp("pauli6") / "ghz3.h5"
    return simulate("ghz", 3, povm="pauli6", samples=2000, seed=3, out=path, quiet=True)


@pytest.fixture(scope="module")
def ghz3_gru(ghz3_records):
    """A one-epoch GRU run on ``ghz3_records`` beside the data: the best checkpoint m.pt."""
    out = ghz3_records.parent / "m.pt"
    assert main(["fit", "--data", str(ghz3_records), "--out", str(out), *tiny_fit(1)]) == 0
    return out


@pytest.fixture(scope="module")
def tfim3_dataset(tmp_path_factory):
    """2 000 pauli4 records of the exact L = 3 TFIM at h = 1 (seed 2), read."""
    path = tmp_path_factory.mktemp("tfim3-h1") / "tfim.h5"
    return read_dataset(simulate("tfim", 3, samples=2000, seed=2, out=path, quiet=True))
