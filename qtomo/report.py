"""What ``qtomo evaluate`` and ``qtomo compare`` print and write of an
:class:`~qtomo.evaluate.Evaluation`: the text table and the JSON file (the figures are in
:mod:`qtomo.plots`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qtomo.atomic import atomic_output
from qtomo.blocks import BlockFigures, ReducedState
from qtomo.ensemble import EnsembleEvaluation
from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.evaluate import Evaluation, z_score
from qtomo.jsontext import json_text
from qtomo.reconstruct import ContractedFidelity, QuantumFidelity, SampledFidelity

__all__ = ["check_comparable", "compare", "format_ensemble_report", "format_report",
           "training_time", "write_json"]

_HEADER = ("quantity", "model", "data only", "reference", "z (model - data)")
_STYLES = {"model": ("C0", "o"), "data": ("C1", "s")}


# --------------------------------------------------------------------------- text


def _pm(estimate: Estimate | None, exact: bool = False) -> str:
    if estimate is None:
        return "—"
    if not np.all(np.isfinite(estimate.value)):  # refused: the notes say why
        return "not measured"
    if exact:
        return f"{estimate.value:.6g} (exact)"
    return f"{estimate.value:.6g} ± {estimate.stderr:.2g}"


def _z(model: Estimate, data: Estimate) -> str:
    z = z_score({'model': model.as_dict(), 'data': data.as_dict()})
    return "—" if z is None or not np.isfinite(z) else f"{z:+.2f}"


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
    if fidelity is not None or evaluation.data_fidelity is not None:
        mixed = isinstance(fidelity, QuantumFidelity) and fidelity.target == "mixed"
        rows.append((_fidelity_label(mixed), "—" if fidelity is None else _fidelity_cell(fidelity),
                     _data_fidelity_cell(evaluation), "1"))
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
    if evaluation.target is not None:
        lines.append(f"target: {evaluation.target['spec']} "
                     f"({'pure' if evaluation.target['pure'] else 'mixed'})")
    lines += [f"note: {warning}" for warning in evaluation.warnings]
    return "\n".join(lines)


def _data_fidelity_cell(evaluation: Evaluation) -> str:
    """The data-only fidelity ± err and the records it needs for ±0.01 (docs/
    targets-and-baselines.md), or "—"."""
    figure = evaluation.data_fidelity
    if figure is None:
        return "—"
    return f"{_pm(figure.estimate)} (N_0.01 = {figure.records_for_0_01:.3g})"


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
    """The table of an ensemble: quantity, mean over the members ± its error (the spread and
    the Monte Carlo error of the mean in quadrature, :func:`qtomo.ensemble.pooled`, as in the
    JSON and the figure), the spread (standard deviation over members), the Monte Carlo error
    of the mean, data-only ± err, z, reference."""
    report = ensemble.as_dict()
    L = report["data"]["L"]

    def number(value, digits: str = ".6g") -> str:
        return "—" if value is None else format(float(value), digits)

    def row(label: str, entry: dict | None, index=None, data: dict | None = None,
            z=None, reference=None) -> tuple[str, ...]:
        def pick(value):
            return value if index is None or value is None else np.asarray(value)[index]

        cells = ["—", "—", "—"] if entry is None else [
            f"{number(pick(entry['value']))} ± {number(pick(entry['stderr']), '.2g')}",
            number(pick(entry.get("spread")), ".2g"), number(pick(entry.get("mc_stderr")), ".2g")]
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
    lines = _table(("quantity", "ensemble mean ± error", "spread", "MC error", "data only", "z",
                    "reference"), rows)
    ensemble_info = report["ensemble"]
    lines.append(f"ensemble of {ensemble_info['members']} {report['model']['family']} models "
                 f"({'bootstrap resamples' if ensemble_info['bootstrap'] else 'seeds'}); "
                 f"error = √(spread² + MC error²), spread = standard deviation over the "
                 f"members; z = (model − data) / √(error² + data error²)")
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


# --------------------------------------------------------------------------- comparison


def check_comparable(evaluations: Sequence[Evaluation], labels: Sequence[str]) -> None:
    """Refuse a comparison of fewer than two evaluations, or one label short (``QtomoError``)."""
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
    """One table of several models evaluated on the same test records (docs/evaluate.md
    "Comparing models"): a column per model, then the data-only estimate and the exact value.

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
    check_comparable(evaluations, labels)
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
                  *per_model(lambda e: _raw_fidelity(e.fidelity)), _data_fidelity_cell(first),
                  "1"),
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
