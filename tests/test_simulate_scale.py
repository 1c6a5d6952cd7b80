"""``qtomo simulate`` at scale (docs/simulate.md): the real grouped ln P pass against independent
truths, records at L = 100 against the MPS' exact marginals, streaming in flat memory, and the
refusals before the work (disk, DMRG time budget)."""

import itertools
import os
import subprocess
import sys
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import torch

import qtomo.simulate
from qtomo.cli import main
from qtomo.errors import ConvergenceError
from qtomo.povm import get_povm
from qtomo.readout import readout_povms
from qtomo.states.mps import tfim_mps
from qtomo.states.mps_sampler import MPSDistribution, born_log_prob
from qtomo.states.real_environment import is_real, real_log_prob, real_site_tables
from tests.physics import dense_from_mps
from tests.test_mps_sampler import chi_square_pvalue, random_mps, two_site_marginal

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["pauli4", "tetra", "pauli6-readout"])
def test_real_pass_equals_the_dense_born_rule_for_every_record(name):
    """Every one of the K^L records of a random real MPS (χ = 5): exp ln P = Tr(M_a |ψ⟩⟨ψ|),
    M_a an explicit Kronecker product, to 1e-10 relative, through the pass itself and through
    the sampler. The readout POVM differs from qubit to qubit and has rank-two elements."""
    povm = (readout_povms([[0.05, 0.1], [0.2, 0.0], [0.0, 0.0], [0.1, 0.3], [0.02, 0.04]])
            if name == "pauli6-readout" else get_povm(name))
    L = 6 if povm.K == 4 else 5
    tensors = random_mps(L, chi=5, seed=21, real=True)
    assert is_real(tensors) and not is_real(random_mps(L, chi=5, seed=21))
    elements = povm.site_elements(L)  # (L, K, 2, 2)
    psi = dense_from_mps(tensors)
    rho = np.outer(psi, psi.conj())
    records = np.array(list(itertools.product(range(povm.K), repeat=L)))
    truth = np.array([np.trace(reduce(np.kron, [elements[i, k] for i, k in enumerate(a)])
                               @ rho).real for a in records])
    assert truth.sum() == pytest.approx(1.0, abs=1e-12)
    a = torch.as_tensor(records)
    log_p = real_log_prob(real_site_tables(tensors, elements), a, block=100)
    np.testing.assert_allclose(np.exp(log_p.numpy()), truth, rtol=1e-10, atol=1e-18)
    sampler = MPSDistribution(tensors, povm).log_prob(a)
    np.testing.assert_allclose(sampler.numpy(), log_p.numpy(), rtol=1e-12)


def test_real_pass_equals_the_complex_environments_at_L100_chi40():
    """Large χ: the real grouped pass against the complex dense environments of born_log_prob
    (a different contraction, complex arithmetic, no grouping) on sampled records."""
    L = 100
    tensors = random_mps(L, chi=40, seed=5, real=True)
    dist = MPSDistribution(tensors, get_povm("pauli4"))
    a, log_p = dist.sample_with_log_prob(300, torch.Generator().manual_seed(1))
    complex_pass = born_log_prob([torch.as_tensor(B) for B in tensors],
                                 torch.tensor(get_povm("pauli4").elements), a)
    np.testing.assert_allclose(log_p.numpy(), complex_pass.numpy(), rtol=0, atol=1e-9)


def _marginals_pass(tensors, povm, records, alpha=1e-3):
    """χ² of every single-site and every nearest-neighbour marginal of the records against the
    MPS' reduced density matrices; Bonferroni: each p-value above α / (number of tests)."""
    L, K = len(tensors), povm.K
    tests = 2 * L - 1
    for i in range(L - 1):
        pair = two_site_marginal(tensors, i, i + 1, povm.elements)  # (K, K)
        counts = np.bincount(records[:, i] * K + records[:, i + 1], minlength=K * K)
        assert chi_square_pvalue(counts, pair.reshape(-1)) > alpha / tests, ("pair", i)
        assert chi_square_pvalue(np.bincount(records[:, i], minlength=K),
                                 pair.sum(1)) > alpha / tests, ("site", i)
    assert chi_square_pvalue(np.bincount(records[:, -1], minlength=K),
                             pair.sum(0)) > alpha / tests, ("site", L - 1)


