"""The figures of ``qtomo evaluate --plot`` and ``qtomo compare --plot`` (matplotlib, no pyplot
state, Agg canvas; docs/evaluate.md "Evaluation and reconstruction", "Comparing models").

The evaluation figure's panels: ⟨Z_0 Z_r⟩ against r and ⟨X_i⟩ against i for the reference state,
the model and the data alone (error bars: one standard error); the requested Pauli strings; the
quantum fidelity (as built, of the closest physical state, of the top eigenvector, or the Monte
Carlo value with its band) with the block fidelities against the block's centre (model, data
alone and exact samples of the target, error bars: bootstrap standard errors); and, when the
training history JSON written by :func:`qtomo.train.fit` exists, the training and validation NLL
per epoch with the entropy H(P) of the test records (the floor the NLL approaches).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from qtomo.atomic import atomic_output
from qtomo.blocks import ReducedState
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.evaluate import Evaluation
from qtomo.reconstruct import ContractedFidelity, QuantumFidelity, SampledFidelity
from qtomo.report import check_comparable
from qtomo.states.registry import x_term

__all__ = ["check_plot_path", "plot_comparison", "plot_evaluation"]

_STYLES = {"model": ("C0", "o"), "data": ("C1", "s")}


def check_plot_path(path: str | os.PathLike) -> str:
    """The image format matplotlib will write for ``path``'s suffix.

    Raises:
        QtomoError: for a suffix it cannot write.

    Example:
        >>> check_plot_path("runs/eval.PNG")
        'png'
    """
    suffix = Path(path).suffix.lstrip(".").lower()
    formats = FigureCanvasAgg.get_supported_filetypes()
    if suffix not in formats:
        raise QtomoError(f"cannot write a plot to {path}: expected a suffix among "
                         f"{', '.join('.' + name for name in sorted(formats))}")
    return suffix


def _series(axis, x: np.ndarray, model: Estimate, data: Estimate, reference, pick) -> None:
    """Reference line, model and data error bars of one observable family."""
    _error_bars(axis, x, [("model", model, *_STYLES["model"]),
                          ("data only", data, *_STYLES["data"])], reference, pick)


def _error_bars(axis, x: np.ndarray, sides: list[tuple[str, Estimate, str, str]], reference,
                pick) -> None:
    """Reference line and one set of error bars per (label, estimate, colour, marker), spread
    sideways by a little so that the bars do not hide each other."""
    if reference is not None:
        axis.plot(x, pick(np.asarray(reference)), "k-", lw=1.5, label="reference")
    offsets = 0.16 * (np.arange(len(sides)) - (len(sides) - 1) / 2)
    for offset, (label, estimate, color, marker) in zip(offsets, sides, strict=True):
        value, stderr = (pick(np.asarray(part)) for part in estimate)
        axis.errorbar(x + offset, value, yerr=stderr, fmt=marker, color=color, ms=4, capsize=2,
                      label=label)


def _fidelity_panel(axis, fidelity: QuantumFidelity | SampledFidelity | ContractedFidelity | None,
                    states: tuple[ReducedState, ...]) -> None:
    blocks = [state for state in states if state.model.fidelity is not None]
    if not blocks:
        _fidelity_bars(axis, fidelity)
        return
    # the whole state's fidelities as horizontal lines (a band for a Monte Carlo value) ...
    lowest = 1.0
    if isinstance(fidelity, QuantumFidelity):
        for value, style, label in ((fidelity.value, "-", "state, as built"),
                                    (fidelity.projected, "--", "state, closest physical"),
                                    (fidelity.top_eigenvector, ":", "state, top eigenvector")):
            axis.axhline(min(value, 1.0), color="C2", ls=style, lw=1.2, label=label)
            lowest = min(lowest, value)
    elif isinstance(fidelity, ContractedFidelity):
        axis.axhline(fidelity.value, color="C2", lw=1.2, label="state (contracted)")
        lowest = min(lowest, fidelity.value)
    elif fidelity is not None:
        value, stderr = fidelity.estimate
        axis.axhline(value, color="C2", lw=1.2, label=f"state ({fidelity.method})")
        axis.axhspan(value - stderr, value + stderr, color="C2", alpha=0.2)
        lowest = min(lowest, value)
    # ... and every block's fidelity against the block's centre, per block size
    for k in sorted({len(state.sites) for state in blocks}):
        group = [state for state in blocks if len(state.sites) == k]
        centre = np.array([np.mean(state.sites) for state in group])
        sides = [("model", [s.model for s in group], "C0"),
                 ("data only", [s.data for s in group], "C1"),
                 ("exact samples", [s.exact_samples for s in group], "0.5")]
        marker = "o^sDv"[k % 5]
        for offset, (label, figures, color) in zip((-0.1, 0.1, 0.0), sides, strict=True):
            if figures[0] is None:
                continue
            values = np.array([f.fidelity.value for f in figures])
            errors = np.array([f.fidelity.stderr for f in figures])
            axis.errorbar(centre + offset, values, yerr=errors, fmt=marker, color=color, ms=3,
                          capsize=1.5, lw=0.8, label=f"{k}-site blocks, {label}")
            lowest = min(lowest, float(np.min(values - errors)))
    axis.axhline(1.0, color="k", lw=1, ls="--")
    axis.set(xlabel="block centre (site)", ylabel="fidelity to the reference",
             title="quantum fidelity: state and blocks",
             ylim=(max(0.0, lowest - 0.02), 1.01))
    axis.legend(fontsize="x-small")


def _fidelity_bars(axis, fidelity: QuantumFidelity | SampledFidelity | ContractedFidelity
                   ) -> None:
    if isinstance(fidelity, ContractedFidelity):
        labels, values, errors = ["contracted"], [fidelity.value], [0.0]
    elif isinstance(fidelity, QuantumFidelity):
        labels = ["as built", "closest\nphysical", "top\neigenvector"]
        values = [fidelity.value, fidelity.projected, fidelity.top_eigenvector]
        errors = [0.0, 0.0, 0.0]
    else:
        labels = [fidelity.method]
        values, errors = [fidelity.estimate.value], [fidelity.estimate.stderr]
    x = np.arange(len(values))
    axis.bar(x, values, yerr=errors, color="C2", capsize=3)
    axis.axhline(1.0, color="k", lw=1, ls="--")
    axis.set_xticks(x, labels, fontsize="small")
    axis.set(ylabel="fidelity to the reference", title="quantum fidelity",
             ylim=(0, max(1.05, max(values) + 0.05)))


def _strings_panel(axis, evaluation: Evaluation) -> None:
    observables = evaluation.observables
    texts = list(observables.model.strings)
    x = np.arange(len(texts))
    references = observables.reference.get("strings", {})
    for offset, side in ((-0.1, "model"), (0.1, "data")):
        color, marker = _STYLES[side]
        estimates = [getattr(observables, side).strings[text] for text in texts]
        axis.errorbar(x + offset, [e.value for e in estimates], [e.stderr for e in estimates],
                      fmt=marker, color=color, ms=4, capsize=2,
                      label="data only" if side == "data" else side)
    if references:
        axis.plot(x, [references.get(text, np.nan) for text in texts], "k_", ms=14,
                  label="reference")
    axis.set_xticks(x, texts, fontsize="small", rotation=30)
    axis.set(ylabel="expectation value", title="Pauli strings", xlim=(-0.5, len(texts) - 0.5))
    axis.legend(fontsize="small")


def plot_evaluation(evaluation: Evaluation, path: str | os.PathLike,
                    history: str | os.PathLike | None = None) -> Path:
    """Write the evaluation figure, atomically.

    Args:
        evaluation: what :func:`qtomo.evaluate.evaluate` returned.
        path: output file; the format follows its suffix (``.png``, ``.pdf``, ``.svg``, …).
        history: the run's ``<stem>.history.json`` (see :func:`qtomo.train.run_paths`); the
            training panel is drawn when it exists.

    Returns:
        The path written.

    Raises:
        QtomoError: for a suffix matplotlib cannot write, or an unreadable history file.
    """
    path = Path(path)
    suffix = check_plot_path(path)
    epochs = _read_history(history)
    observables, data = evaluation.observables, evaluation.data
    panels = ["correlations", "field"]
    if observables.model.strings:
        panels.append("strings")
    if evaluation.fidelity is not None or any(
            state.model.fidelity is not None for state in evaluation.reduced_states):
        panels.append("fidelity")
    if epochs:
        panels.append("training")
    figure = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = dict(zip(panels, np.atleast_1d(figure.subplots(1, len(panels))), strict=True))
    L = data["L"]
    reference = observables.reference
    _series(axes["correlations"], np.arange(1, L), observables.model.ZZ, observables.data.ZZ,
            reference.get("ZZ"), lambda matrix: matrix[0, 1:])
    axes["correlations"].set(xlabel="distance r", ylabel=r"$\langle Z_0 Z_r\rangle$",
                             title=r"correlations $\langle Z_0 Z_r\rangle$")
    axes["correlations"].legend(fontsize="small")
    _series(axes["field"], np.arange(L), observables.model.X, observables.data.X,
            reference.get("X"), lambda vector: vector)
    field_title = " ".join(filter(None, (x_term(data.get("state")), r"$\langle X_i\rangle$")))
    axes["field"].set(xlabel="site i", ylabel=r"$\langle X_i\rangle$", title=field_title)
    if "strings" in axes:
        _strings_panel(axes["strings"], evaluation)
    if "fidelity" in axes:
        _fidelity_panel(axes["fidelity"], evaluation.fidelity, evaluation.reduced_states)
    if "training" in axes:
        _training_panel(axes["training"], [("", epochs, "C0", "C1")], evaluation.classical.entropy)
    method = "exact" if observables.model.n_samples is None else "monte-carlo"
    figure.suptitle(f"{data.get('state', 'measured data')}  L = {L}, {data['povm']}  —  model "
                    f"{evaluation.model['family']}, observables {method}", fontsize="medium")
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format=suffix, dpi=150)
    return path


def _training_panel(axis, runs: list[tuple[str, list[dict], str, str]],
                    entropy: Estimate | None) -> None:
    """Training (dashed when several runs share the panel) and validation NLL per epoch of each
    (label, epochs, train colour, validation colour), with the test records' entropy H(P)."""
    for label, epochs, train_color, val_color in runs:
        epoch = [row["epoch"] for row in epochs]
        prefix = f"{label} " if label else ""
        axis.plot(epoch, [row["train_nll"] for row in epochs], color=train_color,
                  ls="--" if len(runs) > 1 else "-", label=f"{prefix}train NLL")
        axis.plot(epoch, [row["val_nll"] for row in epochs], color=val_color, ls="-",
                  label=f"{prefix}validation NLL")
    if entropy is not None:
        axis.axhline(entropy.value, color="k", ls=":", lw=1, label="entropy H(P) (test)")
    axis.set(xlabel="epoch", ylabel="nats per record", title="training")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(fontsize="small")


