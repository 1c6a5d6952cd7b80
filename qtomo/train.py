"""Maximum-likelihood training of any model family on a dataset (``qtomo fit``, docs/benchmarks.md
"Training").

The objective is the mean negative log-likelihood per record, minimised with AdamW::

    NLL(θ) = -(1/N) Σ_n ln Q_θ(a_n)          (``model.training_nll``: −ln Q, or −bound for flows)

A family without a likelihood to minimise (``gan``) defines ``model.train_step(a, optimizer,
clip)``, which makes its own update(s) with the trainer's optimizer and returns the figure to
log; the trainer then calls it instead of the step above, and validates, keeps the best and
stops early on ``training_nll`` as for every family (see the family's docstring for what that
criterion is). A family's ``optimizer_defaults`` (e.g. the GAN's Adam betas) are passed to AdamW.

Data split: the dataset's first rows train, the LAST ``val_fraction`` of rows validate
(``train_rows = [0, N - N_val)``, ``val_rows = [N - N_val, N)``, stored in the checkpoint so that
evaluation can use rows the model never saw). Schedule: linear warm-up over the first
``warmup`` steps (at most a tenth of all steps), then cosine decay to ``lr / 100`` at the last
step (``schedule="cosine"``), or a constant rate; gradients are clipped to norm ``clip``.

Weight averaging (``ema`` > 0): an exponential moving average θ̄ of the weights is updated after
every optimizer step (:class:`_Average`); the averaged model is what is validated, kept as the
best and returned, while the optimizer goes on with the raw weights. On small datasets the
average of the late iterates generalises better than any one of them
(``benchmarks/sample_efficiency.py``).

Files, for ``out = runs/x.pt``:

- ``runs/x.pt``: the best model by validation NLL (written whenever it improves, and once more at
  the end with the final training summary); this is the file to evaluate.
- ``runs/x.last.pt``: the state after the latest epoch (raw weights), with optimizer, scheduler,
  RNG states, weight average, epoch, history and the best weights so far; ``resume=`` continues
  from it exactly.
- ``runs/x.history.json``: per epoch train/val NLL, learning rate, wall time.

All three are written atomically after each epoch (on rank 0 only under ``torchrun``). A
non-finite training or validation NLL stops with :class:`~qtomo.errors.ConvergenceError` before
anything of that epoch is written, so the files stay those of the last good epoch.

Data stays on the device (one uint8 copy) when the training rows fit in ``resident_bytes``;
otherwise they are read from the HDF5 file in chunks of ``chunk_records`` rows, shuffled chunk
order and rows within each chunk. Each epoch's order comes from a generator seeded by
``(seed, epoch)``, so an epoch is the same whether or not the run was resumed.

Several GPUs: under ``torchrun --nproc_per_node=P`` the same code runs data-parallel
(``DistributedDataParallel``; NCCL on CUDA, gloo on CPU). Every rank draws the same shuffled
batches of ``batch_size`` rows and takes its rank-strided share, so ``batch_size`` is the global
batch and the run matches a single-process run up to rounding.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from qtomo.atomic import atomic_output, check_outputs
from qtomo.data import Dataset, as_dataset
from qtomo.device import resolve_device, sum_over_ranks
from qtomo.errors import CheckpointError, ConvergenceError, QtomoError
from qtomo.heldout import HeldOut
from qtomo.jsontext import json_text
from qtomo.models import QtomoModel, hyperparameters, load_checkpoint, save_checkpoint
from qtomo.options import TrainOptions
from qtomo.pauli_records import dataset_warnings
from qtomo.progress import progress_bar
from qtomo.refine import Refinement, refine
from qtomo.sweeps import PATIENCE, SweepResult


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the best model (by validation NLL), in eval mode.
        checkpoint, last, history_path: the files written (:func:`run_paths`); None for an
            in-memory run (``out=None``).
        history: one dict per epoch: ``epoch``, ``train_nll``, ``val_nll``, ``lr``, ``time_s``.
        best_epoch, best_val_nll: the epoch kept and its validation NLL.
        stopped_early: whether early stopping ended the run.
        val_rows: ``[start, stop)`` of the validation rows, the records the model never trained
            on: ``evaluate(result.model, dataset, rows=result.val_rows)`` for an in-memory run
            (a checkpoint carries them itself).
        full_batch: what the full-batch Adam steps did (``options.full_batch`` > 0), else None.
        refinement: what the L-BFGS stage did (``options.refine`` > 0), else None.
        sweeps: what the local sweeps did (``options.sweeps`` > 0), else None.
    """

    model: QtomoModel
    checkpoint: Path | None
    last: Path | None
    history_path: Path | None
    history: list[dict[str, float]]
    best_epoch: int
    best_val_nll: float
    stopped_early: bool
    val_rows: tuple[int, int]
    refinement: Refinement | None = None
    sweeps: SweepResult | None = None
    full_batch: Refinement | None = None

    @property
    def time_s(self) -> float:
        """Training time: the epochs, the full-batch steps, the sweeps and the refinement."""
        return _training_seconds(self.history, self.full_batch, self.sweeps, self.refinement)


def _training_seconds(history: Sequence[Mapping[str, float]],
                      *stages: SweepResult | Refinement | None) -> float:
    """Wall time of the epochs of ``history`` and of the stages run after them."""
    return sum(row["time_s"] for row in history) + sum(stage.time_s for stage in stages if stage)


def run_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """(best checkpoint, last checkpoint, history JSON) of a run whose output is ``out``.

    Example:
        >>> [str(p) for p in run_paths("runs/tfim_gru.pt")]
        ['runs/tfim_gru.pt', 'runs/tfim_gru.last.pt', 'runs/tfim_gru.history.json']
    """
    out = Path(out)
    stem = out.with_suffix("")
    return out, stem.with_name(stem.name + ".last.pt"), stem.with_name(stem.name + ".history.json")


def run_output(path: str | Path) -> Path:
    """The best-checkpoint path (``out``) of the run a checkpoint file belongs to.

    Example:
        >>> str(run_output("runs/tfim_gru.last.pt"))
        'runs/tfim_gru.pt'
    """
    path = Path(path)
    suffix = ".last.pt"
    return path.with_name(path.name[:-len(suffix)] + ".pt") if path.name.endswith(suffix) else path


