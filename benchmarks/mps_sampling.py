"""Throughput, efficiency and memory of the batched MPS sampler (issue 3).

Measures, in one run on one machine:

- records/s of ``MPSDistribution.sample_with_log_prob`` (exact ln P(a)) for the L = 50 critical
  TFIM (h = J = 1, default cutoff: χ ≈ 15), streamed in chunks of 10^5 as ``qtomo simulate``
  does, for ``pauli4`` (sampling pass + mixed log-probability pass) and the rank-one POVMs;
- GFLOP/s of the ``pauli4`` log-probability pass (2 Σ_i χ_i² χ_{i+1}² flops per record) against a
  plain float64 (n × n) @ (n × n) matrix product measured in the same run;
- the obvious baseline: one record at a time, a Python loop over sites with a dense χ×χ
  environment per record (numpy), speed-up per record;
- peak resident memory of a child process that streams N = 10^7 records at L = 50 to an HDF5
  file with :func:`qtomo.simulate.simulate`;
- on CUDA (when present): 10^7 records at L = 100;
- local noise (docs/simulate.md "Noisy states"): the time of ``qtomo simulate --L 50 --depolarizing
0.05``
  (DMRG, sampling with exact ln P, references, HDF5) over that of the pure run, and the sampler
  alone per POVM with and without the channel (the noisy POVM E†(M_k) is rank two, so every POVM
  takes the mixed ln P pass);
- the accuracy of the stored ln P against the truncation ``svd_min`` (issue 14): for each cutoff,
  DMRG time, χ_max, ``pauli4`` records/s with exact ln P, and the largest and mean
  |ln P_cutoff(a) − ln P_ref(a)| over records drawn from the truncated state, where ln P_ref comes
  from an independent DMRG with no cutoff (χ ≤ 256, energy_tol 1e-13), for the ordered L = 37,
  h = 0.9 chain and the critical L = 50 chain.

Usage::

    python benchmarks/mps_sampling.py            # full run (the 10^7-record memory run is long)
    python benchmarks/mps_sampling.py --quick    # smaller N everywhere
    python benchmarks/mps_sampling.py --only-accuracy   # just the svd_min table
    python benchmarks/mps_sampling.py --cases tfim:50:20000 ghz:200:100000   # mps_simulate.py

Prints a table and writes ``benchmarks/results/mps_sampling.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import best_time, machine, matmul_peak_gflops

from qtomo.povm import get_povm
from qtomo.states.mps import tfim_mps
from qtomo.states.mps_sampler import MPSDistribution
from qtomo.states.noise import LocalNoise, NoisyMPSState

DEFAULT_SVD_MIN = inspect.signature(tfim_mps).parameters["svd_min"].default

RESULTS = Path(__file__).parent / "results" / "mps_sampling.json"
STREAM_CHUNK = 100_000


def streamed(dist: MPSDistribution, n: int, seed: int = 0) -> float:
    """Seconds to draw n records with exact log-probabilities, in chunks of 10^5."""
    generator = torch.Generator(dist.device).manual_seed(seed)
    start = time.perf_counter()
    for first in range(0, n, STREAM_CHUNK):
        a, log_p = dist.sample_with_log_prob(min(STREAM_CHUNK, n - first), generator)
        a.to(torch.uint8).cpu(), log_p.cpu()
    if dist.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def log_prob_flops(dist: MPSDistribution) -> int:
    """Floating-point operations per record of the superoperator log-probability pass."""
    chi = dist.chi
    return 2 * sum((left * right) ** 2 for left, right in zip(chi[:-1], chi[1:], strict=True))


def baseline(tensors: list[np.ndarray], elements: np.ndarray, n: int, seed: int = 0) -> float:
    """Seconds for n records drawn one at a time: per site, the K environments
    E'_k = Σ_st (M_k)_st B^{s†} E B^t, p_k = Tr E'_k, draw k, E ← E'_k / p_k, ln P += ln p_k."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(n):
        E = np.ones((1, 1), dtype=np.complex128)
        log_p = 0.0
        for B in tensors:
            candidates = [np.einsum("st,asb,ac,ctd->bd", M, B.conj(), E, B) for M in elements]
            p = np.array([np.trace(c).real for c in candidates])
            k = rng.choice(len(p), p=p / p.sum())
            E = candidates[k] / p[k]
            log_p += np.log(p[k])
    return time.perf_counter() - start


