"""What a plain ``qtomo fit`` does: which family (:func:`default_family`) and its training
recipe, read in one place (docs/training.md "The default family", "Choosing hyperparameters").

:func:`recipe` turns a family's declared defaults (``model.train_defaults_for``,
``model.selection_defaults``, ``model.sizes``) and what the user gave into training options and
a selection grid; :func:`fit_recipe` runs it: a size search (:func:`qtomo.growth.fit_growing`)
for a family with sizes the user left open, the family's own selection at the sizes given
(:func:`qtomo.growth.fit_in_order`: real tensors unless the records prefer complex ones), a
selection by validation NLL (:func:`qtomo.train.fit_selection`) for other values or restarts,
else one :func:`qtomo.train.fit`. The CLI and the benchmarks call
these, so that a benchmark measures what a user gets.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from qtomo.atomic import check_outputs
from qtomo.data import Dataset
from qtomo.errors import QtomoError
from qtomo.growth import fit_growing, fit_in_order
from qtomo.models import build, config_class, family_classes
from qtomo.pauli_records import phases_undetermined, records_incomplete
from qtomo.train import (
    Selection,
    TrainOptions,
    TrainResult,
    check_ensemble,
    fit,
    fit_ensemble,
    fit_selection,
    run_paths,
    split_rows,
)


class PhasePriorWarning(UserWarning):
    """The records do not determine the phases; the fit uses the family's positive prior."""


#: a default batch leaves at least this many optimizer steps per epoch on a small dataset
#: (QuCumber's 900-shot W state: docs/measured-data.md)
_MIN_STEPS = 8
_MIN_BATCH = 32


#: the family a plain fit trains on complete records of at least NETWORK_MIN_RECORDS rows
NETWORK = "gru"
#: the family it trains otherwise: it returns a state where a network's dual-frame ρ does not
PHYSICAL = "mps"
#: fewer records than this and the networks' ρ falls far below the mps's (measured:
#: docs/training.md "The default family")
NETWORK_MIN_RECORDS = 10_000


def default_family(dataset: Dataset, hyperparameters: Iterable[str] = ()) -> tuple[str, str]:
    """The family of a ``qtomo fit`` without ``--model``, and why.

    The physical :data:`PHYSICAL` family where the records are not complete, uniform tomography
    (:func:`qtomo.pauli_records.records_incomplete`; :func:`phases_undetermined`) — a network
    then models the records but its ρ = Σ_a Q(a) Q_a is not the measured state — or where they
    are fewer than :data:`NETWORK_MIN_RECORDS`; else the network :data:`NETWORK`. Hyperparameters
    the user named that only the network takes (``--hidden``) choose the network.

    Args:
        dataset: the records.
        hyperparameters: names of the hyperparameters given.

    Returns:
        (family, reason): a registered family and one line saying why it was chosen.
    """
    named = set(hyperparameters)
    if not _takes(PHYSICAL, named) and _takes(NETWORK, named):
        return NETWORK, f"{', '.join(sorted(named))} given, which the {NETWORK} takes"
    incomplete = records_incomplete(dataset) or phases_undetermined(dataset)
    if incomplete is not None:
        return PHYSICAL, (f"{incomplete}: a network's ρ of such records is not the measured "
                          f"state")
    if dataset.n_records < NETWORK_MIN_RECORDS:
        return PHYSICAL, (f"{dataset.n_records} records, fewer than {NETWORK_MIN_RECORDS}: the "
                          f"physical family returns the better state from few records")
    return NETWORK, (f"{dataset.n_records} records of complete, uniform tomography (give "
                     f"--model {PHYSICAL} for a physical state)")


def _takes(family: str, names: set[str]) -> bool:
    """Whether ``family``'s config has every hyperparameter in ``names``."""
    return names <= {field.name for field in dataclasses.fields(config_class(family))}


