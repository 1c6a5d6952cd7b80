"""What ``qtomo evaluate`` shows of an :class:`~qtomo.evaluate.Evaluation`: the text table, the
JSON file and the figure (matplotlib, no pyplot state, Agg canvas).

The figure's panels: ⟨Z_0 Z_r⟩ against r and ⟨X_i⟩ against i for the reference state, the model
and the data alone (error bars: one standard error); the requested Pauli strings; the quantum
fidelity (as built, of the closest physical state, of the top eigenvector, or the Monte Carlo
value with its band) with the block fidelities against the block's centre (model, data alone and
exact samples of the target, error bars: bootstrap standard errors); and, when the training
history JSON written by :func:`qtomo.train.fit` exists, the training and validation NLL per epoch
with the entropy H(P) of the test records (the floor the NLL approaches).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from qtomo.atomic import atomic_output
from qtomo.blocks import BlockFigures, ReducedState
from qtomo.errors import QtomoError
from qtomo.evaluate import EnsembleEvaluation, Evaluation, z_score
from qtomo.jsontext import json_text
from qtomo.metrics import Estimate
from qtomo.reconstruct import ContractedFidelity, QuantumFidelity, SampledFidelity

__all__ = ["check_plot_path", "compare", "format_ensemble_report", "format_report",
           "plot_comparison", "plot_evaluation", "training_time", "write_json"]

_HEADER = ("quantity", "model", "data only", "reference", "z (model - data)")
_STYLES = {"model": ("C0", "o"), "data": ("C1", "s")}


# --------------------------------------------------------------------------- text


def _pm(estimate: Estimate | None, exact: bool = False) -> str:
    if estimate is None:
        return "—"
    if exact:
        return f"{estimate.value:.6g} (exact)"
    return f"{estimate.value:.6g} ± {estimate.stderr:.2g}"


def _z(model: Estimate, data: Estimate) -> str:
    return f"{z_score({'model': model.as_dict(), 'data': data.as_dict()}):+.2f}"


def _fidelity_label(mixed: bool) -> str:
    """Uhlmann's F(ρ, σ) for a mixed target (a noisy dataset), ⟨ψ|ρ|ψ⟩ for a pure one."""
    return ("quantum fidelity F(rho, sigma), mixed target" if mixed
            else "quantum fidelity <psi|rho|psi>")


def _fidelity_cell(fidelity: QuantumFidelity | SampledFidelity | ContractedFidelity) -> str:
    if isinstance(fidelity, ContractedFidelity):
        return f"{fidelity.value:.6g} (exact, contracted)"
    if isinstance(fidelity, QuantumFidelity):
        text = f"{fidelity.value:.6g} (exact)"
        if not fidelity.physical:
            text += " UNPHYSICAL"
        return text
    return _pm(fidelity.estimate)


def _observable_picks(L: int, *, z: bool = True,
                      xx: bool = True) -> list[tuple[str, str, int | tuple[int, int]]]:
    """The observables a table shows, as (label, name, index): ⟨X⟩ (and ⟨Z⟩) of the centre
    site, ⟨ZZ⟩ (and ⟨XX⟩) of the centre pair, and the end-to-end ⟨Z_0 Z_{L-1}⟩."""
    centre = (L - 1) // 2
    picks = [(f"<X_{centre}>", "X", centre)] + ([(f"<Z_{centre}>", "Z", centre)] if z else [])
    if L > 1:
        pair = (centre, centre + 1)
        picks.append((f"<Z_{centre} Z_{centre + 1}>", "ZZ", pair))
        if xx:
            picks.append((f"<X_{centre} X_{centre + 1}>", "XX", pair))
        picks.append((f"<Z_0 Z_{L - 1}>", "ZZ", (0, L - 1)))
    return picks


