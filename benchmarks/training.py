"""Training throughput of every family and sampling throughput of the autoregressive ones, L = 50.

For each family and batch size B, one training step is forward + backward + AdamW on a batch of
random records (throughput does not depend on the values). Reported:

- records/s and record-sites/s (records/s × L);
- achieved GFLOP/s of the matrix products, from the standard count per record-site
  6 N_mm + 12 n_layers L d (N_mm = weights of the matrix products, embeddings excluded: 2 FLOPs per
  weight forward, 4 backward; the second term is the attention scores and the weighted sum of a
  Transformer of width d, forward and backward, without causal savings; the flow applies its
  weights once per record, 6 N_mm / L per record-site, and trains on its bound), as a fraction of
  the peak of a large float32 matrix product measured in the same run, same device and threads;
- sampling throughput (records/s) with the family's cache (hidden state, keys/values) and with
  the uncached step that recomputes the prefix at every site, and their ratio (target ≥ 10).

Usage::

    python benchmarks/training.py [--device auto] [--threads N] [--batch-sizes 256 1024 4096]
        [--families rnn gru lstm transformer flow] [--samples 1000] [--quick]

Writes a table to stdout and ``benchmarks/results/training_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from common import matmul_peak_gflops
from torch import nn

from qtomo.device import resolve_device
from qtomo.models import build
from qtomo.models.autoregressive import AutoregressiveModel

L, K = 50, 4
RESULTS = Path(__file__).parent / "results"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, min_time: float, min_repeats: int = 3) -> float:
    """Seconds per call of ``fn``: one warm-up call, then ≥ min_repeats calls and ≥ min_time."""
    fn()
    synchronize(device)
    repeats, start = 0, time.perf_counter()
    while repeats < min_repeats or time.perf_counter() - start < min_time:
        fn()
        repeats += 1
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def flops_per_record_site(model: nn.Module) -> float:
    """6 N_mm + 12 n_layers L d (see the module docstring); 6 N_mm / L for the flow."""
    n_mm = sum(p.numel() for module in model.modules() if not isinstance(module, nn.Embedding)
               for p in module.parameters(recurse=False) if p.dim() == 2)
    if not isinstance(model, AutoregressiveModel):
        return 6.0 * n_mm / model.L  # one pass of the weights per record, not per site
    attention = 0
    if model.family == "transformer":
        attention = 12 * model.config.layers * model.L * model.config.d_model
    return 6.0 * n_mm + attention


def training_step(model: nn.Module, batch: int, device: torch.device):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    a = torch.randint(0, K, (batch, L), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model.training_nll(a).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--families", nargs="+",
                        default=["rnn", "gru", "lstm", "transformer", "flow"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                        help="default 256 1024 4096 (CPU), 1024 8192 65536 (GPU)")
    parser.add_argument("--samples", type=int, default=None,
                        help="records drawn per sampling run (default 1000 CPU, 10000 GPU)")
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    batch_sizes = args.batch_sizes or ([1024, 8192, 65536] if gpu else [256, 1024, 4096])
    n_samples = args.samples or (10_000 if gpu else 1_000)
    min_time = 0.5 if args.quick else 2.0
    torch.manual_seed(0)

    peak = matmul_peak_gflops(torch.float32, 8192 if gpu else 1024, device)
    name = torch.cuda.get_device_name(device) if gpu else platform.processor() or "cpu"
    print(f"device {device} ({name}), {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s")
    print(f"{'family':<12}{'B':>7}{'records/s':>12}{'sites/s':>12}{'GFLOP/s':>10}{'of peak':>9}")
    training = []
    for family in args.families:
        model = build(family, L=L, K=K).to(device)
        flops = flops_per_record_site(model)
        for batch in batch_sizes:
            seconds = timed(training_step(model, batch, device), device, min_time)
            rate = batch / seconds
            gflops = rate * L * flops / 1e9
            training.append({"family": family, "batch_size": batch, "records_per_s": rate,
                             "record_sites_per_s": rate * L, "gflop_per_s": gflops,
                             "fraction_of_peak": gflops / peak, "flops_per_record_site": flops})
            print(f"{family:<12}{batch:>7}{rate:>12.0f}{rate * L:>12.3g}{gflops:>10.2f}"
                  f"{gflops / peak:>9.1%}")

    print(f"\nsampling {n_samples} records at L = {L}")
    print(f"{'family':<12}{'cached/s':>12}{'uncached/s':>12}{'speed-up':>10}")
    sampling = []
    for family in args.families:
        model = build(family, L=L, K=K).to(device).eval()
        if not isinstance(model, AutoregressiveModel):
            continue  # one parallel pass: no cache to compare (see benchmarks/sampling.py)
        rates = {}
        for cache in (True, False):
            seconds = timed(lambda m=model, c=cache: m.sample(n_samples, cache=c), device,
                            min_time, min_repeats=1)
            rates[cache] = n_samples / seconds
        sampling.append({"family": family, "n": n_samples, "cached_per_s": rates[True],
                         "uncached_per_s": rates[False], "speedup": rates[True] / rates[False]})
        print(f"{family:<12}{rates[True]:>12.0f}{rates[False]:>12.0f}"
              f"{rates[True] / rates[False]:>9.1f}×")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"training_{device.type}.json"
    out.write_text(json.dumps({
        "device": str(device), "device_name": name, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "L": L, "K": K, "matmul_peak_gflop_per_s": peak,
        "training": training, "sampling": sampling}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
