"""``qtomo simulate`` at scale, case by case (issue 20): DMRG, exact ln P, streaming, memory.

For each case ``state:L:N`` (state ``tfim`` at h = J = 1 or ``ghz``, default svd_min) it measures,
in one run on one machine:

- the DMRG (or exact GHZ MPS) time and the bond dimensions, apart from everything else;
- the sampler alone: ``pauli4`` records/s of ``sample_with_log_prob`` (exact ln P);
- the ln P pass alone: records/s and GFLOP/s of the pass the sampler chose (for these real
  states the real grouped pass of :mod:`qtomo.states.real_environment`, 8 χl²χr + 16 χlχr² flops
  per site and record, unless the superoperator tables cost fewer flops) against a float64
  (n × n) @ (n × n) product measured in the same run, and where the real pass runs, the path
  ln P took before it on the same records (superoperator tables where they fit, else complex
  dense environments) with the speed-up;
- ``qtomo.simulate.simulate`` end to end in a child process (DMRG, sampling, references, HDF5),
  its wall time and peak resident memory.

Usage (``mps_sampling.py --cases`` runs the same)::

    python benchmarks/mps_simulate.py --cases tfim:50:20000 tfim:100:5000 ghz:200:20000

Prints a table and writes ``benchmarks/results/mps_simulate.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import RESULTS, machine, matmul_peak_gflops

from qtomo.povm import get_povm
from qtomo.states import mps_sampler
from qtomo.states.mps import ghz_mps, tfim_mps
from qtomo.states.mps_sampler import MPSDistribution
from qtomo.states.real_environment import real_pass_flops

OUT = RESULTS / "mps_simulate.json"
DEFAULT_CASES = ["tfim:50:20000", "tfim:100:5000", "ghz:100:100000", "ghz:200:100000"]
PREVIOUS_PATH_RECORDS = 1000


def pass_flops(dist: MPSDistribution) -> int:
    """Flops per record of the distribution's ln P pass: the real grouped pass
    Σ 8 χl²χr + 16 χlχr², the tables 2 Σ χl²χr², the complex environments 32 Σ χl²χr."""
    pairs = list(zip(dist.chi[:-1], dist.chi[1:], strict=True))
    if dist.log_prob_pass == "real":
        return real_pass_flops(dist.chi)
    if dist.log_prob_pass == "tables":
        return sum(2 * (left * right) ** 2 for left, right in pairs)
    return sum(32 * left**2 * right for left, right in pairs)


def previous_path_seconds(dist: MPSDistribution, a: torch.Tensor) -> tuple[str, float]:
    """Seconds of the path ln P took before the real pass, on records a: the superoperator tables
    (built outside the timing) when they fit their budget, else the complex environments."""
    elements, tensors = dist._elements, dist._tensors
    if mps_sampler._use_tables(dist.chi, dist.K):
        with torch.no_grad():
            tables = [mps_sampler.superoperator_tables(B, M) for B, M in zip(tensors, elements,
                                                                        strict=True)]
        start = time.perf_counter()
        mps_sampler._table_log_trace(tables, a, mps_sampler._RENORMALISE)
        return "tables", time.perf_counter() - start
    start = time.perf_counter()
    mps_sampler.born_log_prob(tensors, elements, a)
    return "dense", time.perf_counter() - start


def build(state: str, L: int):
    """The case's MPS (default truncation) and the seconds it took."""
    start = time.perf_counter()
    built = tfim_mps(L, h=1.0) if state == "tfim" else ghz_mps(L)
    return built, time.perf_counter() - start


def simulate_child(state: str, L: int, n: int) -> None:
    """Run qtomo.simulate.simulate into a temporary file; print seconds and peak RSS as JSON."""
    from qtomo.simulate import simulate

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        path = simulate(state, L, samples=n, method="mps", out=Path(folder) / "case.h5",
                        quiet=True, device="cpu")
        seconds = time.perf_counter() - start
        size = path.stat().st_size
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (it would be the parent's)
    peak = int(re.search(r"VmHWM:\s*(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
    print(json.dumps({"simulate_seconds": seconds, "peak_rss_bytes": peak, "file_bytes": size}))


def run_case(text: str, peak: float, end_to_end: bool) -> dict:
    """One case ``state:L:N``: the measurements of the module docstring."""
    state, L, n = text.split(":")[0], int(text.split(":")[1]), int(text.split(":")[2])
    built, dmrg_seconds = build(state, L)
    dist = built.distribution(get_povm("pauli4"))
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    a, _ = dist.sample_with_log_prob(n, generator)
    sampler_seconds = time.perf_counter() - start
    start = time.perf_counter()
    dist.log_prob(a)
    log_prob_seconds = time.perf_counter() - start
    gflops = pass_flops(dist) * n / log_prob_seconds / 1e9
    row = {"case": text, "state": state, "L": L, "records": n, "chi_max": max(dist.chi),
           "dmrg_seconds": dmrg_seconds, "sampler_records_per_s": n / sampler_seconds,
           "log_prob_pass": dist.log_prob_pass, "log_prob_records_per_s": n / log_prob_seconds,
           "log_prob_gflops": gflops, "log_prob_fraction_of_peak": gflops / peak}
    if dist.log_prob_pass == "real":
        subset = a[:PREVIOUS_PATH_RECORDS]
        name, seconds = previous_path_seconds(dist, subset)
        row.update(previous_path=name, previous_path_records_per_s=len(subset) / seconds,
                   speedup=(n / log_prob_seconds) / (len(subset) / seconds))
    if end_to_end:
        child = subprocess.run([sys.executable, __file__, "--child", state, str(L), str(n)],
                               capture_output=True, text=True, check=True)
        row.update(json.loads(child.stdout.splitlines()[-1]))
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=DEFAULT_CASES, metavar="STATE:L:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-simulate", action="store_true",
                        help="skip the end-to-end simulate child runs")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        simulate_child(args.child[0], int(args.child[1]), int(args.child[2]))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops(torch.float64, 1024)
    results = {"machine": machine(), "matmul_peak_gflops": peak, "cases": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for text in args.cases:  # the file is rewritten after each case: long runs keep their rows
        results["cases"].append(run_case(text, peak, not args.no_simulate))
        _print_row(results["cases"][-1])
        args.out.write_text(json.dumps(results, indent=2))
    print(f"float64 matmul peak {peak:.1f} GFLOP/s; wrote {args.out}")
    return results


def _print_row(row: dict) -> None:
    previous = (f", {row['previous_path']} {row['previous_path_records_per_s']:.0f} rec/s, "
                f"speed-up {row['speedup']:.2f}×" if "speedup" in row else "")
    simulate = (f", simulate {row['simulate_seconds']:.1f} s, peak RSS "
                f"{row['peak_rss_bytes'] / 2**30:.2f} GiB" if "simulate_seconds" in row else "")
    print(f"{row['case']}: χ_max {row['chi_max']}, DMRG {row['dmrg_seconds']:.1f} s, sampler "
          f"{row['sampler_records_per_s']:.0f} rec/s, ln P ({row['log_prob_pass']}) "
          f"{row['log_prob_records_per_s']:.0f} rec/s ({row['log_prob_gflops']:.1f} GFLOP/s, "
          f"{row['log_prob_fraction_of_peak']:.0%} of peak){previous}{simulate}", flush=True)


if __name__ == "__main__":
    main()