def resume_path(path: str | Path) -> Path:
    """The file to resume a run from: the ``.last.pt`` beside a best checkpoint when it exists,
    else ``path`` itself."""
    path = Path(path)
    last = run_paths(path)[1]
    return last if not path.name.endswith(".last.pt") and last.is_file() else path


_SAME_RUN = ("family", "hyperparameters", "povm", "L", "K")


def load_resume(path: str | Path, map_location: str | torch.device = "cpu"):
    """The checkpoint to resume from (:func:`resume_path`). When that is the ``.last.pt``
    beside the best checkpoint ``path``, both must be of one run: the same family,
    hyperparameters, POVM, L, K and training data.

    Raises:
        CheckpointError: for a ``.last.pt`` of another run (one line naming what differs), and
            whatever :func:`qtomo.models.load_checkpoint` raises.
    """
    used = resume_path(path)
    checkpoint = load_checkpoint(used, map_location=map_location)
    if used == Path(path) or not Path(path).is_file():  # an interrupted run: no best file yet
        return checkpoint
    best = load_checkpoint(path, map_location="cpu").config
    last = checkpoint.config
    differs = [f"{key} {last.get(key)!r} (in {path.name}: {best.get(key)!r})"
               for key in _SAME_RUN if last.get(key) != best.get(key)]
    if (last.get("data") or {}).get("attrs") != (best.get("data") or {}).get("attrs"):
        differs.append(f"training data {(last.get('data') or {}).get('path')} (in {path.name}: "
                       f"{(best.get('data') or {}).get('path')})")
    if differs:
        raise CheckpointError(f"{used} is not the last state of the run of {path}: it has "
                              f"{'; '.join(differs)}; resume from the file of the run you mean")
    return checkpoint


