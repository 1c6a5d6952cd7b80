"""Bond and Kraus dimensions chosen by the records (docs/physical-fits.md, "What a plain
`qtomo fit --model mps` does").

A physical family declares the hyperparameters that size its state and the ladder of values to
try (``model.sizes``, e.g. χ ∈ 2, 4, 6, 8, 12, …) and can embed its state in a larger model
(``model.grown(chi=…)``: the same state, new entries small and random). :func:`fit_growing`
fits the smallest size with the options given (the family's recipe: local sweeps to the
maximum of the likelihood, or full-batch Adam then the L-BFGS refinement; for each value of a
selection such as real or complex tensors, of which the simpler is kept unless the records
prefer the other: :func:`_first_stage`), then repeatedly:

1. for each size not fixed by the user, grows it one rung from the kept state and fits the
   grown model with the same options, at most a few Adam epochs where they have epochs (they
   develop the new directions, which L-BFGS alone left unused at L = 50) before the full-batch
   steps, the sweeps or the refinement (it starts near the smaller maximum, so it is cheap);
2. compares each grown model with the kept one on the held-out rows, record by record:
   gain = mean_n [ln Q_new(a_n) − ln Q_kept(a_n)] with its standard error s/√N_val (a paired
   difference, so the noise of the rows themselves cancels);
3. keeps the largest gain if it exceeds 1.5 standard errors (:data:`qtomo.heldout.SIGNIFICANCE`),
   else stops: the records no longer support a larger state.

The search also stops at the end of a ladder, and before a size whose training pass would take
more than half of the free memory (:meth:`~qtomo.models.QtomoModel.training_bytes`; a one-line
note names the option that fits a fixed or larger size). Each candidate is an ordinary run
beside ``out`` (:func:`qtomo.train.candidate_output`), and the kept one is copied to ``out`` with
the search (every stage's size, gain, standard error and the reason it stopped) in its
checkpoint's training summary under ``size_search``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qtomo.data import Dataset
from qtomo.device import available_memory
from qtomo.errors import QtomoError
from qtomo.heldout import SIGNIFICANCE, HeldOut
from qtomo.models import QtomoModel, build, family_classes, load_checkpoint, save_checkpoint
from qtomo.train import (
    Selection,
    TrainOptions,
    TrainResult,
    candidate_label,
    check_selection,
    fit_candidate,
    keep_run,
    refine_chunk,
    split_rows,
)

#: Adam epochs of a grown stage before its L-BFGS refinement: at L = 50 L-BFGS alone left the
#: new bond directions unused (χ = 3 → 4 gained nothing), a few epochs of Adam develop them
_GROWN_EPOCHS = 10
#: share of the free memory one training pass of a grown stage may take: the kept stage, the
#: data and the validation pass hold the rest
_MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class Stage:
    """One model of a size search: its sizes, validation NLL, the paired gain over the model
    kept before it (None for the first) with the gain's standard error, whether it was kept,
    and its training time."""

    sizes: dict[str, int]
    val_nll: float
    gain: float | None
    stderr: float | None
    kept: bool
    time_s: float


def fit_growing(family: str, dataset: Dataset, options: TrainOptions, *,
                grid: Mapping[str, Sequence[Any]] | None = None,
                hyperparameters: Mapping[str, Any] | None = None, restarts: int = 1,
                out: str | Path | None = None, device: str | torch.device = "auto",
                quiet: bool = False) -> Selection:
    """Fit ``family`` with its sizes chosen by the records (module docstring).

    Args:
        family: a registered family with sizes (``model.sizes``: ``mps``, ``lpdo``).
        dataset: the records.
        options: the training options of the first stage; the grown stages use the same with
            at most ``_GROWN_EPOCHS`` (10) Adam epochs before their sweeps or refinement.
        grid: other hyperparameters to select among on the first size, the simpler values
            first (e.g. ``{"real": [1, 0]}``); :func:`_first_stage` chooses the one that grows.
        hyperparameters: fixed values; a size given here is not searched.
        restarts: first-stage fits per combination, from seeds ``options.seed`` …
            ``+ restarts − 1`` (the initial state and training seed); one more where
            :func:`_first_stage` starts a combination again.
        out: the kept run's checkpoint (candidates beside it); None trains in memory.
        device, quiet: as for :func:`qtomo.train.fit`.

    Returns:
        :class:`qtomo.train.Selection`; ``best.model`` is the kept model, and
        ``search`` (in its checkpoint, and :attr:`Selection.search`) lists every stage.

    Raises:
        QtomoError: a family without sizes, every size fixed, ``options.refine`` of 0, and
            everything :func:`qtomo.train.fit` raises.
    """
    model_class = family_classes(family)[0]
    fixed = dict(hyperparameters or {})
    ladders = {name: ladder for name, ladder in model_class.sizes.items() if name not in fixed}
    if not ladders:
        raise QtomoError(f"the {family} family has no size left to choose (given: "
                         f"{', '.join(sorted(fixed)) or 'none'})")
    if not (options.sweeps or options.refine):
        raise QtomoError("choosing the size compares maximum-likelihood fits; give sweeps or "
                         "refine > 0")
    sizes = {name: ladder[0] for name, ladder in ladders.items()}
    (first, combination, seed), why, starts = _first_runs(
        family, dataset, options, grid, fixed, sizes, restarts, out, device, quiet)
    restarted = restarts > 1  # candidates' files then carry their seed
    grown_options = dataclasses.replace(options, seed=seed,
                                        epochs=min(options.epochs, _GROWN_EPOCHS))
    result, stages, stopped, memory = _grow(first, sizes, ladders, dataset, grown_options,
                                            combination, restarted, out, device, quiet)
    search = {**_summary(stages, stopped, ladders, memory), **({"first": why} if why else {})}
    chosen = {**combination, **search["chosen"]}
    if not quiet:
        print(f"kept {candidate_label(chosen, seed)}: {search['reason']}")
    if out is not None:
        result = keep_run(result, out)
        _record_search(result.checkpoint, search)
    candidates = [({**values, **sizes}, start_seed, run.best_val_nll)
                  for run, values, start_seed in starts]
    return Selection(result, chosen, seed, candidates, search, rule=search["reason"])


def fit_in_order(family: str, dataset: Dataset, options: TrainOptions, *,
                 grid: Mapping[str, Sequence[Any]],
                 hyperparameters: Mapping[str, Any] | None = None, restarts: int = 1,
                 out: str | Path | None = None,
                 device: str | torch.device = "auto", quiet: bool = False) -> Selection:
    """Fit ``family`` at the sizes given, once per combination of ``grid`` (and per restart),
    and keep the first combination unless the records prefer a later one, as the size
    search's first stage does (:func:`_first_stage`): ``qtomo fit --model mps --chi 4``
    without ``--real``.

    Args:
        family, dataset, options, hyperparameters, restarts, out, device, quiet: as for
            :func:`fit_growing`.
        grid: hyperparameters to select among, the simpler values first (``{"real": [1, 0]}``).

    Returns:
        :class:`qtomo.train.Selection`, its ``rule`` the comparison that decided.

    Raises:
        QtomoError: fewer than 1 restart, an empty value list, a name both in ``grid`` and
            ``hyperparameters``, and everything :func:`qtomo.train.fit` raises.
    """
    (run, combination, seed), why, starts = _first_runs(
        family, dataset, options, grid, dict(hyperparameters or {}), {}, restarts, out, device,
        quiet)
    if out is not None:
        run = keep_run(run, out)
    candidates = [(values, start_seed, result.best_val_nll)
                  for result, values, start_seed in starts]
    return Selection(run, combination, seed, candidates, rule=why or "one candidate")


def _first_runs(family: str, dataset: Dataset, options: TrainOptions,
                grid: Mapping[str, Sequence[Any]] | None, fixed: dict[str, Any],
                sizes: dict[str, int], restarts: int, out, device, quiet: bool,
                ) -> tuple[tuple[TrainResult, dict[str, Any], int], str | None,
                           list[tuple[TrainResult, dict[str, Any], int]]]:
    """The runs of :func:`_first_stage` at ``fixed`` and ``sizes`` (the search's first sizes,
    in the candidates' names): the kept (run, combination, seed), why, and every run."""
    check_selection(grid or {}, fixed, restarts)
    starts: list[tuple[TrainResult, dict[str, Any], int]] = []

    def start(combination: dict[str, Any], seed: int, named: bool = restarts > 1):
        torch.manual_seed(seed)
        model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm, **fixed,
                      **combination, **sizes)
        starts.append((fit_candidate(model, dataset, dataclasses.replace(options, seed=seed),
                                     {**combination, **sizes}, named=named, out=out,
                                     device=device, quiet=quiet,
                                     heading="size search:" if sizes else "candidate"),
                       combination, seed))
        return starts[-1]

    kept, why = _first_stage(start, _combinations(dict(grid or {})),
                             range(options.seed, options.seed + restarts), dataset)
    if why and sizes and not quiet:
        print(f"first size: {why}")
    return kept, why, starts