def format_report(evaluation: Evaluation) -> str:
    """The human-readable table of an evaluation: quantity, model ± err, data-only ± err,
    reference; then the provenance line and the notes."""
    classical, observables = evaluation.classical, evaluation.observables
    L = evaluation.data["L"]
    rows = [("NLL = E_P[-ln Q] (nats)", _pm(classical.nll), "—",
             "—" if classical.entropy is None else f"H(P) = {_pm(classical.entropy)}")]
    if classical.kl is not None:  # only from exact ln P, never estimated without it
        rows += [("KL(P||Q) (nats)", _pm(classical.kl), "—", "0"),
                 ("classical fidelity F_c", _pm(classical.classical_fidelity), "—", "1")]
    fidelity = evaluation.fidelity
    if fidelity is not None:
        mixed = isinstance(fidelity, QuantumFidelity) and fidelity.target == "mixed"
        rows.append((_fidelity_label(mixed), _fidelity_cell(fidelity), "—", "1"))
        if isinstance(fidelity, QuantumFidelity):
            rows.append(("  closest physical state (SGS)", f"{fidelity.projected:.6g}", "—", "1"))
            rows.append(("  top eigenvector of rho", f"{fidelity.top_eigenvector:.6g}", "—", "1"))
    if evaluation.reconstruction is not None:
        rec = evaluation.reconstruction
        rows.append(("smallest eigenvalue of rho", f"{rec.min_eigenvalue:.3g}", "—", ">= 0"))
        rows.append(("purity Tr rho^2", f"{rec.purity:.6g}", "—", "<= 1"))
    entanglement = evaluation.entanglement
    if entanglement is not None and L > 1:
        centre_bond = (L - 2) // 2
        reference_entropy = entanglement.reference
        rows.append((f"entanglement S at bond {centre_bond}|{centre_bond + 1} (nats)",
                     f"{entanglement.model[centre_bond]:.6g} (exact)", "—",
                     "—" if reference_entropy is None
                     else f"{reference_entropy[centre_bond]:.6g}"))
        difference = entanglement.as_dict()["max_abs_difference"]
        if difference is not None:
            rows.append(("  max over bonds |S_model − S_ref|", f"{difference:.3g}", "—", "0"))
    exact = observables.model.n_samples is None
    reference = observables.reference
    if observables.model.energy is not None:
        energy = reference.get("energy")
        rows.append(("energy <H>", _pm(observables.model.energy, exact),
                     _pm(observables.data.energy),
                     "—" if energy is None else f"{float(energy):.10g}",
                     _z(observables.model.energy, observables.data.energy)))
    for label, name, index in _observable_picks(L):
        value = reference.get(name)
        model, data = getattr(observables.model, name)[index], getattr(observables.data,
                                                                       name)[index]
        rows.append((label, _pm(model, exact), _pm(data),
                     "—" if value is None else f"{np.asarray(value)[index]:.6g}",
                     _z(model, data)))
    strings = reference.get("strings", {})
    for text, estimate in observables.model.strings.items():
        data = observables.data.strings[text]
        rows.append((f"<{text}>", _pm(estimate, exact), _pm(data),
                     "—" if text not in strings else f"{strings[text]:.6g}", _z(estimate, data)))
    rows += _block_rows(evaluation.reduced_states)
    lines = _table(_HEADER, [row if len(row) == len(_HEADER) else (*row, "") for row in rows])
    samples = observables.model.n_samples
    start, stop = evaluation.test_rows
    lines.append(
        f"model: {evaluation.model['family']} (ln Q {evaluation.model['log_prob']}); "
        f"test records: {classical.n_test} (rows [{start}, {stop})); model observables: "
        + ("exact, contracted from the state's tensors" if isinstance(
            evaluation.fidelity, ContractedFidelity) or evaluation.entanglement is not None
           else "exact sums over all K^L records" if samples is None else f"{samples} samples")
        + f"; data-only: {observables.data.n_samples} records")
    lines += [f"note: {warning}" for warning in evaluation.warnings]
    return "\n".join(lines)


def _block_cell(figures: BlockFigures | None, name: str) -> str:
    estimate = None if figures is None else getattr(figures, name)
    return _pm(estimate, figures is not None and figures.samples is None)


def _renyi_cell(figures: BlockFigures | None) -> str:
    """The Rényi-2 cell, flagged where it is negative: Tr ρ_A² > 1, which only an unphysical
    ρ_A (a negative eigenvalue) has."""
    cell = _block_cell(figures, "renyi2")
    if figures is not None and figures.renyi2.value < 0:
        cell += " UNPHYSICAL (Tr rho_A^2 > 1)"
    return cell


def _span(state: ReducedState) -> str:
    return f"sites {state.sites[0]}-{state.sites[-1]}"


def _mean_fidelity(figures: list[BlockFigures | None]) -> str:
    if figures[0] is None:
        return "—"
    return f"{np.mean([f.fidelity.value for f in figures]):.6g}"


