"""Evaluate a trained model against the dataset it models: the API behind ``qtomo evaluate``.

:func:`evaluate` compares a model Q with the true distribution P of a dataset (SPEC §4, §5):

- **classical metrics** on test records a ~ P that carry exact ln P(a): NLL = E_P[−ln Q],
  KL(P‖Q) = E_P[ln P − ln Q], F_c = (E_P[√(Q/P)])², and the entropy H(P) = E_P[−ln P] (the
  NLL floor; NLL − H = KL). Test records are the rows the model was not trained on: for a
  checkpoint of this dataset its validation rows (also used to pick the best epoch, so slightly
  optimistic), all rows for any other dataset or for a bare model;
- **quantum fidelity** to the reference state: exact ⟨ψ|ρ|ψ⟩ with ρ built explicitly for
  L ≤ :data:`~qtomo.reconstruct.RECONSTRUCT_MAX_L` (with the smallest eigenvalue of ρ), Monte
  Carlo E_Q[⟨ψ|Q_a|ψ⟩] through ``/reference/mps`` (or ``/reference/psi``) above;
- **observables** ⟨X_i⟩, ⟨Z_i⟩, ⟨X_iX_j⟩, ⟨Z_iZ_j⟩, the TFIM energy and any Pauli strings, from
  the model (exact sums or Monte Carlo) and from the measured records alone (model-free,
  classical-shadow style, over all N records), beside the dataset's reference values.

The result is a JSON-ready dict; every estimate is ``{"value": …, "stderr": …}``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtomo.atomic import atomic_output
from qtomo.data import Dataset
from qtomo.errors import CheckpointError, QtomoError
from qtomo.metrics import Estimate, classical_metrics, model_device
from qtomo.models.checkpoint import Checkpoint, plain
from qtomo.reconstruct import (
    FIDELITY_WARN_RELATIVE,
    RECONSTRUCT_MAX_L,
    FidelityWarning,
    Observables,
    density_matrix,
    estimate_observables,
    exact_observables,
    model_observables,
    model_probabilities,
    mps_fidelity,
    mps_to_vector,
    parse_pauli_string,
    vector_to_mps,
)
from qtomo.states.exact import expectation_pauli_string
from qtomo.states.hamiltonians import TFIM

__all__ = ["METHODS", "evaluate", "format_report", "unseen_rows", "write_json"]

#: ``auto`` = exact sums for L ≤ RECONSTRUCT_MAX_L, Monte Carlo above
METHODS = ("auto", "exact", "monte-carlo")
DEFAULT_SAMPLES = 100_000
_CHUNK = 2**16


def unseen_rows(dataset: Dataset, config: dict | None) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``dataset`` that the checkpoint with ``config`` never trained on.

    The trainer trains on ``train_rows = [0, N − N_val)`` and validates on the rest. For the
    dataset it was trained on (same path, or same provenance attributes and size), the rows after
    ``train_rows`` are the test rows; for any other dataset, or without a config, all rows.

    Raises:
        QtomoError: if no rows are left (a checkpoint trained on the whole dataset).
    """
    data = (config or {}).get("data") or {}
    train = data.get("train_rows")
    same_file = data.get("path") is not None and _same_path(data["path"], dataset.path)
    same_data = (data.get("attrs") == plain(dataset.attrs)
                 and data.get("n_records") == dataset.n_records)
    if train is None or not (same_file or same_data):
        return 0, dataset.n_records
    start, stop = int(train[0]), int(train[1])
    if start > 0:
        return 0, start
    if stop >= dataset.n_records:
        raise QtomoError(f"{dataset.path}: the model was trained on all {dataset.n_records} rows; "
                         f"evaluate it on another dataset of the same state")
    return stop, dataset.n_records


def _same_path(recorded: str, path: Path) -> bool:
    try:
        return os.path.samefile(recorded, path)
    except OSError:
        return False


def _check_compatible(model, povm_name: str | None, dataset: Dataset) -> None:
    problems = [f"{name} = {getattr(model, name)} (data: {getattr(dataset, name)})"
                for name in ("L", "K") if getattr(model, name) != getattr(dataset, name)]
    if povm_name is not None and povm_name != dataset.povm.name:
        problems.append(f"POVM {povm_name!r} (data: {dataset.povm.name!r})")
    if problems:
        raise CheckpointError(f"model does not match {dataset.path}: {', '.join(problems)}")