def split_rows(n_records: int, val_fraction: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """Train and validation row ranges ``[start, stop)``: the validation rows are the last
    ``ceil(val_fraction N)`` rows of the file.

    Example:
        >>> split_rows(1000, 0.1)
        ((0, 900), (900, 1000))
    """
    n_val = math.ceil(val_fraction * n_records)
    return (0, n_records - n_val), (n_records - n_val, n_records)


class _Objective(nn.Module):
    """Mean training NLL of a batch; a module so DDP and torch.compile can wrap it."""

    def __init__(self, model: QtomoModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.model.training_nll(a).mean()


class _Rows:
    """Rows [start, stop) of a dataset served as LongTensor (b, L) batches on ``device``; with
    ``bootstrap_seed``, n rows drawn from them with replacement instead (resident only)."""

    def __init__(self, dataset: Dataset, rows: tuple[int, int], device: torch.device,
                 options: TrainOptions, bootstrap_seed: int | None = None) -> None:
        self.dataset, self.device = dataset, device
        self.start, self.stop = rows
        n = self.stop - self.start
        self.resident = n * dataset.L <= options.resident_bytes
        if bootstrap_seed is not None and not self.resident:
            raise QtomoError(f"a bootstrap resample needs the {n} training rows in memory "
                             f"({n * dataset.L} bytes > resident_bytes = "
                             f"{options.resident_bytes})")
        if self.resident:
            self.data = torch.from_numpy(dataset.outcomes(self.start, self.stop))
            if bootstrap_seed is not None:
                draws = torch.Generator().manual_seed(bootstrap_seed)
                self.data = self.data[torch.randint(n, (n,), generator=draws).sort().values]
            self.data = self.data.to(device)
            chunk = max(n, 1)
        else:  # whole batches per chunk, so only the last chunk ends in a short batch
            chunk = math.ceil(options.chunk_records / options.batch_size) * options.batch_size
        self.chunks = [(s, min(s + chunk, self.stop)) for s in range(self.start, self.stop, chunk)]
        self.n_rows = n
        #: (distinct rows, their counts), () where every row differs; None until asked for
        self._distinct: tuple[torch.Tensor, torch.Tensor] | tuple[()] | None = None

    def _chunk(self, start: int, stop: int) -> torch.Tensor:
        if self.resident:
            return self.data[start - self.start:stop - self.start]  # (b, L) uint8
        return torch.from_numpy(self.dataset.outcomes(start, stop)).to(self.device)

    def batches(self, batch_size: int, generator: torch.Generator | None = None, *, rank: int = 0,
                world: int = 1) -> Iterator[torch.Tensor]:
        """This rank's share (every ``world``-th row) of each batch, shuffled when a CPU
        ``generator`` is given; a final batch with fewer than ``world`` rows is skipped."""
        order = range(len(self.chunks))
        if generator is not None:
            order = torch.randperm(len(self.chunks), generator=generator).tolist()
        for c in order:
            block = self._chunk(*self.chunks[c])  # (b, L) uint8
            n = block.shape[0]
            rows = torch.randperm(n, generator=generator) if generator is not None else None
            for begin in range(0, n, batch_size):
                end = min(begin + batch_size, n)
                if end - begin < world:
                    continue
                if rows is None:
                    index = torch.arange(begin + rank, end, world)
                else:
                    index = rows[begin + rank:end:world]
                yield block[index.to(self.device)].long()  # (b / world, L)

    def distinct(self, batch_size: int, *, rank: int = 0, world: int = 1,
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """This rank's share of the rows as (rows LongTensor (b, L), counts float64 (b,) or
        None) batches for sums over all rows: Σ_n f(a_n) = Σ_b Σ counts · f(rows). Resident
        rows with repeats come as their distinct values (every ``world``-th) and how often each
        occurs — 2·10^5 records of TFIM L = 8 are 49 681 distinct outcome strings, 10^4 Z-basis
        shots of L = 10 792 — so a full pass costs what the distinct rows cost; otherwise the
        :meth:`batches` in order, counts None (each row once)."""
        if self.resident and self._distinct is None:
            self._distinct = _distinct_rows(self.data)
        if not self._distinct:
            yield from ((rows, None) for rows in self.batches(batch_size, rank=rank, world=world))
            return
        rows, counts = (part[rank::world] for part in self._distinct)
        for begin in range(0, max(len(rows), 1), batch_size):  # an empty share: one empty batch
            yield rows[begin:begin + batch_size].long(), counts[begin:begin + batch_size]

    def n_batches(self, batch_size: int, world: int = 1) -> int:
        """Batches per pass (as yielded by :meth:`batches`)."""
        return sum(sum(1 for b in range(0, stop - start, batch_size)
                       if min(batch_size, stop - start - b) >= world)
                   for start, stop in self.chunks)


#: odd multiplier of the rows' polynomial hash (mod 2^64): any odd 64-bit constant will do
_HASH_MULTIPLIER = 0x9E3779B97F4A7C15 - 2**64


def _distinct_rows(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | tuple[()]:
    """The distinct rows of ``data`` (N, L) uint8 and their counts (float64), or () when every
    row differs. Rows with different hashes differ, so distinct hashes settle that in one sort
    of N integers (0.2 s for 9·10^5 rows of L = 100, against 4–5 s for the rows themselves);
    only hashes that repeat call for the exact ``torch.unique`` of the rows."""
    padded = torch.nn.functional.pad(data, (0, -data.shape[1] % 8)).contiguous()
    words = padded.view(torch.int64)  # (N, ⌈L/8⌉): 8 outcomes per word
    keys = words[:, 0].clone()
    for column in words.T[1:]:  # Σ_j w_j m^(W−1−j) mod 2^64, wrapping on overflow
        keys.mul_(_HASH_MULTIPLIER).add_(column)
    if len(torch.unique(keys)) == data.shape[0]:
        return ()
    rows, counts = torch.unique(data, dim=0, return_counts=True)
    return (rows, counts.double()) if len(rows) < data.shape[0] else ()


class _Average:
    """Exponential moving average of a model's weights, kept in a copy of the model::

        θ̄ ← d θ̄ + (1 − d) θ    after optimizer step t,   d = min(decay, (1 + t) / (10 + t))

    (the ramp lets the average forget the initial weights within the first steps, and sets d
    alone for the first ≈ 9 / (1 − decay) steps). Integer buffers are copied. ``model`` is the
    copy: validate it, save it.
    """

    def __init__(self, model: QtomoModel, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: QtomoModel, t: int) -> None:
        d = min(self.decay, (1 + t) / (10 + t))
        for mean, value in zip(self.model.state_dict().values(), model.state_dict().values(),
                               strict=True):
            if mean.is_floating_point():
                mean.lerp_(value, 1 - d)
            else:
                mean.copy_(value)


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call initialised the process group) under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), created


def _lr_lambda(options: TrainOptions, total_steps: int):
    """Learning-rate factor at a step: linear warm-up over min(warmup, total/10) steps, then
    cosine decay to 1/100 at the last step (or constant)."""
    warmup = min(options.warmup, total_steps // 10)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if options.schedule == "constant":
            return warm
        progress = min(1.0, step / max(1, total_steps - 1))
        return warm * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return factor


def _provenance(dataset: Dataset, train: tuple[int, int], val: tuple[int, int],
                checkpoint_folder: Path) -> dict[str, Any]:
    # the relative path lets evaluate find the dataset after the whole folder was moved
    path = Path(dataset.path).resolve()
    return {"path": str(path),
            "relative_path": os.path.relpath(path, Path(checkpoint_folder).resolve()),
            "n_records": dataset.n_records, "attrs": dataset.attrs, "train_rows": list(train),
            "val_rows": list(val)}


def _check_resume(trainer_checkpoint, model: QtomoModel, dataset: Dataset,
                  data: dict[str, Any]) -> None:
    """CheckpointError unless the resumed run had the same model, data shape, POVM and split."""
    config, path = trainer_checkpoint.config, trainer_checkpoint.path
    if trainer_checkpoint.trainer is None:
        raise CheckpointError(f"{path} holds no trainer state; resume from the .last.pt file "
                              "written by qtomo fit")
    if (config["family"], config["hyperparameters"]) != (model.family, hyperparameters(model)):
        raise CheckpointError(f"{path} holds model {config['family']} "
                              f"{config['hyperparameters']}; got {model.family} "
                              f"{hyperparameters(model)}")
    found = (dataset.L, dataset.povm.name, dataset.n_records)
    expected = (config["L"], config["povm"], config["data"].get("n_records"))
    if found != expected:
        raise CheckpointError(f"dataset {dataset.path} has L = {found[0]}, povm {found[1]}, "
                              f"{found[2]} records; the run in {path} was trained on L = "
                              f"{expected[0]}, povm {expected[1]}, {expected[2]} records")
    if config["data"].get("train_rows") != data["train_rows"]:
        raise CheckpointError(f"validation split {data['val_rows']} differs from the resumed "
                              f"run's {config['data'].get('val_rows')}; use its val_fraction")


def _restore_optimizer(optimizer: torch.optim.Optimizer, stored: dict[str, Any]) -> None:
    """Load the AdamW moments of a checkpoint; the hyperparameters (lr, betas, weight decay, …)
    stay those this run was built with.

    Raises:
        ValueError, KeyError, TypeError: for state that does not fit the parameters (the caller
            turns them into one CheckpointError line).
    """
    own = [{key: value for key, value in group.items() if key != "params"}
           for group in optimizer.param_groups]
    optimizer.load_state_dict(stored)
    for group, settings in zip(optimizer.param_groups, own, strict=True):
        group.update(settings)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    if not set(optimizer.state) <= set(parameters):
        raise ValueError("optimizer state names parameters the model does not have")
    for parameter, moments in optimizer.state.items():
        if not isinstance(moments, dict) or set(moments) != {"step", "exp_avg", "exp_avg_sq"}:
            raise ValueError(f"optimizer state holds {sorted(moments)}; expected exp_avg, "
                             "exp_avg_sq, step")
        step = moments["step"]
        if not (isinstance(step, torch.Tensor) and step.ndim == 0 and bool(step >= 0)
                and bool(torch.isfinite(step))):
            raise ValueError(f"optimizer step {step!r} is not a count")
        for name in ("exp_avg", "exp_avg_sq"):
            value = moments[name]
            if not (isinstance(value, torch.Tensor) and value.shape == parameter.shape
                    and bool(torch.isfinite(value).all())):
                raise ValueError(f"optimizer state {name} does not fit a parameter of shape "
                                 f"{tuple(parameter.shape)}")
        if bool((moments["exp_avg_sq"] < 0).any()):
            raise ValueError("optimizer state exp_avg_sq holds negative values")


def _write_history(path: Path, history: list[dict[str, float]], summary: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json_text({**summary, "epochs": history}) + "\n")


def fit(model: QtomoModel, dataset: Dataset | str | Path, options: TrainOptions | None = None, *,
        out: str | Path | None = None, resume: str | Path | None = None,
        device: str | torch.device = "auto",
        quiet: bool = False) -> TrainResult:
    """Train ``model`` by maximum likelihood on ``dataset``; keep the best by validation NLL.

    Args:
        model: any family, freshly built (or matching ``resume``); moved to ``device``.
        dataset: from :func:`qtomo.data.read_dataset`, or the path of a dataset file; its L, K
            must match the model.
        options: :class:`TrainOptions` (defaults if ``None``).
        out: best checkpoint path; ``.last.pt`` and ``.history.json`` go beside it
            (:func:`run_paths`). None trains in memory (a notebook): no file is written, and
            ``result.model`` and ``result.history`` are all there is.
        resume: a checkpoint of an interrupted run (its ``.last.pt``, or the best checkpoint
            with a ``.last.pt`` beside it): model, optimizer, scheduler, RNG states, history and
            epoch are restored and training continues where it stopped.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; under torchrun with CUDA each
            rank uses ``cuda:LOCAL_RANK``.
        quiet: no progress bar and no per-epoch lines.

    Returns:
        :class:`TrainResult`; ``result.model`` holds the best weights, in eval mode.

    Raises:
        QtomoError: L or K differ between model and data; fewer training rows than a batch.
        CheckpointError: ``resume`` unreadable or from a different model, dataset or split.
        ConvergenceError: a non-finite NLL (the files of the last good epoch are kept).

    Example (|00⟩ measured with pauli4: P(a_i) = (1/3, 1/6, 1/6, 1/3), entropy 2.6594 nats):
        >>> import tempfile
        >>> from qtomo.data import read_dataset
        >>> from qtomo.models import build
        >>> from qtomo.simulate import simulate
        >>> _ = torch.manual_seed(0)                  # the initial weights
        >>> folder = tempfile.mkdtemp()
        >>> data = read_dataset(simulate("product", 2, product_state="0", samples=4000,
        ...                              out=f"{folder}/d.h5", quiet=True))
        >>> result = fit(build("gru", L=2, K=4, hidden=8), data, TrainOptions(epochs=4),
        ...              out=f"{folder}/m.pt", device="cpu", quiet=True)
        >>> abs(result.best_val_nll - 2.6594) < 0.05, result.checkpoint.name
        (True, 'm.pt')
        >>> memory = fit(build("gru", L=2, K=4, hidden=8), data, TrainOptions(epochs=4),
        ...              device="cpu", quiet=True)                  # in memory: no files
        >>> memory.checkpoint is None, memory.val_rows
        (True, (3600, 4000))
    """
    options = options or TrainOptions()
    dataset = as_dataset(dataset)
    rank, world, created_group = _distributed()
    try:
        return _fit(model, dataset, options, out=None if out is None else Path(out),
                    resume=resume, device=device,
                    quiet=quiet or rank != 0, rank=rank, world=world)
    finally:
        if created_group:
            dist.destroy_process_group()


def _fit(model: QtomoModel, dataset: Dataset, options: TrainOptions, *, out: Path | None,
         resume: str | Path | None, device: str | torch.device, quiet: bool, rank: int,
         world: int) -> TrainResult:
    _check_pairing(model, dataset, options, world)
    state = None
    if resume is not None:  # first: another dataset is named as such, not as a batch problem
        if out is None:
            raise QtomoError("resuming needs the run's files; give out= (an in-memory run "
                             "writes none)")
        state = load_resume(resume, map_location="cpu")
        train_rows, val_rows = split_rows(dataset.n_records, options.val_fraction)
        _check_resume(state, model, dataset, {"train_rows": list(train_rows),
                                              "val_rows": list(val_rows)})
    run = _Run(model, dataset, options, out=out, device=device, quiet=quiet, rank=rank,
               world=world)
    # the run's random numbers (initial RNG state, resumed state) stay inside the run: the
    # caller's global generator is the same before and after
    cuda = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(options.seed)
        if state is not None:
            run.restore(state)
        while run.epoch < options.epochs and not run.stopped_early:
            run.train_epoch()
        if run.stopped_early and not quiet:
            print(f"stopped early: no better validation NLL for {options.patience} epochs")
        return run.finish()


class _Run:
    """The state of one training run (:func:`fit`): set up, resumed, advanced an epoch at a
    time, refined and saved. ``best`` holds the epoch, validation NLL and weights of the best
    validated model; ``history`` one row per epoch."""

    def __init__(self, model: QtomoModel, dataset: Dataset, options: TrainOptions, *,
                 out: Path | None, device: str | torch.device, quiet: bool, rank: int,
                 world: int) -> None:
        self.train_rows, self.val_rows = _split(dataset, options, world)
        device = resolve_device(device)
        if world > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        self.model, self.dataset, self.options, self.device = model, dataset, options, device
        self.quiet, self.rank, self.world, self.out = quiet, rank, world, out
        self.paths = run_paths(out) if out is not None else (None,) * 3
        self.save = rank == 0 and out is not None
        if self.save:  # fail now rather than after the first epoch
            check_outputs(self.paths, inputs=(dataset.path,))
        self.data = _provenance(dataset, self.train_rows, self.val_rows,
                                out.parent if out is not None else Path.cwd())
        model.to(device)
        self.objective: nn.Module = _Objective(model)
        if world > 1:
            self.objective = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[device.index] if device.type == "cuda" else None)
        if options.compile:
            self.objective = torch.compile(self.objective)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr,
                                           weight_decay=options.weight_decay,
                                           **model.optimizer_defaults)
        self.train = _Rows(dataset, self.train_rows, device, options,
                           bootstrap_seed=options.seed if options.bootstrap else None)
        self.val = _Rows(dataset, self.val_rows, device, options)
        self.steps_per_epoch = self.train.n_batches(options.batch_size, world)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(options, options.epochs * self.steps_per_epoch))
        self.average = _Average(model, options.ema) if options.ema else None
        #: what is validated and kept as the best
        self.evaluated = self.average.model if self.average else model
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=options.amp and device.type == "cuda")
        self.history: list[dict[str, float]] = []
        self.epoch, self.bad_epochs, self.stopped_early = 0, 0, False
        self.best: dict[str, Any] = {"epoch": 0, "val_nll": math.inf, "state_dict": None}
        self.full_batch: Refinement | None = None
        self.refinement: Refinement | None = None
        self.sweeps: SweepResult | None = None

    def restore(self, state) -> None:
        """Continue the interrupted run of the checkpoint ``state`` (:func:`load_resume`)."""
        trainer = state.trainer
        if (trainer["average"] is None) != (self.average is None):
            stored = state.config["training"].get("options", {}).get("ema")
            raise CheckpointError(f"{state.path} was trained with ema = {stored}; resume it "
                                  f"with that ema (got {self.options.ema})")
        try:
            step = self._load_trainer(state)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(
                error).__name__
            raise CheckpointError(f"{state.path}: trainer state does not fit the model "
                                  f"({reason})") from None
        # The schedule is this run's (options given now apply for real: lr, weight decay,
        # epochs, warm-up), at the step reached; the same as the stored one when unchanged.
        self.scheduler.last_epoch = step
        factor = _lr_lambda(self.options, self.options.epochs * self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.options.lr * factor(step)
        self.epoch, self.bad_epochs = trainer["epoch"], trainer["bad_epochs"]
        self.history, self.best = trainer["history"], trainer["best"]
        if not self.quiet:
            print(f"resuming {state.path} after epoch {self.epoch} (best validation NLL "
                  f"{self.best['val_nll']:.6f} at epoch {self.best['epoch']})")

    def _load_trainer(self, state) -> int:
        """Weights, average, optimizer moments and RNG states of a resumed run; its step."""
        trainer = state.trainer
        if trainer["best"]["state_dict"] is not None:  # loaded to check it; replaced later
            self.evaluated.load_state_dict(trainer["best"]["state_dict"])
        self.model.load_state_dict(state.model.state_dict())
        if self.average:
            self.average.model.load_state_dict(trainer["average"])
        _restore_optimizer(self.optimizer, trainer["optimizer"])
        step = trainer["scheduler"].get("last_epoch")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"scheduler step {step!r} is not a count")
        torch.set_rng_state(trainer["rng"]["cpu"])
        if self.device.type == "cuda" and trainer["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(trainer["rng"]["cuda"], self.device)
        return step

    def summary(self) -> dict[str, Any]:
        """The training summary stored in every checkpoint and the history file."""
        stages = {"full_batch": self.full_batch, "sweeps": self.sweeps,
                  "refine": self.refinement}
        return {"epochs_run": self.epoch, "best_epoch": self.best["epoch"],
                "best_val_nll": self.best["val_nll"], "stopped_early": self.stopped_early,
                **{name: dataclasses.asdict(stage) if stage else None
                   for name, stage in stages.items()},
                "time_s": _training_seconds(self.history, *stages.values()),
                "options": dataclasses.asdict(self.options),
                "world_size": self.world, "device": str(self.device),
                "n_parameters": sum(p.numel() for p in self.model.parameters()),
                "warnings": list(dataset_warnings(self.dataset))}

    def save_last(self) -> None:
        """The resumable state (``.last.pt``) and the history, after an epoch or the
        refinement."""
        cuda = self.device.type == "cuda"
        trainer = {"epoch": self.epoch, "bad_epochs": self.bad_epochs, "history": self.history,
                   "best": self.best, "optimizer": self.optimizer.state_dict(),
                   "scheduler": self.scheduler.state_dict(),
                   "average": self.average.model.state_dict() if self.average else None,
                   "rng": {"cpu": torch.get_rng_state(),
                           "cuda": torch.cuda.get_rng_state(self.device) if cuda else None}}
        _, last_path, history_path = self.paths
        save_checkpoint(last_path, self.model, trainer=trainer, povm=self.dataset.povm.name,
                        data=self.data, training=self.summary())
        _write_history(history_path, self.history, self.summary())

    def _step(self, a: torch.Tensor) -> torch.Tensor:
        """One optimiser update on the batch ``a`` (B, L); the training figure (scalar)."""
        if self.model.makes_own_step:  # a family that makes its own update (adversarial)
            loss = self.model.train_step(a, self.optimizer, self.options.clip)
        else:
            with self.autocast:
                loss = self.objective(a)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.options.clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.options.clip)
            self.optimizer.step()
        self.model.after_step()
        self.scheduler.step()
        if self.average:
            self.average.update(self.model, self.scheduler.last_epoch)
        return loss

    def train_epoch(self) -> None:
        """One pass over the training rows, validated, recorded and saved."""
        options, started = self.options, time.perf_counter()
        self.epoch += 1
        self.model.train()
        order = torch.Generator().manual_seed((options.seed * 1_000_003 + self.epoch) % 2**64)
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # Σ NLL, Σ rows
        bar = progress_bar(self.steps_per_epoch, f"epoch {self.epoch}/{options.epochs}",
                           quiet=self.quiet, unit="batch")
        for step, a in enumerate(self.train.batches(options.batch_size, order, rank=self.rank,
                                                    world=self.world)):
            loss = self._step(a)
            totals += torch.stack([loss.detach().double() * a.shape[0],
                                   totals.new_tensor(a.shape[0])])
            bar.update()
            if step % 25 == 0 and not bar.disable:
                bar.set_postfix(nll=f"{(totals[0] / totals[1]).item():.4f}")
        bar.close()
        train_nll = (sum_over_ranks(totals, world=self.world)[0] / totals[1]).item()
        val_nll = _validation_nll(self.evaluated, self.val, options, self.autocast, self.rank,
                                  self.world)
        self._record(train_nll, val_nll, time.perf_counter() - started)

    def _record(self, train_nll: float, val_nll: float, seconds: float) -> None:
        """Keep the epoch's figures, the best weights, the early-stopping count and the files."""
        if not (math.isfinite(train_nll) and math.isfinite(val_nll)):
            kept = (f"kept {self.paths[1]} (epoch {self.epoch - 1})"
                    if self.epoch > 1 and self.out is not None else "no checkpoint was written")
            raise ConvergenceError(f"training NLL became {train_nll} (validation {val_nll}) in "
                                   f"epoch {self.epoch}; {kept}; try a smaller --lr")
        improved = val_nll < self.best["val_nll"]
        if improved:
            self.best = {"epoch": self.epoch, "val_nll": val_nll, "state_dict":
                         {k: v.detach().cpu().clone()
                          for k, v in self.evaluated.state_dict().items()}}
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        self.stopped_early = (self.options.patience > 0
                              and self.bad_epochs >= self.options.patience)
        self.history.append({"epoch": self.epoch, "train_nll": train_nll, "val_nll": val_nll,
                             "lr": self.optimizer.param_groups[0]["lr"], "time_s": seconds})
        if not self.quiet:
            print(f"epoch {self.epoch:3d}  train NLL {train_nll:.6f}  val NLL {val_nll:.6f}  "
                  f"lr {self.history[-1]['lr']:.2e}  {seconds:.1f}s"
                  + ("  best" if improved else ""))
        if self.save:
            self.save_last()
            if improved:
                save_checkpoint(self.paths[0], self.evaluated, povm=self.dataset.povm.name,
                                data=self.data, training=self.summary())

    def kept(self, result: Refinement | SweepResult) -> Refinement | SweepResult:
        """``result`` of a stage after the epochs, whose state the model now holds, made the
        best (its validation NLL, no separate weights to restore)."""
        self.best = {"epoch": self.epoch, "val_nll": result.val_nll, "state_dict": None}
        return result

    def finish(self) -> TrainResult:
        """The best weights, stepped on the full batch, swept and refined when asked, saved with
        the final summary."""
        model, options = self.model, self.options
        if self.best["state_dict"] is not None:
            model.load_state_dict(self.best["state_dict"])
        stage = {"rank": self.rank, "world": self.world, "quiet": self.quiet}
        if options.full_batch:
            self.full_batch = self.kept(_refine(model, self.train, self.val, options,
                                                self.autocast, method="adam", **stage))
        if options.sweeps:
            self.sweeps = self.kept(_sweep(model, self.train, self.val, options, self.autocast,
                                           **stage))
        if options.refine:
            self.refinement = self.kept(_refine(model, self.train, self.val, options,
                                                self.autocast, **stage))
        if self.save and (options.full_batch or options.sweeps or options.refine):
            self.save_last()
        model.eval()
        best_path, last_path, history_path = self.paths
        if self.save:  # final summary into the best checkpoint
            save_checkpoint(best_path, model, povm=self.dataset.povm.name, data=self.data,
                            training=self.summary())
        return TrainResult(model=model, checkpoint=best_path, last=last_path,
                           history_path=history_path, history=self.history,
                           best_epoch=self.best["epoch"], best_val_nll=self.best["val_nll"],
                           stopped_early=self.stopped_early,
                           val_rows=(int(self.val_rows[0]), int(self.val_rows[1])),
                           refinement=self.refinement, sweeps=self.sweeps,
                           full_batch=self.full_batch)