def _block_rows(states: tuple[ReducedState, ...]) -> list[tuple[str, str, str, str]]:
    """Per block size: the worst and mean block fidelity, the worst trace distance, the smallest
    λ_min and the centre block's Rényi-2 entropy (reference column: exact samples of the target
    where the model side is sampled, else the exact value)."""
    rows = []
    for k in sorted({len(state.sites) for state in states}):
        group = [state for state in states if len(state.sites) == k]
        if group[0].model.fidelity is not None:
            worst = min(group, key=lambda state: state.model.fidelity.value)
            truth = worst.exact_samples
            rows.append((f"{k}-site block fidelity, worst ({_span(worst)})",
                         _block_cell(worst.model, "fidelity"), _block_cell(worst.data, "fidelity"),
                         "1" if truth is None else f"exact samples {_pm(truth.fidelity)}"))
            exact_mean = _mean_fidelity([state.exact_samples for state in group])
            rows.append((f"{k}-site block fidelity, mean of {len(group)}",
                         _mean_fidelity([state.model for state in group]),
                         _mean_fidelity([state.data for state in group]),
                         "1" if truth is None else f"exact samples {exact_mean}"))
            far = max(group, key=lambda state: state.model.trace_distance.value)
            rows.append((f"{k}-site trace distance, worst ({_span(far)})",
                         _block_cell(far.model, "trace_distance"),
                         _block_cell(far.data, "trace_distance"),
                         "0" if far.exact_samples is None
                         else f"exact samples {_pm(far.exact_samples.trace_distance)}"))
        low = min(group, key=lambda state: state.model.min_eigenvalue)
        rows.append((f"{k}-site smallest eigenvalue of rho_A ({_span(low)})",
                     f"{low.model.min_eigenvalue:.3g}",
                     "—" if low.data is None else f"{low.data.min_eigenvalue:.3g}", ">= 0"))
        centre = group[len(group) // 2]
        rows.append((f"{k}-site Renyi-2 entropy ({_span(centre)})",
                     _renyi_cell(centre.model), _renyi_cell(centre.data),
                     "—" if centre.reference_renyi2 is None
                     else f"{centre.reference_renyi2 + 0.0:.6g}"))  # + 0.0: no "-0"
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def format_ensemble_report(ensemble: EnsembleEvaluation) -> str:
    """The table of an ensemble: quantity, mean over the members, their spread (the standard
    deviation over members), the Monte Carlo error of the mean, data-only ± err, z, reference."""
    report = ensemble.as_dict()
    L = report["data"]["L"]

    def number(value, digits: str = ".6g") -> str:
        return "—" if value is None else format(float(value), digits)

    def row(label: str, entry: dict | None, index=None, data: dict | None = None,
            z=None, reference=None) -> tuple[str, ...]:
        def pick(value):
            return value if index is None or value is None else np.asarray(value)[index]

        cells = ["—", "—", "—"] if entry is None else [
            number(pick(entry["value"])), number(pick(entry.get("spread")), ".2g"),
            number(pick(entry["stderr"]), ".2g")]
        data_cell = "—" if data is None else (f"{number(pick(data['value']))} ± "
                                              f"{number(pick(data['stderr']), '.2g')}")
        return (label, *cells, data_cell, number(pick(z), ".2f"), number(pick(reference)))

    rows = [row("NLL (nats)", report["nll"])]
    if "kl" in report:  # measured data have no exact ln P, hence no KL or F_c
        rows += [row("KL(P||Q) (nats)", report["kl"]),
                 row("classical fidelity F_c", report["classical_fidelity"])]
    fidelity = report["quantum_fidelity"]
    if fidelity is not None:
        rows.append(row(_fidelity_label(fidelity.get("target") == "mixed"), fidelity,
                        reference=1.0))
        if "projected" in fidelity:
            rows.append(("  closest physical state (SGS)", number(fidelity["projected"]),
                         number(fidelity.get("projected_spread"), ".2g"), "—", "—", "—", "1"))
    observables = report["observables"]
    if observables["energy"] is not None:
        energy = observables["energy"]
        rows.append(row("energy <H>", energy["model"], data=energy["data"], z=energy["z"],
                        reference=energy["reference"]))
    for label, name, index in _observable_picks(L, xx=False):
        entry = observables[name]
        rows.append(row(label, entry["model"], index, entry["data"], entry["z"],
                        entry["reference"]))
    for text, entry in observables["strings"].items():
        rows.append(row(f"<{text}>", entry["model"], None, entry["data"], entry["z"],
                        entry["reference"]))
    lines = _table(("quantity", "ensemble mean", "spread", "MC error", "data only", "z",
                    "reference"), rows)
    ensemble_info = report["ensemble"]
    lines.append(f"ensemble of {ensemble_info['members']} {report['model']['family']} models "
                 f"({'bootstrap resamples' if ensemble_info['bootstrap'] else 'seeds'}); "
                 f"spread = standard deviation over the members; z = (model − data) / "
                 f"√(spread² + errors²)")
    lines += [f"note: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- JSON


def write_json(evaluation: Evaluation | EnsembleEvaluation,
               path: str | os.PathLike) -> Path | None:
    """Write ``evaluation.as_dict()`` as standard JSON (:func:`qtomo.jsontext.json_text`),
    atomically (temporary file + rename); ``"-"`` writes to standard output instead and returns
    None."""
    text = json_text(evaluation.as_dict()) + "\n"  # null plus a reason for inf and nan
    if str(path) == "-":
        sys.stdout.write(text)
        return None
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return path


# --------------------------------------------------------------------------- figure


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
    field_title = ("transverse field " if data.get("state") == "tfim" else "") + \
        r"$\langle X_i\rangle$"
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


# --------------------------------------------------------------------------- comparison


def _check_comparable(evaluations: Sequence[Evaluation], labels: Sequence[str]) -> None:
    if len(evaluations) < 2 or len(labels) != len(evaluations):
        raise QtomoError(f"a comparison needs two or more evaluations and one label each; got "
                         f"{len(evaluations)} evaluations and {len(labels)} labels")
    if len(set(labels)) != len(labels):
        raise QtomoError(f"comparison labels must differ; got {', '.join(labels)}")
    first = evaluations[0]
    for label, evaluation in zip(labels[1:], evaluations[1:], strict=True):
        if (evaluation.data.get("path"), evaluation.test_rows) != (first.data.get("path"),
                                                                   first.test_rows):
            raise QtomoError(f"{label} was evaluated on {evaluation.data.get('path')} rows "
                             f"{list(evaluation.test_rows)}, {labels[0]} on "
                             f"{first.data.get('path')} rows {list(first.test_rows)}; compare "
                             "models on the same test records")


def training_time(evaluation: Evaluation) -> float | None:
    """Seconds of training behind the evaluated model (Σ of the per-epoch wall times recorded
    in its checkpoint, across resumes), or None when the checkpoint records none.

    Example:
        >>> from types import SimpleNamespace
        >>> training_time(SimpleNamespace(model={"training": {"time_s": 12.5}}))
        12.5
    """
    seconds = (evaluation.model.get("training") or {}).get("time_s")
    return None if seconds is None else float(seconds)


def _raw_fidelity(fidelity) -> str:
    return "—" if fidelity is None else _fidelity_cell(fidelity)


def _physical_fidelity(fidelity) -> str:
    """F of the closest physical state: the SGS projection of an explicit ρ; a physical model's
    (contracted) value is its own."""
    if isinstance(fidelity, QuantumFidelity):
        return f"{fidelity.projected:.6g}"
    if isinstance(fidelity, ContractedFidelity):
        return f"{fidelity.value:.6g}"
    return "—"


def _min_eigenvalue(evaluation: Evaluation) -> str:
    if isinstance(evaluation.fidelity, QuantumFidelity):
        return f"{evaluation.fidelity.min_eigenvalue:.3g}"
    if evaluation.reconstruction is not None:
        return f"{evaluation.reconstruction.min_eigenvalue:.3g}"
    if isinstance(evaluation.fidelity, ContractedFidelity):
        return ">= 0 (by construction)"
    return "—"


def compare(evaluations: Sequence[Evaluation], labels: Sequence[str]) -> str:
    """One table of several models evaluated on the same test records (README "Comparing
    models"): a column per model, then the data-only estimate and the exact value.

    Rows: NLL, KL and classical fidelity F_c; the quantum fidelity of ρ as built and of the
    closest physical state, ρ's smallest eigenvalue λ_min; the energy and a few local
    observables (model ± error beside the data-only estimate and the reference); the worst
    and mean fidelity of the smallest blocks; parameters, epochs and training time.

    Args:
        evaluations: from :func:`qtomo.evaluate.evaluate`, all on the same dataset and test rows.
        labels: one column title per evaluation (e.g. the family names), all different.

    Returns:
        The table as text, ending with the provenance line.

    Raises:
        QtomoError: fewer than two evaluations, a label count that differs, repeated labels,
            or evaluations on different datasets or test rows.
    """
    _check_comparable(evaluations, labels)
    first = evaluations[0]
    classical = [evaluation.classical for evaluation in evaluations]
    observables = first.observables
    reference = observables.reference
    L = first.data["L"]

    def per_model(cell) -> list[str]:
        return [cell(evaluation) for evaluation in evaluations]

    entropy = next((c.entropy for c in classical if c.entropy is not None), None)
    rows = [("NLL = E_P[-ln Q] (nats)", *[_pm(c.nll) for c in classical], "—",
             "—" if entropy is None else f"H(P) = {_pm(entropy)}")]
    if any(c.kl is not None for c in classical):  # none for measured data or sample-only models
        rows.append(("KL(P||Q) (nats)", *[_pm(c.kl) for c in classical], "—", "0"))
    if any(c.classical_fidelity is not None for c in classical):
        rows.append(("classical fidelity F_c", *[_pm(c.classical_fidelity) for c in classical],
                     "—", "1"))
    if any(evaluation.fidelity is not None for evaluation in evaluations):
        mixed = any(isinstance(evaluation.fidelity, QuantumFidelity)
                    and evaluation.fidelity.target == "mixed" for evaluation in evaluations)
        rows += [(_fidelity_label(mixed) + ", rho as built",
                  *per_model(lambda e: _raw_fidelity(e.fidelity)), "—", "1"),
                 ("  closest physical state", *per_model(lambda e: _physical_fidelity(e.fidelity)),
                  "—", "1")]
    rows.append(("smallest eigenvalue of rho", *per_model(_min_eigenvalue), "—", ">= 0"))

    def observable_row(label: str, name: str, index=None) -> tuple[str, ...]:
        def at(value):
            return value if index is None else value[index]

        value = reference.get(name)
        return (label, *[_pm(at(getattr(e.observables.model, name)),
                             e.observables.model.n_samples is None) for e in evaluations],
                _pm(at(getattr(observables.data, name))),
                "—" if value is None else f"{float(at(np.asarray(value))):.6g}")

    if all(e.observables.model.energy is not None for e in evaluations):
        rows.append(observable_row("energy <H>", "energy"))
    rows += [observable_row(label, name, index)
             for label, name, index in _observable_picks(L, z=False)]
    rows += _block_comparison(evaluations)
    rows.append(("parameters", *per_model(lambda e: str(e.model.get("parameters", "—"))),
                 "—", "—"))
    rows.append(("epochs (best)", *per_model(_epochs), "—", "—"))
    rows.append(("training time", *per_model(
        lambda e: "—" if training_time(e) is None else f"{training_time(e):.1f} s"), "—", "—"))
    lines = _table(("quantity", *labels, "data only", "exact"), rows)
    start, stop = first.test_rows
    lines.append(f"test records: {classical[0].n_test} (rows [{start}, {stop}) of "
                 f"{first.data.get('path')}); data-only: {observables.data.n_samples} records")
    for label, evaluation in zip(labels, evaluations, strict=True):
        lines += [f"note ({label}): {warning}" for warning in evaluation.warnings]
    return "\n".join(lines)


def _epochs(evaluation: Evaluation) -> str:
    training = evaluation.model.get("training") or {}
    if "epochs_run" not in training:
        return "—"
    return f"{training['epochs_run']} ({training['best_epoch']})"


def _block_comparison(evaluations: Sequence[Evaluation]) -> list[tuple[str, ...]]:
    """Worst and mean fidelity of the smallest blocks, per model (data only from the first)."""
    states = [[s for s in e.reduced_states if s.model.fidelity is not None] for e in evaluations]
    if not all(states):
        return []
    k = min(len(state.sites) for state in states[0])
    groups = [[state for state in group if len(state.sites) == k] for group in states]
    worst = [min(group, key=lambda state: state.model.fidelity.value) for group in groups]
    data = groups[0][0].data is not None
    return [(f"{k}-site block fidelity, worst", *[_block_cell(w.model, "fidelity") for w in worst],
             _block_cell(min(groups[0], key=lambda s: s.data.fidelity.value).data, "fidelity")
             if data else "—", "1"),
            (f"{k}-site block fidelity, mean of {len(groups[0])}",
             *[_mean_fidelity([state.model for state in group]) for group in groups],
             _mean_fidelity([state.data for state in groups[0]]) if data else "—", "1")]


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
    _check_comparable(evaluations, labels)
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