def test_records_at_L100_match_the_exact_marginals():
    """20 000 pauli4 records of a random real MPS (L = 100, χ = 12) against its exact single-site
    and nearest-neighbour marginals, and their stored ln P against the complex environments."""
    tensors = random_mps(100, chi=12, seed=8, real=True)
    povm = get_povm("pauli4")
    a, log_p = MPSDistribution(tensors, povm).sample_with_log_prob(
        20_000, torch.Generator().manual_seed(4))
    _marginals_pass(tensors, povm, a.numpy())
    check = born_log_prob([torch.as_tensor(B) for B in tensors], torch.tensor(povm.elements),
                          a[:500])
    np.testing.assert_allclose(log_p[:500].numpy(), check.numpy(), rtol=0, atol=1e-10)


@pytest.mark.slow
def test_tfim_L100_records_match_the_exact_marginals():
    """The critical TFIM at L = 100 (DMRG, default truncation, χ ≈ 41): 40 000 records through
    ``qtomo.simulate`` pass the χ² tests of every single-site and nearest-neighbour marginal."""
    state = tfim_mps(100, h=1.0)
    povm = get_povm("pauli4")
    a = state.distribution(povm).sample(40_000, torch.Generator().manual_seed(6))
    _marginals_pass(state.mps, povm, a.numpy())


def test_dataset_too_large_for_the_disk_is_refused_before_the_dmrg(tmp_path, monkeypatch,
                                                                   capsys):
    def no_work(*args):
        raise AssertionError("the state was built before the disk space was checked")

    monkeypatch.setattr(qtomo.simulate, "_build_state", no_work)
    assert main(["simulate", "--L", "200", "--method", "mps", "--samples", str(2**60), "--out",
                 str(tmp_path / "big.h5"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "needs" in error and "GiB free" in error
    assert list(tmp_path.iterdir()) == []


def test_dmrg_past_its_time_budget_says_which_option_to_change(tmp_path, capsys):
    with pytest.raises(ConvergenceError, match=r"time budget of 0.01 s .* raise --dmrg-seconds"):
        tfim_mps(40, h=1.0, max_seconds=0.01)
    assert main(["simulate", "--L", "40", "--method", "mps", "--dmrg-seconds", "0.01", "--out",
                 str(tmp_path / "t.h5"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--dmrg-seconds" in error
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match=r"max_seconds must lie in \(0, inf\)"):
        tfim_mps(10, max_seconds=0.0)


# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's
_RSS_CHILD = """
import re, sys
from pathlib import Path
from qtomo.simulate import simulate
simulate("ghz", 100, povm="pauli6", samples=int(sys.argv[1]), method="mps", out=sys.argv[2],
         quiet=True, device="cpu")
print(int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024)
"""


@pytest.mark.slow
def test_records_stream_to_the_file_in_flat_memory(tmp_path):
    """Peak resident memory of ``simulate`` at L = 100 grows by < 20 MiB from 3·2^16 to 12·2^16
    records, while the larger file's outcomes alone are 75 MiB as uint8 (600 MiB as int64).

    glibc's malloc raises its mmap threshold as large blocks are freed and then serves them from
    a heap that fragments (measured: +92 MiB between these N by default, levelling off near
    620 MiB by 10^6 records); a fixed threshold measures what the program holds (463 → 466 MiB).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    peaks = []
    for n in (3 * 2**16, 12 * 2**16):
        out = tmp_path / f"s{n}.h5"
        done = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(n), str(out)], env=env,
                              capture_output=True, text=True, check=True)
        peaks.append(int(done.stdout.splitlines()[-1]))
        assert out.exists()
    assert peaks[1] - peaks[0] < 20 * 2**20, peaks
