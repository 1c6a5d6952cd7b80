"""Ensembles: several models of the same records evaluated alike, each figure reported as the
mean over the members with one error bar, the spread over the members and the Monte Carlo error
of the mean in quadrature (docs/evaluate.md "Ensembles")."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qtomo.atomic import check_distinct
from qtomo.blocks import BlockFigures, ReducedState
from qtomo.data import Dataset, as_dataset
from qtomo.distribution import Distribution
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.evaluate import Evaluation, ObservableComparison, comparisons, evaluate, z_score
from qtomo.metrics import ClassicalMetrics
from qtomo.models.checkpoint import Checkpoint
from qtomo.observables import Observables
from qtomo.reconstruct import ContractedFidelity, QuantumFidelity, SampledFidelity

__all__ = ["EnsembleEvaluation", "ensemble_checkpoints", "evaluate_ensemble", "pooled"]


def ensemble_checkpoints(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The checkpoint files of an ensemble: the paths given, or the best checkpoints
    (``*.pt`` but not ``*.last.pt``) of a folder written by :func:`qtomo.train.fit_ensemble`.

    Raises:
        QtomoError: a path that does not exist, a folder without checkpoints, or one file
            given twice (a member twice would halve the spread).
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.glob("*.pt") if not p.name.endswith(".last.pt"))
            if not found:
                raise QtomoError(f"{path}: no checkpoints (*.pt) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise QtomoError(f"{path}: no such checkpoint or folder")
    check_distinct(files, "ensemble members")
    return files


@dataclass(frozen=True)
class EnsembleEvaluation:
    """The evaluations of several models of the same records (docs/evaluate.md "Ensembles").

    :meth:`as_dict` has the layout of one :meth:`Evaluation.as_dict`, with every figure
    replaced by its mean over the members: an estimate ``{"value", "stderr"}`` becomes
    ``{"value": mean, "stderr": error, "spread": s, "mc_stderr": σ̄}`` (:func:`pooled`: the
    error √(s² + σ̄²) is the one of :meth:`combined`, the table and the figure); any other
    float figure x keeps the mean and gains ``x_spread``. Observables carry ``z``.
    ``ensemble`` lists the members.
    """

    members: tuple[Evaluation, ...]
    paths: tuple[str, ...]

    def combined(self) -> Evaluation:
        """One :class:`Evaluation` of the member means, each estimate's error the spread over
        the members and the Monte Carlo error of the mean added in quadrature (for figures);
        exact fidelities are averaged, ρ is not kept."""
        first = self.members[0]
        fidelities = [member.fidelity for member in self.members]
        fidelity: QuantumFidelity | SampledFidelity | None = None
        if all(isinstance(f, QuantumFidelity) for f in fidelities):
            def mean(name: str) -> float:
                return float(np.mean([getattr(f, name) for f in fidelities]))

            fidelity = QuantumFidelity(
                value=mean("value"), physical=all(f.physical for f in fidelities),
                min_eigenvalue=mean("min_eigenvalue"), projected=mean("projected"),
                top_eigenvector=mean("top_eigenvector"), target=fidelities[0].target)
        elif all(isinstance(f, ContractedFidelity) for f in fidelities):
            fidelity = ContractedFidelity(float(np.mean([f.value for f in fidelities])))
        elif all(isinstance(f, SampledFidelity) for f in fidelities):
            fidelity = SampledFidelity(_pool([f.estimate for f in fidelities]),
                                       fidelities[0].samples, fidelities[0].method)
        models = [member.observables.model for member in self.members]
        observables = Observables(
            **{name: _pool([getattr(m, name) for m in models]) for name in ("X", "Z", "XX", "ZZ")},
            energy=None if first.observables.model.energy is None
            else _pool([m.energy for m in models]),
            strings={text: _pool([m.strings[text] for m in models])
                     for text in first.observables.model.strings},
            n_samples=first.observables.model.n_samples)
        columns = {name: [getattr(member.classical, name) for member in self.members]
                   for name in ("nll", "kl", "classical_fidelity", "entropy")}
        classical = ClassicalMetrics(  # None where not computed (measured data, gan)
            **{name: None if None in column else _pool(column)
               for name, column in columns.items()},
            n_test=first.classical.n_test, samples=first.classical.samples)
        return Evaluation(classical, first.test_rows, fidelity, None,
                          ObservableComparison(observables, first.observables.data,
                                               first.observables.reference),
                          {**first.model, "family": f"{first.model['family']} ensemble of "
                                                    f"{len(self.members)}"},
                          first.data, tuple(sorted({w for m in self.members for w in m.warnings})),
                          _pool_reduced_states([member.reduced_states for member in self.members]),
                          target=first.target, data_fidelity=first.data_fidelity)

    def as_dict(self) -> dict[str, Any]:
        report = _combine([member.as_dict() for member in self.members])
        for entry in comparisons(report["observables"]):
            entry["z"] = z_score(entry)
        report["model"] = {**self.members[0].model, "path": None}
        options = [(member.model.get("training") or {}).get("options") or {}
                   for member in self.members]
        report["ensemble"] = {"members": len(self.members), "paths": list(self.paths),
                              "bootstrap": all(bool(o.get("bootstrap")) for o in options)}
        report["warnings"] = sorted({w for member in self.members for w in member.warnings})
        return report


def _pool_reduced_states(members: list[tuple[ReducedState, ...]]) -> tuple[ReducedState, ...]:
    """Block by block, the members' model figures pooled as by :func:`_pool` (the data and
    exact-sample sides are the same for every member: same records, same seed)."""
    def pooled(figures: list[BlockFigures]) -> BlockFigures:
        def estimate(name: str) -> Estimate | None:
            if getattr(figures[0], name) is None:
                return None
            return _pool([getattr(f, name) for f in figures])

        return BlockFigures(estimate("fidelity"), estimate("trace_distance"),
                            float(np.mean([f.min_eigenvalue for f in figures])),
                            estimate("renyi2"), figures[0].samples)

    return tuple(dataclasses.replace(states[0], model=pooled([s.model for s in states]))
                 for states in zip(*members, strict=True))


def pooled(values: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, error, spread, Monte Carlo error) of M members' figures ``values`` (M, …) with
    their standard errors ``errors`` (M, …): spread s = std over the members (ddof = 1), Monte
    Carlo error of the mean σ̄ = √Σσ_m² / M, error = √(s² + σ̄²) — the one error bar of an
    ensemble's figure, table and JSON.

    Example:
        >>> mean, error, spread, mc = pooled(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
        >>> float(mean), float(error), float(spread), float(mc)
        (2.0, 1.4142135623730951, 1.4142135623730951, 0.0)
    """
    values, errors = np.asarray(values, dtype=float), np.asarray(errors, dtype=float)
    spread = np.std(values, axis=0, ddof=1)
    mc = np.sqrt(np.sum(errors**2, axis=0)) / len(values)
    return values.mean(axis=0), np.sqrt(spread**2 + mc**2), spread, mc