def accuracy(L: int, h: float, cutoffs: list[float], n: int, throughput_records: int) -> list[dict]:
    """Per-record ln P error and cost of each DMRG cutoff svd_min (see the module docstring)."""
    pauli4 = get_povm("pauli4")
    start = time.perf_counter()
    reference = tfim_mps(L, h=h, chi_max=256, svd_min=0.0, energy_tol=1e-13)
    reference_seconds = time.perf_counter() - start
    truth = reference.distribution(pauli4)
    rows = []
    for svd_min in cutoffs:
        start = time.perf_counter()
        state = tfim_mps(L, h=h, svd_min=svd_min)
        dmrg_seconds = time.perf_counter() - start
        dist = state.distribution(pauli4)
        a, log_p = dist.sample_with_log_prob(n, torch.Generator().manual_seed(2))
        error = (log_p - truth.log_prob(a)).abs()
        seconds = streamed(dist, throughput_records)
        rows.append({"L": L, "h": h, "svd_min": svd_min, "chi_max": max(state.bond_dimensions),
                     "truncation_error": state.attrs["truncation_error"],
                     "dmrg_seconds": dmrg_seconds, "records_per_s": throughput_records / seconds,
                     "max_abs_dlnP": float(error.max()), "mean_abs_dlnP": float(error.mean()),
                     "records": n, "reference_chi_max": max(reference.bond_dimensions),
                     "reference_seconds": reference_seconds})
    return rows