def recipe(family: str, dataset: Dataset, options: Mapping[str, Any] | None = None,
           hyperparameters: Mapping[str, Any] | None = None,
           ) -> tuple[TrainOptions, dict[str, list]]:
    """The training options and the selection grid of a plain fit of ``family``.

    The family's ``train_defaults_for(hyperparameters)`` (else :class:`TrainOptions`') apply
    unless given in ``options``; a default batch is cut
    to an eighth of the training rows (at least 32, at most all of them), so that a small file
    still gets several optimizer steps per epoch. The family's ``selection_defaults`` (the
    physical families: ``real`` ∈ {1, 0}) join the grid unless given in ``hyperparameters``;
    list values there join it too.

    Args:
        family: a registered family.
        dataset: the records (their number sets the batch cut).
        options: training options given by the user (fields of :class:`TrainOptions`).
        hyperparameters: hyperparameters given by the user; a list is several values to select
            among.

    Returns:
        (options, grid): grid maps a hyperparameter to the values to select among.
    """
    options, given = dict(options or {}), dict(hyperparameters or {})
    model_class = family_classes(family)[0]
    defaults = model_class.train_defaults_for(given)
    if "batch_size" not in options:
        val_fraction = options.get("val_fraction", TrainOptions.val_fraction)
        n_train = split_rows(dataset.n_records, val_fraction)[0][1]
        cut = max(_MIN_BATCH, n_train // _MIN_STEPS)
        batch = defaults.get("batch_size", TrainOptions.batch_size)
        defaults["batch_size"] = max(1, min(batch, cut, n_train))
    grid = {name: list(values) for name, values in model_class.selection_defaults.items()
            if name not in given}
    grid.update({name: list(value) for name, value in given.items() if isinstance(value, list)})
    return TrainOptions(**{**defaults, **options}), grid


def phase_prior(family: str, dataset: Dataset, hyperparameters: Mapping[str, Any] | None = None,
                ) -> tuple[dict[str, Any], str | None]:
    """The hyperparameters of a fit whose records cannot determine the phases.

    Where :func:`qtomo.pauli_records.phases_undetermined` gives a reason (Z-only records), the
    family's ``unphased_defaults`` (``mps``, ``lpdo``: ``positive`` = 1, real non-negative
    amplitudes) join ``hyperparameters`` unless given, so that no selection picks real vs
    complex tensors on noise (docs/measured-data.md).

    Returns:
        (hyperparameters, reason): the reason (with what was chosen) is None where nothing was
        added.
    """
    given = dict(hyperparameters or {})
    added = {name: value for name, value in family_classes(family)[0].unphased_defaults.items()
             if name not in given}
    if not added:
        return given, None
    reason = phases_undetermined(dataset)
    if reason is None:
        return given, None
    chosen = ", ".join(f"{name}={value}" for name, value in added.items())
    return {**given, **added}, f"{reason}: {family} uses {chosen} (give them to override)"


def _plan(family: str, dataset: Dataset, options: Mapping[str, Any] | None,
          hyperparameters: Mapping[str, Any] | None,
          ) -> tuple[TrainOptions, dict[str, list], dict[str, Any], bool]:
    """The options, selection grid and fixed hyperparameters of a plain fit (the phase prior
    added, with its warning), and whether it searches the family's sizes."""
    hyperparameters, prior = phase_prior(family, dataset, hyperparameters)
    if prior is not None:
        warnings.warn(prior, PhasePriorWarning, stacklevel=3)
    training, grid = recipe(family, dataset, options, hyperparameters)
    fixed = {name: value for name, value in hyperparameters.items()
             if not isinstance(value, list)}
    sizes = family_classes(family)[0].sizes
    open_sizes = [name for name in sizes if name not in fixed and name not in grid]
    return training, grid, fixed, bool(open_sizes and (training.sweeps or training.refine))


def fit_recipe_ensemble(family: str, dataset: Dataset, options: Mapping[str, Any] | None = None,
                        hyperparameters: Mapping[str, Any] | None = None, *, members: int,
                        out: str | Path, device: str | torch.device = "auto",
                        quiet: bool = False) -> list[TrainResult]:
    """``members`` fits of ``family`` to ``dataset`` into the folder ``out``, as ``qtomo fit
    --ensemble`` trains them (docs/evaluate.md "Ensembles").

    Where a plain fit would search the family's sizes (``mps``, ``lpdo`` without ``--chi``),
    one plain fit of all training rows (:func:`fit_recipe`, in memory, never resampled) chooses
    them, and every member starts at its state: with ``bootstrap`` the members are the
    bootstrap replicates of that maximum-likelihood state, and their spread its finite-data
    error (members started at random at a fixed size land in worse states at L = 50).
    Otherwise the members are those of :func:`qtomo.train.fit_ensemble` with the recipe's
    options.

    Returns:
        One :class:`qtomo.train.TrainResult` per member.

    Raises:
        QtomoError: everything :func:`fit_recipe` and :func:`qtomo.train.fit_ensemble` raise.
    """
    check_ensemble(members, out)  # before the plain fit, which may take minutes
    plan = _plan(family, dataset, options, hyperparameters)
    training, _, fixed, searched = plan
    start = None
    if searched:  # the plain fit of all rows: the same plan, never resampled
        whole = (dataclasses.replace(training, bootstrap=False), *plan[1:])
        chosen = _fit_planned(family, dataset, whole, restarts=None, out=None, device=device,
                              quiet=quiet)
        fixed, start = {**fixed, **chosen.hyperparameters}, chosen.best.model
    return fit_ensemble(family, dataset, training, members=members, out=out,
                        hyperparameters=fixed, start=start, device=device, quiet=quiet)


def fit_recipe(family: str, dataset: Dataset, options: Mapping[str, Any] | None = None,
               hyperparameters: Mapping[str, Any] | None = None, *, restarts: int | None = None,
               out: str | Path | None = None, device: str | torch.device = "auto",
               quiet: bool = False) -> Selection:
    """Fit ``family`` to ``dataset`` as ``qtomo fit`` does (module docstring).

    Args:
        family, dataset, options, hyperparameters: as for :func:`recipe`.
        restarts: trainings per candidate, from consecutive seeds (the lowest validation NLL
            is kept); None: the family's ``search_restarts`` for a size search, else 1.
        out: the kept run's checkpoint; None trains in memory.
        device, quiet: as for :func:`qtomo.train.fit`.

    Returns:
        :class:`qtomo.train.Selection` (a single fit is a selection of one candidate).

    Raises:
        QtomoError: everything :func:`recipe`, :func:`qtomo.train.fit` and the selections
            raise.
    """
    return _fit_planned(family, dataset, _plan(family, dataset, options, hyperparameters),
                        restarts=restarts, out=out, device=device, quiet=quiet)


def _fit_planned(family: str, dataset: Dataset,
                 plan: tuple[TrainOptions, dict[str, list], dict[str, Any], bool], *,
                 restarts: int | None, out: str | Path | None, device: str | torch.device,
                 quiet: bool) -> Selection:
    """:func:`fit_recipe` of the options, grid and fixed hyperparameters of :func:`_plan`."""
    training, grid, fixed, searched = plan
    if out is not None:  # a selection copies its run there
        check_outputs(run_paths(out), inputs=(dataset.path,))
    model_class = family_classes(family)[0]
    if restarts is None:
        restarts = model_class.search_restarts if searched else 1
    if searched:
        return fit_growing(family, dataset, training, grid=grid, hyperparameters=fixed,
                           restarts=restarts, out=out, device=device, quiet=quiet)
    if grid and set(grid) <= set(model_class.selection_defaults):
        return fit_in_order(family, dataset, training, grid=grid, hyperparameters=fixed,
                            restarts=restarts, out=out, device=device, quiet=quiet)
    if grid or restarts > 1:
        return fit_selection(family, dataset, grid, training, restarts=restarts, out=out,
                             hyperparameters=fixed, device=device, quiet=quiet)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise QtomoError(f"restarts must be an integer >= 1; got {restarts!r}")
    torch.manual_seed(training.seed)
    model = build(family, L=dataset.L, K=dataset.K, povm=dataset.povm, **fixed)
    result = fit(model, dataset, training, out=out, device=device, quiet=quiet)
    return Selection(result, {}, training.seed, [({}, training.seed, result.best_val_nll)])