def _pool(estimates: list[Estimate]) -> Estimate:
    """Mean of M member estimates ± the ensemble's error (:func:`pooled`)."""
    mean, error, _, _ = pooled(np.asarray([e.value for e in estimates], dtype=float),
                               np.asarray([e.stderr for e in estimates], dtype=float))
    return Estimate.of(mean, error)


def _is_float_figure(column: list) -> bool:
    if any(value is None or isinstance(value, bool) for value in column):
        return False
    try:
        return np.asarray(column).dtype.kind == "f"
    except ValueError:  # ragged
        return False


def _combine(column: list) -> Any:
    """The member-wise mean of one figure (see :class:`EnsembleEvaluation`)."""
    first = column[0]
    if isinstance(first, dict):
        combined: dict[str, Any] = {}
        estimate = "value" in first and "stderr" in first
        for key in first:
            values = [member.get(key) for member in column]
            combined[key] = _combine(values)
            if key != "stderr" and _is_float_figure(values):
                spread = np.std(np.asarray(values, dtype=float), axis=0, ddof=1)
                combined["spread" if estimate and key == "value" else f"{key}_spread"] = (
                    spread.tolist() if spread.ndim else float(spread))
        if estimate and _is_float_figure([member["stderr"] for member in column]):
            _, error, _, mc = pooled(np.asarray([member["value"] for member in column]),
                                     np.asarray([member["stderr"] for member in column]))
            combined["stderr"] = error.tolist() if error.ndim else float(error)
            combined["mc_stderr"] = mc.tolist() if mc.ndim else float(mc)
        return combined
    if isinstance(first, list) and first and all(isinstance(item, dict) for item in first):
        return [_combine(list(items)) for items in zip(*column, strict=True)]
    if _is_float_figure(column):
        mean = np.mean(np.asarray(column, dtype=float), axis=0)
        return mean.tolist() if mean.ndim else float(mean)
    if isinstance(first, bool):
        return all(column)
    return first


def evaluate_ensemble(checkpoints: Sequence[Checkpoint | Distribution],
                      dataset: Dataset | str | os.PathLike,
                      **options: Any) -> EnsembleEvaluation:
    """:func:`evaluate` every member on the same dataset with the same options and seed.

    Args:
        checkpoints: two or more checkpoints (or models) of the same L, K and POVM, e.g. the
            folder of :func:`qtomo.train.fit_ensemble` through :func:`ensemble_checkpoints`.
        dataset: as for :func:`evaluate`.
        **options: the keyword arguments of :func:`evaluate`.

    Raises:
        QtomoError: fewer than two checkpoints, two checkpoints of one file (the spread would
            be understated), and everything :func:`evaluate` raises.
    """
    if len(checkpoints) < 2:
        raise QtomoError(f"an ensemble needs at least 2 checkpoints; got {len(checkpoints)}")
    check_distinct([member.path for member in checkpoints if isinstance(member, Checkpoint)],
                   "ensemble members")
    dataset = as_dataset(dataset)
    members = tuple(evaluate(checkpoint, dataset, **options) for checkpoint in checkpoints)
    # a checkpoint is named by its file, a model in memory by its family
    return EnsembleEvaluation(members, tuple(
        str(member.path) if isinstance(member, Checkpoint) else member.family
        for member in checkpoints))
