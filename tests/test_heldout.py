"""Held-out comparisons (qtomo/heldout.py): the paired gain and its standard error against
numpy, rows with counts as their copies, and when the rows prefer a state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qtomo.heldout import SIGNIFICANCE, HeldOut, paired_gain


def test_paired_gain_is_the_mean_difference_and_its_standard_error():
    rng = np.random.default_rng(0)
    difference = rng.normal(0.3, 2.0, size=500)
    gain, stderr = paired_gain(torch.from_numpy(difference))
    assert gain == pytest.approx(difference.mean(), rel=1e-12)
    assert stderr == pytest.approx(difference.std(ddof=1) / math.sqrt(500), rel=1e-12)


def test_rows_with_counts_compare_as_their_copies():
    """A row that stands for c equal rows weighs as c rows, in the NLL and the paired gain."""
    rng = np.random.default_rng(1)
    distinct = torch.from_numpy(rng.normal(size=(2, 40)))
    counts = torch.from_numpy(rng.integers(1, 5, size=40).astype(np.float64))
    copies = distinct.repeat_interleave(counts.long(), dim=1)
    weighted = [HeldOut(nll, counts) for nll in distinct]
    expanded = [HeldOut(nll) for nll in copies]
    assert weighted[0].nll == pytest.approx(expanded[0].nll, rel=1e-12)
    assert weighted[0].gain_over(weighted[1]) == pytest.approx(
        expanded[0].gain_over(expanded[1]), rel=1e-12)


@pytest.mark.parametrize("spread, preferred", [(0.0, True), (1.0, False)])
def test_the_rows_prefer_a_state_only_beyond_the_noise(spread, preferred):
    """A state 0.01 nats per row better is preferred when every row says so, not when the
    rows' differences scatter by 1 (standard error 0.1 over 100 rows)."""
    rng = np.random.default_rng(2)
    worse = HeldOut(torch.from_numpy(rng.normal(5.0, 1.0, size=100)))
    better = HeldOut(worse.nll_rows - 0.01 + spread * torch.from_numpy(rng.normal(size=100)))
    gain, stderr = better.gain_over(worse)
    assert better.prefers(worse) is preferred is (gain > SIGNIFICANCE * stderr)
    assert not worse.prefers(better)