def _first_stage(start, combinations: list[dict[str, Any]], seeds: range, dataset: Dataset,
                 ) -> tuple[tuple[TrainResult, dict[str, Any], int], str | None]:
    """The first size's run: ``start(combination, seed)`` fits one and returns (run,
    combination, seed); each combination is started from every seed and keeps its lowest
    validation NLL. The combinations are taken in the grid's order, the simpler first (real
    tensors before complex ones): a later one is kept only where the held-out rows prefer it
    to the one kept by more than :data:`~qtomo.heldout.SIGNIFICANCE` standard errors, as a
    larger size is. Before it is, the kept combination is started once more, from the next
    seed: a poorer local maximum of its likelihood also loses (XXZ L = 16 from 10^4 records:
    real tensors from 1 seed in 5, 0.48 nats per record behind complex ones, which the other
    seeds matched); once per combination. Returns the kept (run, combination, seed) and a
    line saying why (None for a single combination)."""
    def lowest(runs):
        return min(runs, key=lambda run: run[0].best_val_nll)

    def gain(run, other):
        return _held_out(run[0], dataset).gain_over(_held_out(other[0], dataset))

    kept, why, started_again = lowest(start(combinations[0], seed) for seed in seeds), [], []
    for combination in combinations[1:]:
        candidate = lowest(start(combination, seed) for seed in seeds)
        mean, stderr = gain(candidate, kept)
        if mean > SIGNIFICANCE * stderr and kept[1] not in started_again:
            started_again.append(kept[1])
            kept = lowest([kept, start(kept[1], seeds.stop, named=True)])
            mean, stderr = gain(candidate, kept)
        preferred = mean > SIGNIFICANCE * stderr
        why.append(f"{candidate_label(candidate[1], candidate[2])} gained {mean:.3g} ± "
                   f"{stderr:.2g} nats per record over {candidate_label(kept[1], kept[2])}, "
                   f"{'more' if preferred else 'not more'} than {SIGNIFICANCE:g} standard errors")
        if preferred:
            kept = candidate
    return kept, "; ".join(why) or None