def _read_history(history: str | os.PathLike | None) -> list[dict]:
    if history is None or not Path(history).is_file():
        return []
    try:
        return json.loads(Path(history).read_text())["epochs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise QtomoError(f"cannot read the training history {history}: {error}") from None


_COMPARISON_STYLES = (("C0", "o"), ("C3", "D"), ("C2", "^"), ("C4", "v"), ("C5", "P"))
_DATA_STYLE = ("0.45", "s")


def _comparison_fidelity_panel(axis, evaluations: Sequence[Evaluation], labels: Sequence[str],
                               styles) -> None:
    """Each model's whole-state fidelity as a horizontal line (solid: the closest physical
    state, dotted: ρ as built where it differs) and its smallest blocks' fidelities against the
    block centre, beside the data alone's."""
    lowest = 1.0
    for evaluation, label, (color, _) in zip(evaluations, labels, styles, strict=True):
        fidelity = evaluation.fidelity
        if isinstance(fidelity, QuantumFidelity):
            axis.axhline(fidelity.projected, color=color, lw=1.2,
                         label=f"{label}: state" + ("" if fidelity.physical
                                                    else ", closest physical"))
            lowest = min(lowest, fidelity.projected)
            if not fidelity.physical:
                axis.axhline(min(fidelity.value, 1.0), color=color, lw=1.2, ls=":",
                             label=f"{label}: state, rho as built (unphysical)")
        elif isinstance(fidelity, ContractedFidelity | SampledFidelity):
            value = (fidelity.value if isinstance(fidelity, ContractedFidelity)
                     else fidelity.estimate.value)
            axis.axhline(value, color=color, lw=1.2, label=f"{label}: state")
            lowest = min(lowest, value)
    groups = [[s for s in e.reduced_states if s.model.fidelity is not None] for e in evaluations]
    if all(groups):
        k = min(len(state.sites) for state in groups[0])
        groups = [[state for state in group if len(state.sites) == k] for group in groups]
        sides = [(f"{label}: {k}-site blocks", [s.model for s in group], *style)
                 for label, group, style in zip(labels, groups, styles, strict=True)]
        if groups[0][0].data is not None:
            sides.append((f"data only: {k}-site blocks", [s.data for s in groups[0]],
                          *_DATA_STYLE))
        centre = np.array([np.mean(state.sites) for state in groups[0]])
        offsets = 0.12 * (np.arange(len(sides)) - (len(sides) - 1) / 2)
        for offset, (label, figures, color, marker) in zip(offsets, sides, strict=True):
            values = np.array([f.fidelity.value for f in figures])
            errors = np.array([f.fidelity.stderr for f in figures])
            axis.errorbar(centre + offset, values, yerr=errors, fmt=marker, color=color, ms=3.5,
                          capsize=1.5, lw=0.8, label=label)
            lowest = min(lowest, float(np.min(values - errors)))
    axis.axhline(1.0, color="k", lw=1, ls="--")
    axis.set(xlabel="block centre (site)", ylabel="fidelity to the reference",
             title="quantum fidelity: state and blocks", ylim=(max(0.0, lowest - 0.02), 1.005))
    axis.legend(fontsize="x-small")


def plot_comparison(evaluations: Sequence[Evaluation], labels: Sequence[str],
                    path: str | os.PathLike,
                    histories: Sequence[str | os.PathLike | None] | None = None) -> Path:
    """Write the figure that compares several models on the same records, atomically.

    Panels: ⟨Z_0 Z_r⟩ against r and ⟨X_i⟩ against i (each model, the data alone, the
    reference; error bars one standard error); the quantum fidelity of each model's state and of
    its smallest blocks (with the data alone's blocks); and, where histories are given, the
    training (dashed) and validation (solid) NLL per epoch of each model with H(P).

    Args:
        evaluations: from :func:`qtomo.evaluate.evaluate`, all on the same test records.
        labels: one legend label per evaluation.
        path: output file; the format follows its suffix.
        histories: each model's ``<stem>.history.json`` (:func:`qtomo.train.run_paths`) or
            None; the training panel is drawn when one of them exists.

    Returns:
        The path written.

    Raises:
        QtomoError: as :func:`compare`; a suffix matplotlib cannot write; an unreadable history.
    """
    check_comparable(evaluations, labels)
    path = Path(path)
    suffix = check_plot_path(path)
    if len(evaluations) > len(_COMPARISON_STYLES):
        raise QtomoError(f"a comparison figure shows at most {len(_COMPARISON_STYLES)} models; "
                         f"got {len(evaluations)}")
    styles = _COMPARISON_STYLES[:len(evaluations)]
    runs = [_read_history(history) for history in (histories or [None] * len(evaluations))]
    first = evaluations[0]
    observables, L = first.observables, first.data["L"]
    panels = ["correlations", "field", "fidelity"] + (["training"] if any(runs) else [])
    figure = Figure(figsize=(4.4 * len(panels), 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = dict(zip(panels, figure.subplots(1, len(panels)), strict=True))

    def sides(name: str) -> list[tuple[str, Estimate, str, str]]:
        return ([(label, getattr(e.observables.model, name), *style)
                 for e, label, style in zip(evaluations, labels, styles, strict=True)]
                + [("data only", getattr(observables.data, name), *_DATA_STYLE)])

    reference = observables.reference
    _error_bars(axes["correlations"], np.arange(1, L), sides("ZZ"), reference.get("ZZ"),
                lambda matrix: matrix[0, 1:])
    axes["correlations"].set(xlabel="distance r", ylabel=r"$\langle Z_0 Z_r\rangle$",
                             title=r"correlations $\langle Z_0 Z_r\rangle$")
    axes["correlations"].legend(fontsize="small")
    _error_bars(axes["field"], np.arange(L), sides("X"), reference.get("X"), lambda v: v)
    axes["field"].set(xlabel="site i", ylabel=r"$\langle X_i\rangle$",
                      title=r"$\langle X_i\rangle$")
    _comparison_fidelity_panel(axes["fidelity"], evaluations, labels, styles)
    if "training" in axes:
        _training_panel(axes["training"],
                        [(label, epochs, color, color) for label, epochs, (color, _)
                         in zip(labels, runs, styles, strict=True) if epochs],
                        first.classical.entropy)
    figure.suptitle(f"{first.data.get('state', 'measured data')}  L = {L}, {first.data['povm']}, "
                    f"{first.data.get('n_records', '?')} records  —  " + " vs ".join(labels),
                    fontsize="medium")
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format=suffix, dpi=150)
    return path