def _hamiltonian(dataset: Dataset) -> TFIM | None:
    attrs = dataset.attrs
    if attrs.get("state") != "tfim":
        return None
    return TFIM(dataset.L, float(attrs["J"]), float(attrs["h"]), str(attrs["boundary"]))


def _side_by_side(model: Estimate | None, data: Estimate | None, reference) -> dict:
    return {
        "model": None if model is None else model.as_dict(),
        "data": None if data is None else data.as_dict(),
        "reference": None if reference is None else np.asarray(reference, dtype=float).tolist(),
    }


def _observables_report(model: Observables, data: Observables, reference: dict, psi,
                        pauli_strings: Sequence[str], L: int) -> dict:
    report = {name: _side_by_side(getattr(model, name), getattr(data, name),
                                  reference.get(name)) for name in ("X", "Z", "XX", "ZZ")}
    report["energy"] = (None if model.energy is None
                        else _side_by_side(model.energy, data.energy, reference.get("energy")))
    report["strings"] = {
        text: _side_by_side(model.strings[text], data.strings[text],
                            None if psi is None
                            else expectation_pauli_string(psi, parse_pauli_string(text, L)))
        for text in pauli_strings
    }
    report["method"] = "exact" if model.n_samples is None else "monte-carlo"
    report["model_samples"] = model.n_samples
    report["data_records"] = data.n_samples
    return report