def _check_pairing(model: QtomoModel, dataset: Dataset, options: TrainOptions,
                   world: int) -> None:
    """Refuse a model, dataset and options that do not go together."""
    if (dataset.L, dataset.K) != (model.L, model.K):
        raise QtomoError(f"dataset {dataset.path} has L = {dataset.L}, K = {dataset.K}; the "
                         f"{model.family} model was built for L = {model.L}, K = {model.K}")
    if model.povm is not None and model.povm != dataset.povm:
        raise QtomoError(f"dataset {dataset.path} was measured with {dataset.povm!r}; the "
                         f"{model.family} model's Born rule uses {model.povm!r} (another POVM, "
                         f"or other elements under the same name)")
    if model.makes_own_step and world > 1:
        raise QtomoError(f"the {model.family} model makes its own training step, which runs "
                         f"in one process; got a world size of {world} (run without torchrun)")
    for name in ("refine", "full_batch"):
        if model.makes_own_step and getattr(options, name):
            raise QtomoError(f"the {model.family} model has no likelihood to refine; drop "
                             f"--{name.replace('_', '-')}")
    refusal = model.sweep_refusal() if options.sweeps else None
    if refusal is not None:
        raise QtomoError(f"{refusal}; drop --sweeps")


def _split(dataset: Dataset, options: TrainOptions,
           world: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The training and validation rows; QtomoError when there is not one batch to train on,
    or fewer validation rows than processes (each rank measures its share of them)."""
    train_rows, val_rows = split_rows(dataset.n_records, options.val_fraction)
    n_train, n_val = train_rows[1] - train_rows[0], val_rows[1] - val_rows[0]
    if n_train < max(options.batch_size, world) or n_val == 0:
        raise QtomoError(f"dataset {dataset.path} has {dataset.n_records} records, "
                         f"{n_train} for training; need at least one batch of "
                         f"{options.batch_size} (--batch-size) plus validation rows")
    if n_val < world:
        raise QtomoError(f"dataset {dataset.path} leaves {n_val} validation rows for {world} "
                         f"processes; need at least one per process (raise --val-fraction)")
    return train_rows, val_rows


def refine_chunk(L: int) -> int:
    """Rows per pass of the L-BFGS refinement: fewer as L grows, so one chunk's graph stays
    small (16 384 up to L = 32, 1 024 from L = 512)."""
    return min(16384, max(1024, 2**19 // L))


#: the full-batch stages :func:`_refine` runs, by :func:`qtomo.refine.refine` method: the
#: TrainOptions field with the cap, what the messages call it, and the validation checks without
#: improvement that end it. Adam needs five: a grown non-negative state leaves its start only
#: after 30–50 steps (TFIM L = 12, 10^5 Z shots: χ = 4 kept at F 0.9991 with five; three
#: stopped it at the χ = 2 state, 0.9945)
_FULL_BATCH_STAGES = {"lbfgs": ("refine", "L-BFGS refinement", 3),
                      "adam": ("full_batch", "full-batch Adam", 5)}


def _refine(model: QtomoModel, train: _Rows, val: _Rows, options: TrainOptions, autocast, *,
            rank: int, world: int, quiet: bool, method: str = "lbfgs") -> Refinement:
    """A full-batch stage (:func:`qtomo.refine.refine`: L-BFGS, or Adam steps of ``lr``) on
    this rank's share of the training rows (repeated rows once, with their counts), in chunks
    whose size falls with L so that one chunk's graph stays small. A bootstrap replicate's
    L-BFGS runs to the maximum of its resampled likelihood, as its sweeps do: held-out selection
    kept two of three replicates of a Z-only TFIM L = 10 fit at their start, the plain fit's
    state, which hid the finite-data spread. Adam, which has no convergence test of its own,
    still stops on the validation rows."""
    chunk = refine_chunk(model.L)
    field, name, patience = _FULL_BATCH_STAGES[method]
    cap = getattr(options, field)
    refinement = refine(model, lambda: train.distinct(chunk, rank=rank, world=world),
                        train.n_rows,
                        lambda: _validation_nll(model, val, options, autocast, rank, world),
                        max_iter=cap, check_every=options.refine_check, world=world,
                        patience=patience, method=method, lr=options.lr,
                        weight_decay=options.weight_decay,
                        select=not (options.bootstrap and method == "lbfgs"))
    if not quiet:
        print(f"{name}: {refinement.iterations} iterations, validation NLL "
              f"{refinement.val_nll_before:.6f} -> {refinement.val_nll:.6f}, train NLL "
              f"{refinement.train_nll:.6f}, stopped: {refinement.stopped}, "
              f"{refinement.time_s:.1f}s")
    if refinement.stopped == "iterations":
        warnings.warn(f"the {name} reached its cap of {cap} iterations before converging; "
                      f"raise --{field.replace('_', '-')} to go on (the best state so far is "
                      f"kept)", stacklevel=2)
    return refinement


def _sweep(model: QtomoModel, train: _Rows, val: _Rows, options: TrainOptions, autocast, *,
           rank: int, world: int, quiet: bool) -> SweepResult:
    """The local sweeps (:meth:`QtomoModel.sweep`) on this rank's share of the training rows,
    gathered in memory (their environments are held there anyway), repeated rows once with
    their counts. A bootstrap replicate runs
    to the maximum of its resampled likelihood: early stopping on the validation rows would
    keep it at its start when that is the maximum-likelihood state of all rows."""
    chunk = refine_chunk(model.L)  # rows per pass: the validation passes keep no graph
    rows, counts = zip(*train.distinct(chunk, rank=rank, world=world), strict=True)
    records = torch.cat([a.to(torch.uint8) for a in rows])
    result = model.sweep(records, train.n_rows,
                         lambda: _held_out(model, val, options, autocast, rank, world, chunk),
                         max_sweeps=options.sweeps,
                         patience=0 if options.bootstrap else PATIENCE,
                         world=world, quiet=quiet or rank != 0,
                         counts=None if counts[0] is None else torch.cat(counts))
    if not quiet:
        print(f"sweeps: {result.half_sweeps} half-sweeps, validation NLL "
              f"{result.val_nll_before:.6f} -> {result.val_nll:.6f}, stopped: "
              f"{result.stopped}, {result.time_s:.1f}s")
    if result.stopped == "sweeps":
        warnings.warn(f"the sweeps reached their cap of {options.sweeps} before the likelihood "
                      f"converged; raise --sweeps to go on (the last state is kept)",
                      stacklevel=2)
    return result


def _validation_nll(model: QtomoModel, val: _Rows, options: TrainOptions, autocast,
                    rank: int, world: int, rows: int = 4096) -> float:
    """Mean training NLL over the validation rows (:func:`_held_out`)."""
    return _held_out(model, val, options, autocast, rank, world, rows).nll


@torch.no_grad()
def _held_out(model: QtomoModel, val: _Rows, options: TrainOptions, autocast, rank: int,
              world: int, rows: int = 4096) -> HeldOut:
    """The training NLL of every validation row (this rank's share; repeated rows once, with
    their counts), at least ``rows`` of them per pass."""
    model.eval()
    nll_rows, counts = [], []
    for a, a_counts in val.distinct(max(options.batch_size, rows), rank=rank, world=world):
        with autocast:
            nll_rows.append(model.training_nll(a).double())
        counts.append(a_counts)
    return HeldOut(torch.cat(nll_rows), None if counts[0] is None else torch.cat(counts),
                   world)


def check_ensemble(members: Any, out: str | Path) -> Path:
    """QtomoError unless ``members`` is an integer >= 2 and ``out`` is not a file; the folder
    as a Path."""
    if isinstance(members, bool) or not isinstance(members, int) or members < 2:
        raise QtomoError(f"an ensemble needs an integer number of members >= 2; got {members!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QtomoError(f"the ensemble output {out} is a file; expected a folder")
    return out


def fit_ensemble(family: str, dataset: Dataset, options: TrainOptions | None = None, *,
                 members: int, out: str | Path, hyperparameters: dict[str, Any] | None = None,
                 start: QtomoModel | None = None, device: str | torch.device = "auto",
                 quiet: bool = False) -> list[TrainResult]:
    """Train ``members`` models of one family into the folder ``out`` (docs/evaluate.md
    "Ensembles").

    Member m is ``out/member<m>.pt`` (with its ``.last.pt`` and history), built with
    ``torch.manual_seed(seed + m)`` and trained with ``seed + m``; with ``options.bootstrap``
    each also trains on its own bootstrap resample of the training rows. The spread of a figure
    over the members estimates how much it depends on the initialisation (seeds) or on the finite
    training data (bootstrap); :func:`qtomo.ensemble.evaluate_ensemble` reports it.

    Args:
        family: a registered model family.
        dataset: the records (as for :func:`fit`).
        options: training options; ``seed`` is the first member's.
        members: number of models, ≥ 2.
        out: the ensemble folder (created).
        hyperparameters: the family's hyperparameters (defaults otherwise).
        start: a model of that family and those hyperparameters every member starts from (a
            copy each) instead of its own random initialisation.
        device, quiet: as for :func:`fit`.

    Returns:
        One :class:`TrainResult` per member.

    Raises:
        QtomoError: fewer than 2 members, an ``out`` that is a file, and everything :func:`fit`
            raises.
    """
    from qtomo.models import build

    options = options or TrainOptions()
    out = check_ensemble(members, out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for member in range(members):
        seed = options.seed + member
        torch.manual_seed(seed)
        model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm,
                      **(hyperparameters or {}))
        if start is not None:
            model.load_state_dict(start.state_dict())
        if not quiet:
            print(f"ensemble member {member + 1}/{members} (seed {seed})")
        results.append(fit(model, dataset, dataclasses.replace(options, seed=seed),
                           out=out / f"member{member:02d}.pt", device=device, quiet=quiet))
    return results



@dataclass(frozen=True)
class Selection:
    """What :func:`fit_selection` (and :mod:`qtomo.growth`'s selections) return.

    Attributes:
        best: the kept run (its files are ``out``'s when an ``out`` was given).
        hyperparameters: the kept candidate's values of the selected hyperparameters.
        seed: the kept candidate's training seed.
        candidates: (values, seed, best validation NLL) of every candidate, in the order
            trained.
        search: for a size search (:func:`qtomo.growth.fit_growing`): the chosen sizes, the
            reason the search stopped and every stage; None otherwise.
        rule: why the kept candidate was kept, in words.
    """

    best: TrainResult
    hyperparameters: dict[str, Any]
    seed: int
    candidates: list[tuple[dict[str, Any], int, float]]
    search: dict[str, Any] | None = None
    rule: str = "lowest validation NLL"


def candidate_output(out: str | Path, values: Mapping[str, Any]) -> Path:
    """The checkpoint of one candidate of a selection, beside ``out``.

    Example:
        >>> str(candidate_output("runs/tfim_mps.pt", {"chi": 4, "real": 1, "seed": 7}))
        'runs/tfim_mps.chi-4_real-1_seed-7.pt'
    """
    out = Path(out)
    label = "_".join(f"{name}-{value}" for name, value in values.items())
    return out.with_name(f"{out.with_suffix('').name}.{label}.pt")


def candidate_label(values: Mapping[str, Any], seed: int) -> str:
    """How a selection's candidate is named in its progress lines and summary.

    Example:
        >>> candidate_label({"chi": 4, "real": 1}, 0)
        'chi = 4, real = 1, seed 0'
    """
    return ", ".join([f"{name} = {value}" for name, value in values.items()] + [f"seed {seed}"])


def fit_selection(family: str, dataset: Dataset, grid: Mapping[str, Sequence[Any]],
                  options: TrainOptions | None = None, *, restarts: int = 1,
                  out: str | Path | None = None,
                  hyperparameters: Mapping[str, Any] | None = None,
                  device: str | torch.device = "auto", quiet: bool = False) -> Selection:
    """Train one model per combination of ``grid`` and per restart, and keep the lowest
    validation NLL (docs/training.md "Choosing hyperparameters").

    Restart r of a combination is built with ``torch.manual_seed(seed + r)`` and trained by
    :func:`fit` with that seed, ``seed = options.seed``; every candidate trains on the same
    rows, and the validation rows, which none trains on, choose. With ``out``, a candidate writes
    :func:`candidate_output` (and its ``.last.pt`` and history), and the kept one's three files
    are then copied to ``out``'s (:func:`run_paths`), so that ``out`` is an ordinary run (evaluate
    it, resume it). From the CLI the physical families select ``real`` ∈ {1, 0} this way by
    default: real tensors, where the state allows them, generalise better from few records.
    Restarts matter where the likelihood has separate basins, such as the relative phase of a
    GHZ state, which only the few records with every qubit in X or Y see.

    Args:
        family: a registered model family.
        dataset: the records (as for :func:`fit`).
        grid: hyperparameter name → the values to try (may be empty when ``restarts`` > 1).
        options: training options, the same for every candidate but the seed.
        restarts: trainings per combination, from seeds ``options.seed`` … ``+ restarts − 1``.
        out: the kept run's checkpoint; None trains in memory.
        hyperparameters: fixed values of the family's other hyperparameters.
        device, quiet: as for :func:`fit`.

    Returns:
        :class:`Selection`.

    Raises:
        QtomoError: an empty value list, fewer than 1 restart, nothing to select (an empty grid
            and 1 restart), a name both in ``grid`` and ``hyperparameters``, and everything
            :func:`fit` raises.
    """
    from qtomo.models import build

    options = options or TrainOptions()
    fixed = dict(hyperparameters or {})
    check_selection(grid, fixed, restarts)
    if not grid and restarts == 1:
        raise QtomoError(f"a selection needs several values of a hyperparameter or several "
                         f"restarts; got {dict(grid)!r} and {restarts} restart(s)")
    candidates, best, kept = [], None, None
    for combination in itertools.product(*grid.values()):
        values = dict(zip(grid, combination, strict=True))
        for seed in range(options.seed, options.seed + restarts):
            torch.manual_seed(seed)
            model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm, **fixed,
                          **values)
            result = fit_candidate(model, dataset, dataclasses.replace(options, seed=seed),
                                   values, named=restarts > 1, out=out, device=device,
                                   quiet=quiet)
            candidates.append((values, seed, result.best_val_nll))
            if best is None or result.best_val_nll < best.best_val_nll:
                best, kept = result, (values, seed)
    if out is not None:
        best = keep_run(best, out)
    return Selection(best, kept[0], kept[1], candidates)


def check_selection(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any],
                    restarts: int) -> None:
    """Refuse a selection (:class:`QtomoError`, one line) with a number of restarts that is not
    an integer >= 1, an empty value list in ``grid``, or a name both in ``grid`` and ``fixed``."""
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise QtomoError(f"restarts must be an integer >= 1; got {restarts!r}")
    if any(len(values) == 0 for values in grid.values()):
        raise QtomoError(f"every hyperparameter to select needs a value; got {dict(grid)!r}")
    if set(grid) & set(fixed):
        raise QtomoError(f"hyperparameter(s) {', '.join(sorted(set(grid) & set(fixed)))} are "
                         f"both fixed and selected")


def fit_candidate(model: QtomoModel, dataset: Dataset, options: TrainOptions,
                  values: Mapping[str, Any], *, named: bool, out: str | Path | None,
                  device: str | torch.device, quiet: bool, heading: str = "candidate",
                  ) -> TrainResult:
    """One candidate of a selection: :func:`fit` of ``model``, announced as ``heading`` and its
    :func:`candidate_label`, written to :func:`candidate_output` of ``values`` (and of
    ``options.seed`` where ``named``) beside ``out``."""
    if not quiet:
        print(f"{heading} {candidate_label(values, options.seed)}")
    label = {**values, "seed": options.seed} if named else values
    return fit(model, dataset, options, device=device, quiet=quiet,
               out=None if out is None else candidate_output(out, label))


def keep_run(result: TrainResult, out: str | Path) -> TrainResult:
    """Copy a candidate run's three files to ``out``'s (:func:`run_paths`), so that ``out`` is
    an ordinary run; under torchrun rank 0 writes. Returns ``result`` with the new paths."""
    paths = run_paths(out)
    if int(os.environ.get("RANK", "0")) == 0:
        for source, target in zip(run_paths(result.checkpoint), paths, strict=True):
            with atomic_output(target) as temporary:
                shutil.copyfile(source, temporary)
    return dataclasses.replace(result, checkpoint=paths[0], last=paths[1], history_path=paths[2])