def memory_child(L: int, n: int, device: str, svd_min: float) -> None:
    """Stream n records at L to a temporary HDF5 file through qtomo.simulate; print peak RSS."""
    from qtomo.simulate import simulate

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        simulate("tfim", L, samples=n, method="mps", out=Path(folder) / "bench.h5", quiet=True,
                 device=device, svd_min=svd_min)
        seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (it would be the parent's)
    peak = int(re.search(r"VmHWM:\s*(\d+) kB", Path("/proc/self/status").read_text())[1]) * 1024
    print(json.dumps({"peak_rss_bytes": peak, "seconds": seconds}))


def simulate_seconds(L: int, n: int, **channel) -> float:
    """Wall time of ``qtomo.simulate.simulate("tfim", L, samples=n, method="mps", **channel)``."""
    from qtomo.simulate import simulate

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        simulate("tfim", L, samples=n, method="mps", out=Path(folder) / "bench.h5", quiet=True,
                 device="cpu", **channel)
        return time.perf_counter() - start


def noise_ratios(state, records: int, simulate_records: int, L: int) -> dict:
    """Noisy (depolarizing 0.05) over pure: the whole simulate command, and the sampler alone."""
    pure_seconds = simulate_seconds(L, simulate_records)
    noisy_seconds = simulate_seconds(L, simulate_records, depolarizing=0.05)
    sampler = []
    noisy = NoisyMPSState(state, LocalNoise(depolarizing=0.05))
    for name in ("pauli4", "pauli6", "tetra"):
        pure = streamed(state.distribution(get_povm(name)), records)
        mixed = streamed(noisy.distribution(get_povm(name)), records)
        sampler.append({"povm": name, "pure_seconds": pure, "noisy_seconds": mixed,
                        "ratio": mixed / pure})
    return {"depolarizing": 0.05, "simulate_records": simulate_records,
            "simulate_pure_seconds": pure_seconds, "simulate_noisy_seconds": noisy_seconds,
            "simulate_ratio": noisy_seconds / pure_seconds, "sampler": sampler}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N everywhere")
    parser.add_argument("--L", type=int, default=50)
    parser.add_argument("--h", type=float, default=1.0)
    parser.add_argument("--records", type=int, help="records per throughput run (default 10^6)")
    parser.add_argument("--memory-records", type=int,
                        help="records of the memory run (default 10^7; 0 skips it)")
    parser.add_argument("--baseline-records", type=int, help="records of the baseline run")
    parser.add_argument("--noise-records", type=int,
                        help="records of the noisy/pure simulate runs (default 10^6; 0 skips)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--only-accuracy", action="store_true", help="only the svd_min table")
    parser.add_argument("--accuracy-states", nargs="*", default=None, metavar="L:h",
                        help="chains of the svd_min table (default 37:0.9 50:1; quick: 20:0.9)")
    parser.add_argument("--cutoffs", type=float, nargs="*",
                        default=[1e-10, 1e-11, 1e-12, 1e-13, 1e-14], help="svd_min values")
    parser.add_argument("--accuracy-records", type=int,
                        help="records per cutoff for the ln P error (default 2000; quick 200)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--svd-min", type=float, default=DEFAULT_SVD_MIN,
                        help="DMRG cutoff of the throughput and memory runs (default: qtomo's)")
    parser.add_argument("--memory-child", nargs=4, metavar=("L", "N", "DEVICE", "SVD_MIN"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="*", metavar="STATE:L:N",
                        help="only the per-case table of benchmarks/mps_simulate.py (DMRG apart, "
                             "ln P GFLOP/s, speed-up over the previous path, simulate memory)")
    args = parser.parse_args(argv)
    if args.cases is not None:
        import mps_simulate

        return mps_simulate.main(["--cases", *args.cases]
                                 + (["--threads", str(args.threads)] if args.threads else []))
    if args.memory_child:
        memory_child(int(args.memory_child[0]), int(args.memory_child[1]), args.memory_child[2],
                     float(args.memory_child[3]))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    records = args.records or (20_000 if args.quick else 1_000_000)
    memory_records = (args.memory_records if args.memory_records is not None
                      else 200_000 if args.quick else 10_000_000)
    baseline_records = args.baseline_records or (20 if args.quick else 200)

    results: dict = {
        "machine": machine(),
        "L": args.L, "h": args.h, "records": records, "svd_min": args.svd_min,
    }
    states = args.accuracy_states or (["20:0.9"] if args.quick else ["37:0.9", "50:1"])
    accuracy_records = args.accuracy_records or (200 if args.quick else 2000)
    results["accuracy"] = [
        row for text in states for row in accuracy(
            int(text.split(":")[0]), float(text.split(":")[1]), args.cutoffs, accuracy_records,
            2_000 if args.quick else 100_000)]
    if args.only_accuracy:
        _print_accuracy(results["accuracy"])
        args.out = args.out.with_name("mps_accuracy.json")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
        return results
    start = time.perf_counter()
    state = tfim_mps(args.L, h=args.h, svd_min=args.svd_min)
    results["dmrg_seconds"] = time.perf_counter() - start
    results["bond_dimensions"] = state.bond_dimensions
    results["matmul_peak_gflops"] = matmul_peak_gflops(torch.float64, 1024 if args.quick else 2048)

    rows = []
    for name in ("pauli4", "pauli6", "tetra"):
        dist = state.distribution(get_povm(name))
        seconds = streamed(dist, records)
        row = {"povm": name, "seconds": seconds, "records_per_s": records / seconds}
        if not dist.rank_one:
            a = dist.sample(min(records, 200_000), torch.Generator().manual_seed(1))
            log_seconds = best_time(lambda a=a, dist=dist: dist.log_prob(a), repeats=1)
            gflops = log_prob_flops(dist) * len(a) / log_seconds / 1e9
            row.update(log_prob_gflops=gflops,
                       log_prob_fraction_of_peak=gflops / results["matmul_peak_gflops"],
                       log_prob_share_of_time=log_seconds / len(a) * records / seconds)
        rows.append(row)
    results["throughput"] = rows

    pauli4 = get_povm("pauli4")
    baseline_seconds = baseline(state.mps, pauli4.elements, baseline_records)
    ours = rows[0]["seconds"] / records
    results["baseline"] = {
        "records": baseline_records, "seconds": baseline_seconds,
        "records_per_s": baseline_records / baseline_seconds,
        "speedup_per_record": baseline_seconds / baseline_records / ours,
    }

    if memory_records:
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(args.L), str(memory_records), "cpu",
             str(args.svd_min)],
            capture_output=True, text=True, check=True,
        )
        results["memory"] = {"records": memory_records, **json.loads(child.stdout.splitlines()[-1])}

    noise_records = (args.noise_records if args.noise_records is not None
                     else 20_000 if args.quick else 1_000_000)
    if noise_records:
        results["noise"] = noise_ratios(state, records, noise_records, args.L)

    if torch.cuda.is_available():
        gpu_state = tfim_mps(100, h=1.0, svd_min=args.svd_min)
        gpu_records = 100_000 if args.quick else 10_000_000
        dist = gpu_state.distribution(pauli4, device="cuda")
        streamed(dist, STREAM_CHUNK)  # warm-up
        seconds = streamed(dist, gpu_records)
        results["cuda"] = {"device": torch.cuda.get_device_name(), "L": 100,
                           "records": gpu_records, "seconds": seconds,
                           "records_per_s": gpu_records / seconds,
                           "bond_dimensions": gpu_state.bond_dimensions}

    _print_table(results)
    _print_accuracy(results["accuracy"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return results


def _print_accuracy(rows: list[dict]) -> None:
    print("per-record ln P error against a DMRG without cutoff (pauli4 records of the truncated "
          "state)")
    print(f"{'L':>3} {'h':>5} {'svd_min':>8} {'χ_max':>5} {'DMRG s':>7} {'records/s':>10} "
          f"{'max|ΔlnP|':>10} {'mean|ΔlnP|':>11}")
    for row in rows:
        print(f"{row['L']:>3} {row['h']:>5g} {row['svd_min']:>8.0e} {row['chi_max']:>5} "
              f"{row['dmrg_seconds']:>7.1f} {row['records_per_s']:>10.0f} "
              f"{row['max_abs_dlnP']:>10.2e} {row['mean_abs_dlnP']:>11.2e}")


def _print_table(results: dict) -> None:
    chi = max(results["bond_dimensions"])
    print(f"L = {results['L']}, h = {results['h']}, svd_min = {results['svd_min']:g}, "
          f"χ_max = {chi}, "
          f"DMRG {results['dmrg_seconds']:.1f} s, torch threads "
          f"{results['machine']['threads']}, load {results['machine']['load_average']}")
    print(f"float64 matmul peak: {results['matmul_peak_gflops']:.1f} GFLOP/s")
    print(f"{'POVM':8} {'records':>10} {'seconds':>9} {'records/s':>11} {'lp GFLOP/s':>11} "
          f"{'of peak':>8}")
    for row in results["throughput"]:
        gflops = f"{row['log_prob_gflops']:.1f}" if "log_prob_gflops" in row else "-"
        share = (f"{row['log_prob_fraction_of_peak']:.0%}" if "log_prob_gflops" in row else "-")
        print(f"{row['povm']:8} {results['records']:>10} {row['seconds']:>9.2f} "
              f"{row['records_per_s']:>11.0f} {gflops:>11} {share:>8}")
    base = results["baseline"]
    print(f"baseline (one record at a time): {base['records_per_s']:.1f} records/s; "
          f"speed-up per record {base['speedup_per_record']:.0f}×")
    if "memory" in results:
        memory = results["memory"]
        print(f"memory run: {memory['records']} records in {memory['seconds']:.0f} s, "
              f"peak RSS {memory['peak_rss_bytes'] / 2**30:.2f} GiB")
    if "noise" in results:
        noise = results["noise"]
        print(f"depolarizing {noise['depolarizing']}: simulate of {noise['simulate_records']} "
              f"records {noise['simulate_noisy_seconds']:.1f} s against "
              f"{noise['simulate_pure_seconds']:.1f} s pure (ratio "
              f"{noise['simulate_ratio']:.2f}); sampler alone: " + ", ".join(
                  f"{row['povm']} {row['ratio']:.2f}×" for row in noise["sampler"]))
    if "cuda" in results:
        cuda = results["cuda"]
        print(f"CUDA {cuda['device']}: L = 100, {cuda['records']} records in "
              f"{cuda['seconds']:.1f} s ({cuda['records_per_s']:.0f} records/s)")


if __name__ == "__main__":
    main()
