"""Sampling throughput at L = 50 (records/s): argmax flow vs GRU vs cached Transformer.

Every family is built with its default hyperparameters (``qtomo.models.build``) and timed in the
same run on the same device; the flow samples all sites in one pass, the autoregressive families
site by site (the Transformer with its key/value cache). Untrained weights: sampling cost does not
depend on their values.

Usage: python benchmarks/sampling.py [--L 50] [--records 20000] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch
from common import best_time, report

from qtomo.device import resolve_device
from qtomo.models import build

FAMILIES = ("flow", "gru", "transformer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--L", type=int, default=50)
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    for family in FAMILIES:
        torch.manual_seed(0)
        model = build(family, L=args.L, K=args.K).to(device).eval()
        generator = torch.Generator(device).manual_seed(0)

        def draw(model=model, generator=generator):
            model.sample(args.records, generator=generator)
            if device.type == "cuda":
                torch.cuda.synchronize()

        draw()  # warm-up (allocator, kernels)
        seconds = best_time(draw)
        rows.append({"model": family, "L": args.L, "records": args.records,
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "seconds": seconds, "records_per_s": args.records / seconds})
    gru = next(row["records_per_s"] for row in rows if row["model"] == "gru")
    for row in rows:
        row["vs_gru"] = row["records_per_s"] / gru
    report("sampling", rows, {"device": str(device)})


if __name__ == "__main__":
    main()