def _combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    combinations = [{}]
    for name, values in grid.items():
        combinations = [{**c, name: value} for c in combinations for value in values]
    return combinations


def _grow(kept: TrainResult, sizes: dict[str, int], ladders: Mapping[str, Sequence[int]],
          dataset: Dataset, options: TrainOptions, values: dict[str, Any],
          restarted: bool, out: str | Path | None, device, quiet: bool,
          ) -> tuple[TrainResult, list[Stage], str, dict[str, Any]]:
    """Steps 1–3 of the module docstring from the first stage ``kept`` (of ``sizes``); returns
    the kept run, every stage, why the search stopped: ``"gain"`` (no larger size gained
    enough), ``"memory"`` (the next size would not fit in memory), ``"ladder"`` (a ladder's
    end) or ``"full"`` (every bond at its largest), and the size memory refused, if any."""
    kept_held = _held_out(kept, dataset)
    stages = [Stage(dict(sizes), kept.best_val_nll, None, None, True, kept.time_s)]
    memory: dict[str, Any] = {}  # the size memory refused (_fits_in_memory)
    n_train = split_rows(dataset.n_records, options.val_fraction)[0][1]
    while True:
        trials, ends = [], set()
        for name, ladder in ladders.items():
            rung = ladder.index(sizes[name]) + 1
            if rung == len(ladder) or not kept.model.grows(name, ladder[rung]):
                ends.add("ladder" if rung == len(ladder) else "full")
                continue
            larger = {**sizes, name: ladder[rung]}
            torch.manual_seed(options.seed)
            grown = kept.model.grown(**larger)
            if not _fits_in_memory(grown, name, ladder[rung], options, n_train, memory):
                ends.add("memory")
                continue
            result = fit_candidate(grown, dataset, options, {**values, **larger},
                                   named=restarted, out=out, device=device, quiet=quiet,
                                   heading="size search:")
            held = _held_out(result, dataset)
            gain, stderr = held.gain_over(kept_held)
            trials.append((gain - SIGNIFICANCE * stderr, larger, result, held, gain, stderr))
        if not trials:
            stopped = next(end for end in ("memory", "ladder", "full") if end in ends)
            return kept, stages, stopped, memory
        margin, larger, result, held, _, _ = max(trials, key=lambda trial: trial[0])
        stages += [Stage(trial[1], trial[2].best_val_nll, trial[4], trial[5],
                         margin > 0 and trial[1] is larger, trial[2].time_s)
                   for trial in trials]
        if margin <= 0:
            return kept, stages, "gain", memory
        sizes, kept, kept_held = larger, result, held


