"""Shared benchmark helpers: timing, a matrix-product peak, training options under a step budget,
table printing (with a size search's stages as text) and JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from qtomo.data import Dataset
from qtomo.recipe import recipe
from qtomo.train import TrainOptions, split_rows

RESULTS = Path(__file__).resolve().parent / "results"


def best_time(function, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``function()`` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak_gflops(dtype: torch.dtype = torch.float64, n: int = 1024,
                       device: str | torch.device = "cpu") -> float:
    """Plain (n×n)·(n×n) matrix-product throughput in GFLOP/s, the roofline for our kernels."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)

    def product():
        a @ b
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    product()
    return 2 * n**3 / best_time(product, repeats=5) / 1e9


def step_budget_options(family: str, dataset: Dataset, steps: int,
                        given: dict | None = None) -> TrainOptions:
    """The options ``qtomo fit`` uses for ``family`` on ``dataset`` (:func:`qtomo.recipe.recipe`)
    with ``given``, and as many epochs as ``steps`` optimizer steps take at the recipe's batch
    size (at least one): the budget is the only policy a benchmark sets."""
    options = recipe(family, dataset, given)[0]
    n_train = split_rows(dataset.n_records, options.val_fraction)[0][1]
    epochs = max(1, math.ceil(steps / math.ceil(n_train / options.batch_size)))
    return recipe(family, dataset, {**(given or {}), "epochs": epochs})[0]


def machine() -> dict:
    """Where the numbers came from."""
    info = {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _commit() -> str | None:
    """The commit the numbers came from (``+dirty`` with uncommitted changes), None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=Path(__file__).parent).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty.strip() else "")


def report(name: str, rows: list[dict], extra: dict | None = None) -> Path:
    """Print ``rows`` as a table and write them, with the machine, to results/<name>.json."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(_fmt(row.get(c))) for row in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).rjust(widths[c]) for c in columns))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    provenance = {"command": shlex.join(["python", *sys.argv]), "commit": _commit()}
    path.write_text(json.dumps({"machine": machine(), **provenance, "rows": rows, **(extra or {})},
                               indent=2))
    print(f"wrote {path}")
    return path


def search_text(stages: list[dict]) -> str:
    """A size search's stages as the tables print them: each stage's sizes (χ, or χ,κ),
    ``*`` where kept, e.g. ``2* 3* 4* 6``."""
    return " ".join(f"{','.join(str(v) for v in stage['sizes'].values())}"
                    f"{'*' if stage['kept'] else ''}" for stage in stages)


def print_row(row: dict, digits: int = 4) -> None:
    """One result row as ``key=value`` pairs on a line, floats to ``digits`` significant
    figures (the progress of a long benchmark, before its table)."""
    print("  ".join(f"{k}={v:.{digits}g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items()), flush=True)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
