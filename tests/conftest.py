"""Shared test set-up: one torch thread, GPU tests skip without CUDA, an interrupted training."""

import contextlib

import pytest
import torch

import qtomo.train
from qtomo.simulate import simulate

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