def evaluate(model, dataset: Dataset, *, samples: int = DEFAULT_SAMPLES, method: str = "auto",
             pauli_strings: Sequence[str] = (), rows: tuple[int, int] | None = None,
             seed: int = 0, batch_size: int = _CHUNK, quiet: bool = True) -> dict[str, Any]:
    """Classical metrics, quantum fidelity and observables of a model against a dataset.

    Args:
        model: a :class:`~qtomo.models.checkpoint.Checkpoint` (its config supplies the POVM
            check, the rows not trained on and the provenance), a model, or any distribution
            with the model interface (``L``, ``K``, ``log_prob``, ``sample``; an optional
            ``povm`` is checked), e.g. the truth :class:`~qtomo.states.exact.ExactDistribution`.
        dataset: the measured state (:func:`qtomo.data.read_dataset`), with ``/log_prob``.
        samples: model samples for Monte Carlo observables and fidelity.
        method: ``"auto"`` (exact for L ≤ RECONSTRUCT_MAX_L), ``"exact"`` or ``"monte-carlo"``.
        pauli_strings: extra observables such as ``"X0 Z3 Z4"``.
        rows: test rows ``[start, stop)`` for the classical metrics; default :func:`unseen_rows`.
        seed: seed of the model's sampling generator.
        batch_size: records per forward pass / per sampling call.
        quiet: no progress bars.

    Returns:
        JSON-ready dict with the keys of SPEC §4: ``nll``, ``kl``, ``classical_fidelity``,
        ``quantum_fidelity`` (None without a reference state), ``observables`` (``X``, ``Z``,
        ``XX``, ``ZZ``, ``energy``, ``strings``: each ``{"model", "data", "reference"}``),
        ``n_test``, ``model``, ``data``; also ``entropy``, ``test_rows``, ``density_matrix``
        (exact path: trace, Hermiticity error, smallest eigenvalue) and ``warnings``.

    Raises:
        QtomoError: model and data disagree on L, K or POVM; no ``/log_prob``; bad Pauli
            string; ``method="exact"`` above the limit; unknown method.
    """
    checkpoint = model if isinstance(model, Checkpoint) else None
    config = checkpoint.config if checkpoint is not None else None
    model = checkpoint.model if checkpoint is not None else model
    povm = dataset.povm
    own_povm = getattr(model, "povm", None)
    povm_name = config["povm"] if config is not None else getattr(own_povm, "name", own_povm)
    _check_compatible(model, povm_name, dataset)
    if method not in METHODS:
        raise QtomoError(f"unknown evaluation method {method!r}; expected one of "
                         f"{', '.join(METHODS)}")
    if not dataset.has_log_prob:
        raise QtomoError(f"{dataset.path} has no /log_prob (exact ln P of each record); the "
                         f"classical metrics need it")
    exact = method == "exact" or (method == "auto" and dataset.L <= RECONSTRUCT_MAX_L)
    if exact and dataset.L > RECONSTRUCT_MAX_L:
        raise QtomoError(f"exact evaluation enumerates K^L records and needs L <= "
                         f"{RECONSTRUCT_MAX_L}; got L = {dataset.L} (use --method monte-carlo)")
    for text in pauli_strings:
        parse_pauli_string(text, dataset.L)  # fail before any expensive work
    start, stop = rows if rows is not None else unseen_rows(dataset, config)
    warnings_: list[str] = []
    exact_log_prob = bool(getattr(model, "exact_log_prob", True))
    if not exact_log_prob:
        warnings_.append("this model's ln Q is an estimate (not exact): NLL, KL, F_c and the "
                         "exact sums are estimates too")

    classical = classical_metrics(model, dataset.iter_chunks(_CHUNK, start, stop),
                                  batch_size=batch_size)
    hamiltonian = _hamiltonian(dataset)
    reference = dataset.reference
    psi = reference.get("psi")
    if psi is None and "mps" in reference and exact:
        psi = mps_to_vector(reference["mps"])
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)

    report: dict[str, Any] = {}
    if exact:
        probabilities = model_probabilities(model, batch_size=batch_size, quiet=quiet)
        reconstruction = density_matrix(probabilities, povm)
        report["density_matrix"] = {
            "trace": reconstruction.trace,
            "hermiticity_error": reconstruction.hermiticity_error,
            "min_eigenvalue": reconstruction.min_eigenvalue,
        }
        fidelity = None if psi is None else reconstruction.fidelity(psi).as_dict()
        if fidelity is not None and not fidelity["physical"]:
            warnings_.append(f"ρ_model has a negative eigenvalue ({fidelity['min_eigenvalue']:.3g})"
                             f": the fidelity {fidelity['value']:.6g} is not that of a state; the "
                             f"nearest physical state has {fidelity['projected']:.6g}")
        model_obs = exact_observables(probabilities, povm, hamiltonian=hamiltonian,
                                      pauli_strings=pauli_strings)
    else:
        model_obs = model_observables(model, povm, samples=samples, hamiltonian=hamiltonian,
                                      pauli_strings=pauli_strings, batch_size=batch_size,
                                      generator=generator, quiet=quiet)
        mps = reference.get("mps") or (None if psi is None else vector_to_mps(psi))
        fidelity = None
        if mps is not None:
            with warnings.catch_warnings():  # reported below, in the report's warnings
                warnings.simplefilter("ignore", FidelityWarning)
                estimate = mps_fidelity(model, mps, povm, samples=samples, generator=generator,
                                        quiet=quiet)
            fidelity = {**estimate.as_dict(), "method": "monte-carlo", "samples": samples}
            if not estimate.relative_error <= FIDELITY_WARN_RELATIVE:
                warnings_.append(f"Monte Carlo quantum fidelity {estimate} has a relative error "
                                 f"above {FIDELITY_WARN_RELATIVE:g}; treat it as unreliable")
    data_obs = estimate_observables(
        (outcomes for outcomes, _ in dataset.iter_chunks(_CHUNK)), povm,
        hamiltonian=hamiltonian, pauli_strings=pauli_strings)

    return {
        "nll": classical["nll"].as_dict(),
        "kl": {**classical["kl"].as_dict(), "direction": "KL(P||Q) = E_P[ln P - ln Q]"},
        "classical_fidelity": classical["classical_fidelity"].as_dict(),
        "quantum_fidelity": fidelity,
        "observables": _observables_report(model_obs, data_obs, reference, psi, pauli_strings,
                                           dataset.L),
        "n_test": classical["n_test"],
        "model": _model_summary(model, checkpoint, povm_name, exact_log_prob),
        "data": {"path": str(dataset.path), "L": dataset.L, "K": dataset.K,
                 "povm": dataset.povm.name, "n_records": dataset.n_records,
                 **{key: plain(value) for key, value in dataset.attrs.items()
                    if key in ("state", "J", "h", "boundary", "method", "seed", "chi_max")}},
        "entropy": classical["entropy"].as_dict(),
        "test_rows": [start, stop],
        **report,
        "warnings": warnings_,
    }