def _held_out(result: TrainResult, dataset: Dataset) -> HeldOut:
    """−ln Q(a) of every validation row of ``result``'s model."""
    return HeldOut.of(result.model, torch.from_numpy(dataset.outcomes(*result.val_rows)).long())


def _fits_in_memory(model: QtomoModel, name: str, value: int, options: TrainOptions,
                    n_train: int, refused: dict[str, Any]) -> bool:
    """Whether one training pass of ``model`` (an Adam batch, or a chunk of the refinement,
    whichever is larger; with sweeps, their environments of all ``n_train`` training rows if
    larger still) needs at most :data:`_MEMORY_SHARE` of the memory its device has free; if
    not, ``refused`` records the size (``name`` = ``value``), the rows and bytes needed and
    those available."""
    rows = max(options.batch_size, refine_chunk(model.L))
    needed = model.training_bytes(rows)
    swept = model.sweep_bytes(n_train) if options.sweeps else 0
    if swept > needed:
        rows, needed = n_train, swept
    available = available_memory(model.device)
    if needed <= _MEMORY_SHARE * available:
        return True
    refused.update(name=name, value=value, rows=rows,
                   needed_bytes=needed, available_bytes=available)
    return False


def _summary(stages: list[Stage], stopped: str, ladders: Mapping[str, Sequence[int]],
             memory: Mapping[str, Any]) -> dict[str, Any]:
    """The search as plain data, with the reason it stopped (and the size memory refused)."""
    kept = next(stage for stage in reversed(stages) if stage.kept)
    if stopped == "memory":
        return {"chosen": kept.sizes, "stopped": stopped, "memory": dict(memory),
                "stages": [dataclasses.asdict(stage) for stage in stages],
                "reason": f"the next size ({memory['name']} = {memory['value']}) needs about "
                          f"{memory['needed_bytes'] / 2**30:.3g} GiB for a pass over "
                          f"{memory['rows']} rows, more than half of the "
                          f"{memory['available_bytes'] / 2**30:.3g} GiB free; give "
                          f"--{memory['name']} to fit a fixed size"}
    reason = {
        "gain": f"no larger size improved the held-out NLL by more than {SIGNIFICANCE:g} "
                f"standard errors",
        "full": "every bond is already as large as the qubits allow",
        "ladder": f"the search reached the largest size it tries "
                  f"({', '.join(f'{name} = {ladder[-1]}' for name, ladder in ladders.items())}); "
                  f"give --{next(iter(ladders))} to fit a larger state",
    }[stopped]
    return {"chosen": kept.sizes, "reason": reason, "stopped": stopped,
            "stages": [dataclasses.asdict(stage) for stage in stages]}


def _record_search(path: Path, search: dict[str, Any]) -> None:
    """Add the size search to the kept checkpoint's training summary."""
    checkpoint = load_checkpoint(path)
    training = {**checkpoint.config["training"], "size_search": search}
    save_checkpoint(path, checkpoint.model, povm=checkpoint.config["povm"],
                    data=checkpoint.config["data"], training=training)
