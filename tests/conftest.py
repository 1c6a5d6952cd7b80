"""Shared test set-up: one torch thread, and GPU tests skip without CUDA."""

import pytest
import torch

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
