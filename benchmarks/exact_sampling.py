"""Exact-path sampling throughput: records/s (with exact ln P) for L = 6, 10, 12.

Usage: python benchmarks/exact_sampling.py [--records N]
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from common import best_time, report

from qtomo.povm import get_povm
from qtomo.states.exact import tfim_ground_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10**6)
    args = parser.parse_args()
    rows = []
    for L in (6, 10, 12):
        start = time.perf_counter()
        distribution = tfim_ground_state(L).distribution(get_povm("pauli4"))
        setup = time.perf_counter() - start
        sample = functools.partial(distribution.sample_with_log_prob, args.records,
                                   torch.Generator().manual_seed(0))
        seconds = best_time(sample)
        rows.append({"L": L, "records": args.records, "setup_s": setup,
                     "sample_s": seconds, "records_per_s": args.records / seconds})
    report("exact_sampling", rows)


if __name__ == "__main__":
    main()