def _model_summary(model, checkpoint: Checkpoint | None, povm_name, exact_log_prob) -> dict:
    summary = {
        "family": getattr(model, "family", type(model).__name__),
        "L": model.L,
        "K": model.K,
        "povm": povm_name,
        "log_prob": "exact" if exact_log_prob else "estimate",
    }
    if isinstance(model, torch.nn.Module):
        summary["parameters"] = sum(p.numel() for p in model.parameters())
    if checkpoint is not None:
        summary["path"] = str(checkpoint.path)
        summary["hyperparameters"] = checkpoint.config.get("hyperparameters")
        summary["training"] = checkpoint.config.get("training")
    return summary


def write_json(report: dict, path: str | os.PathLike) -> Path:
    """Write an :func:`evaluate` report as JSON, atomically (temporary file + rename)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report, indent=1, allow_nan=True) + "\n")
    return path


def _pm(estimate: dict | None, exact: bool = False) -> str:
    if estimate is None:
        return "—"
    if exact:
        return f"{estimate['value']:.6g} (exact)"
    return f"{estimate['value']:.6g} ± {estimate['stderr']:.2g}"


def _element(entry: dict, side: str, index) -> dict | None:
    if entry is None or entry[side] is None:
        return None
    value, stderr = (np.asarray(entry[side][key])[index] for key in ("value", "stderr"))
    return {"value": float(value), "stderr": float(stderr)}


def format_report(report: dict) -> str:
    """The human-readable table of an :func:`evaluate` report: quantity, model ± err,
    data-only ± err, reference."""
    L = report["data"]["L"]
    rows = [("NLL = E_P[-ln Q] (nats)", _pm(report["nll"]), "—",
             f"H(P) = {_pm(report['entropy'])}"),
            ("KL(P||Q) (nats)", _pm(report["kl"]), "—", "0"),
            ("classical fidelity F_c", _pm(report["classical_fidelity"]), "—", "1")]
    fidelity = report["quantum_fidelity"]
    if fidelity is not None:
        text = _pm(fidelity, exact=fidelity["method"] == "exact")
        if fidelity["method"] == "exact" and not fidelity["physical"]:
            text += f" UNPHYSICAL (projected {fidelity['projected']:.6g})"
        rows.append(("quantum fidelity <psi|rho|psi>", text, "—", "1"))
    if "density_matrix" in report:
        rows.append(("smallest eigenvalue of rho",
                     f"{report['density_matrix']['min_eigenvalue']:.3g}", "—", ">= 0"))
    observables = report["observables"]
    exact = observables["method"] == "exact"
    if observables["energy"] is not None:
        energy = observables["energy"]
        rows.append(("energy <H>", _pm(energy["model"], exact), _pm(energy["data"]),
                     f"{energy['reference']:.10g}" if energy["reference"] is not None else "—"))
    centre = (L - 1) // 2
    picks = [(f"<X_{centre}>", "X", centre), (f"<Z_{centre}>", "Z", centre)]
    if L > 1:
        picks += [(f"<Z_{centre} Z_{centre + 1}>", "ZZ", (centre, centre + 1)),
                  (f"<X_{centre} X_{centre + 1}>", "XX", (centre, centre + 1)),
                  (f"<Z_0 Z_{L - 1}>", "ZZ", (0, L - 1))]
    for label, name, index in picks:
        entry = observables[name]
        reference = entry["reference"]
        rows.append((label, _pm(_element(entry, "model", index), exact),
                     _pm(_element(entry, "data", index)),
                     "—" if reference is None else f"{np.asarray(reference)[index]:.6g}"))
    for text, entry in observables["strings"].items():
        rows.append((f"<{text}>", _pm(entry["model"], exact), _pm(entry["data"]),
                     "—" if entry["reference"] is None else f"{entry['reference']:.6g}"))
    widths = [max(len(row[i]) for row in rows + [_HEADER]) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [_HEADER, *rows]]
    samples = observables["model_samples"]
    lines.append(
        f"model: {report['model']['family']} (ln Q {report['model']['log_prob']}); "
        f"test records: {report['n_test']} (rows [{report['test_rows'][0]}, "
        f"{report['test_rows'][1]})); model observables: "
        + ("exact sums over all K^L records" if samples is None else f"{samples} samples")
        + f"; data-only: {observables['data_records']} records")
    lines += [f"note: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


_HEADER = ("quantity", "model", "data only", "reference")
