"""Evaluate a trained model against the dataset it models: the API behind ``qtomo evaluate``.

:func:`evaluate` compares a model Q with the true distribution P of a dataset (README
"Evaluation and reconstruction") and returns a typed :class:`Evaluation`; the text table, JSON and
figure are made from it in :mod:`qtomo.report`. What it computes, each in its own module:

- **classical metrics** (:mod:`qtomo.metrics`) on test records a ~ P that carry exact ln P(a):
  NLL, KL(P‖Q), F_c and the entropy H(P). Test records are the rows the model was not trained
  on (:func:`unseen_rows`);
- **quantum fidelity** (:mod:`qtomo.reconstruct`) to the reference state: ⟨ψ|ρ|ψ⟩ with ρ built
  explicitly for L ≤ :data:`~qtomo.distribution.ENUMERATE_MAX_L` (with its diagnostics and the
  closest physical state), Monte Carlo E_Q[⟨ψ|Q_a|ψ⟩] through ``/reference/mps`` (or
  ``/reference/psi``) above. For a noisy dataset the target is the mixed state σ
  (``/reference/rho``, or ⊗E applied to the noiseless reference): Uhlmann's (Tr √(√σ ρ √σ))²,
  for L ≤ ENUMERATE_MAX_L only;
- **observables** (:mod:`qtomo.observables`) ⟨X_i⟩, ⟨Z_i⟩, ⟨X_iX_j⟩, ⟨Z_iZ_j⟩, the TFIM energy and
  any Pauli strings, from the model (exact sums where K^L ≤ 4^10, else Monte Carlo) and from the
  measured records alone (model-free, over all N records; for Pauli-basis records only those
  measuring each operator, :mod:`qtomo.pauli_records`, docs/measured-data.md), beside the
  dataset's reference values. For an
  autoregressive model above the exact limit the Pauli strings, and the fidelity of a GHZ
  target, use masked ancestral sampling (:mod:`qtomo.products`);
- **reduced states of blocks** (:mod:`qtomo.blocks`) of k contiguous sites at any L, from the
  model, the data alone and exact samples of the target, against the target's reduced state;
- for a **physical model** (:class:`~qtomo.distribution.PhysicalState`: ``mps``, ``lpdo``) the
  state itself is contracted instead (docs/models.md "Physical model families"): the fidelity
  exactly at any L, the observables without Monte Carlo error, ρ straight from the tensors for small
  L, the blocks' reduced states, and the entanglement entropy at every bond beside
  ``/reference/entropy``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qtomo.blocks import (
    BlockCounts,
    ReducedState,
    block_sites,
    default_block_sizes,
    reduced_states,
    target_reduced_states,
)
from qtomo.data import Dataset, as_dataset
from qtomo.data_fidelity import DataFidelity, affordable_records, data_fidelity
from qtomo.distribution import (
    ENUMERATE_MAX_L,
    Autoregressive,
    Distribution,
    FullState,
    PhysicalState,
    distribution_device,
    enumerable,
    enumerate_probabilities,
    sample_batches,
)
from qtomo.errors import CheckpointError, QtomoError
from qtomo.estimate import Estimate
from qtomo.jsontext import plain
from qtomo.metrics import (
    ClassicalMetrics,
    classical_metrics,
    sampled_classical_metrics,
)
from qtomo.models.checkpoint import Checkpoint, load_checkpoint
from qtomo.observables import (
    Observables,
    estimate_observables,
    exact_observables,
    model_observables,
    parse_pauli_string,
)
from qtomo.pauli_records import (
    BasisWeightedLogProb,
    basis_observables,
    dataset_warnings,
    has_settings,
    records_incomplete,
    sign_calibration,
    training_basis_frequencies,
)
from qtomo.products import ghz_fidelity, masked_expectation, operator_tables, pauli_operators
from qtomo.reconstruct import (
    ContractedFidelity,
    FidelityWarning,
    QuantumFidelity,
    Reconstruction,
    SampledFidelity,
    density_matrix,
    mps_fidelity,
)
from qtomo.states.exact import expectation_pauli_string
from qtomo.states.hamiltonians import TFIM, hamiltonian_from_attrs
from qtomo.states.mps import (
    block_density_matrix,
    pauli_expectation,
    pure_state_fidelity,
    state_density_matrix,
    state_references,
    vector_to_mps,
)
from qtomo.states.mps_sampler import MPSDistribution
from qtomo.targets import Target, dataset_target, parse_target

__all__ = ["METHODS", "Entanglement", "Evaluation", "ObservableComparison", "comparisons",
           "evaluate", "unseen_rows", "z_score"]

#: ``auto`` = exact sums where K^L is enumerable (:func:`qtomo.distribution.enumerable`) or
#: the model holds its whole ρ (:class:`qtomo.distribution.FullState`), Monte Carlo above
METHODS = ("auto", "exact", "monte-carlo")
DEFAULT_SAMPLES = 100_000
_CHUNK = 2**16
#: the attributes of a dataset repeated in an evaluation's ``data`` summary
_DATA_ATTRS = ("state", "J", "h", "boundary", "method", "seed", "chi_max", "depolarizing",
               "dephasing", "amplitude_damping", "source", "readout_error")


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


def check_rows(rows: Any, dataset: Dataset) -> tuple[int, int]:
    """``rows`` as (start, stop) if they are integers with 0 ≤ start < stop ≤ N (the dataset's
    records), else QtomoError: a figure over rows that do not exist would be NaN or mislabelled
    (``rows=(0, 10**6)`` of 400 records was once reported as such)."""
    valid = (isinstance(rows, tuple | list) and len(rows) == 2
             and all(isinstance(row, int | np.integer) and not isinstance(row, bool)
                     for row in rows) and 0 <= rows[0] < rows[1] <= dataset.n_records)
    if not valid:
        raise QtomoError(f"rows must be integers 0 <= start < stop <= {dataset.n_records} (the "
                         f"records of {dataset.path}); got {rows!r}")
    return int(rows[0]), int(rows[1])


def _same_path(recorded: str, path: Path) -> bool:
    try:
        return os.path.samefile(recorded, path)
    except OSError:
        return False


def _check_compatible(model: Distribution, povm_name: str | None, dataset: Dataset) -> None:
    problems = [f"{name} = {getattr(model, name)} (data: {getattr(dataset, name)})"
                for name in ("L", "K") if getattr(model, name) != getattr(dataset, name)]
    if povm_name is not None and povm_name != dataset.povm.name:
        problems.append(f"POVM {povm_name!r} (data: {dataset.povm.name!r})")
    if problems:
        raise CheckpointError(f"model does not match {dataset.path}: {', '.join(problems)}")


def _check_same_elements(own_povm: Any, config: dict | None, dataset: Dataset) -> None:
    """CheckpointError if the POVM under the data's name has other elements than the model's:
    a Born-rule family's own POVM (``own_povm``), or, for a checkpoint, the readout errors of
    the data it was trained on (the POVM ``pauli6+readout`` differs from file to file)."""
    if own_povm is not None and not isinstance(own_povm, str) and own_povm != dataset.povm:
        raise CheckpointError(f"model does not match {dataset.path}: its POVM {own_povm!r} has "
                              f"other elements than the data's {dataset.povm!r}")
    trained = ((config or {}).get("data") or {}).get("attrs")
    if trained is None:
        return
    errors = [np.asarray(attrs.get("readout_error", []), dtype=float)
              for attrs in (trained, dataset.attrs)]
    if errors[0].shape != errors[1].shape or not np.allclose(*errors, rtol=0, atol=1e-12):
        raise CheckpointError(f"model does not match {dataset.path}: it was trained on records "
                              f"with readout errors {errors[0].tolist() or 'none'}, the data "
                              f"have {errors[1].tolist() or 'none'} (POVM {dataset.povm.name!r} "
                              f"with other elements)")


@dataclass(frozen=True)
class ObservableComparison:
    """The same observables from the model, from the data alone, and of the reference state.

    Attributes:
        model: the model's estimates (exact sums: ``n_samples`` None and stderr 0).
        data: the model-free estimates over the measured records.
        reference: the dataset's exact values by name (``X``, ``Z`` (L,), ``XX``, ``ZZ`` (L, L),
            ``energy``), and ``strings``: {text: value} for the requested Pauli strings; a name
            is absent where the dataset has no reference.
    """

    model: Observables
    data: Observables
    reference: dict[str, Any]

    def as_dict(self) -> dict:
        """``{name: {"model", "data", "reference"}}`` for X, Z, XX, ZZ, energy and each string,
        plus ``method``, ``model_samples``, ``data_records``."""
        def side_by_side(model: Estimate | None, data: Estimate | None, reference) -> dict:
            return {"model": None if model is None else model.as_dict(),
                    "data": None if data is None else data.as_dict(),
                    "reference": None if reference is None
                    else np.asarray(reference, dtype=float).tolist()}

        report = {name: side_by_side(getattr(self.model, name), getattr(self.data, name),
                                     self.reference.get(name))
                  for name in ("X", "Z", "XX", "ZZ")}
        report["energy"] = (None if self.model.energy is None else
                            side_by_side(self.model.energy, self.data.energy,
                                         self.reference.get("energy")))
        strings = self.reference.get("strings", {})
        report["strings"] = {text: side_by_side(estimate, self.data.strings[text],
                                                strings.get(text))
                             for text, estimate in self.model.strings.items()}
        for entry in comparisons(report):
            entry["z"] = z_score(entry)
        report["method"] = "exact" if self.model.n_samples is None else "monte-carlo"
        report["model_samples"] = self.model.n_samples
        report["data_records"] = self.data.n_samples
        return report


def comparisons(observables: dict) -> list[dict]:
    """The ``{"model", "data", "reference"}`` entries of an observables report."""
    entries = [observables[name] for name in ("X", "Z", "XX", "ZZ", "energy")
               if observables.get(name) is not None]
    return entries + list(observables["strings"].values())


def z_score(entry: dict) -> float | list | None:
    """(model − data) / √(σ_model² + σ_data²) of one observables entry: how many standard
    errors the model's value lies from the model-free one (σ_model of an ensemble includes the
    spread over its members, :func:`qtomo.ensemble.pooled`); 0 where both are exact and equal
    (the diagonal of XX and ZZ), NaN where an estimate is refused (not measured), None without a
    data-only estimate.

    Example:
        >>> z_score({"model": {"value": 1.0, "stderr": 0.3}, "data": {"value": 0.5, "stderr": 0.4}})
        1.0
    """
    model, data = entry["model"], entry["data"]
    if model is None or data is None:
        return None
    difference = np.asarray(model["value"], float) - np.asarray(data["value"], float)
    scale = np.sqrt(np.asarray(model["stderr"], float) ** 2
                    + np.asarray(data["stderr"], float) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, difference / np.where(scale > 0, scale, 1.0), 0.0)
    z = np.where(np.isnan(difference), np.nan, z)  # a refused (not measured) estimate
    return z.tolist() if z.ndim else float(z)


@dataclass(frozen=True)
class Entanglement:
    """Von Neumann entanglement entropy S_b = −Σ λ² ln λ² (nats) at each bond b | b+1 of a pure
    physical model's state, beside the dataset's ``/reference/entropy`` (None without one)."""

    model: np.ndarray
    reference: np.ndarray | None

    def as_dict(self) -> dict:
        """``{"model": [L−1], "reference": [L−1] or None, "max_abs_difference"}``."""
        reference = None if self.reference is None else np.asarray(self.reference, float)
        return {"model": np.asarray(self.model, float).tolist(),
                "reference": None if reference is None else reference.tolist(),
                "max_abs_difference": None if reference is None or reference.size == 0
                else float(np.abs(self.model - reference).max())}


@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` computes, typed; :meth:`as_dict` gives the JSON of
    ``qtomo evaluate --json`` (docs/evaluate.md "Evaluation and reconstruction").

    Attributes:
        classical: NLL, KL, F_c, H(P) on the test rows.
        test_rows: ``[start, stop)`` of the test records in the dataset.
        fidelity: exact (small L) or Monte Carlo fidelity to the reference state; None without one.
        reconstruction: the explicit ρ_model (small L), else None.
        observables: model, data-only and reference observables.
        model: summary of the model (family, L, K, POVM, ``log_prob`` exact or estimate, …).
        data: summary of the dataset (path, L, K, POVM, N, state parameters).
        warnings: what the reader of the numbers must know.
        reduced_states: the blocks' reduced states (model, data alone, exact samples).
        entanglement: the bond entropies of a pure physical model's state, else None.
        target: the target's ``{"spec", "L", "pure"}``, None without one.
        data_fidelity: the data-only estimate of ⟨ψ|ρ|ψ⟩ (:mod:`qtomo.data_fidelity`), None
            without a pure target.
    """

    classical: ClassicalMetrics
    test_rows: tuple[int, int]
    fidelity: QuantumFidelity | SampledFidelity | ContractedFidelity | None
    reconstruction: Reconstruction | None
    observables: ObservableComparison
    model: dict[str, Any]
    data: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())
    reduced_states: tuple[ReducedState, ...] = field(default=())
    entanglement: Entanglement | None = None
    target: dict | None = None
    data_fidelity: DataFidelity | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``nll``, ``kl``, ``classical_fidelity``, ``quantum_fidelity``,
        ``observables``, ``n_test``, ``model``, ``data``, ``entropy``, ``test_rows``,
        ``density_matrix`` (small L), ``reduced_states``, ``entanglement_entropy`` (pure
        physical models) and ``warnings``; every estimate ``{"value", "stderr"}``."""
        report = {**self.classical.as_dict(),
                  "quantum_fidelity": None if self.fidelity is None else self.fidelity.as_dict(),
                  "observables": self.observables.as_dict(),
                  "model": self.model, "data": self.data, "test_rows": list(self.test_rows),
                  "target": self.target, "data_fidelity": None if self.data_fidelity is None
                  else self.data_fidelity.as_dict()}
        if self.reconstruction is not None:
            exact_fidelity = self.fidelity if isinstance(self.fidelity, QuantumFidelity) else None
            report["density_matrix"] = self.reconstruction.diagnostics(exact_fidelity)
        report["reduced_states"] = [state.as_dict() for state in self.reduced_states]
        if self.entanglement is not None:
            report["entanglement_entropy"] = self.entanglement.as_dict()
        report["warnings"] = list(self.warnings)
        return report


def evaluate(model: Checkpoint | Distribution | str | os.PathLike,
             dataset: Dataset | str | os.PathLike, *,
             samples: int = DEFAULT_SAMPLES, method: str = "auto",
             pauli_strings: Sequence[str] = (), rows: tuple[int, int] | None = None,
             seed: int = 0, batch_size: int = _CHUNK, quiet: bool = True,
             blocks: Sequence[int] | None = None,
             target: Target | str | None = None) -> Evaluation:
    """Classical metrics, quantum fidelity and observables of a model against a dataset.

    Args:
        model: a :class:`~qtomo.models.checkpoint.Checkpoint` (its config supplies the POVM
            check, the rows not trained on and the provenance), or any :class:`Distribution`
            (an optional ``povm`` attribute is checked), e.g. the truth
            :class:`~qtomo.states.exact.ExactDistribution`, or a checkpoint file's path.
        dataset: the measured state (:func:`qtomo.data.read_dataset`, or a dataset file's
            path); without ``/log_prob``
            (measured data) KL and F_c are left out, without a reference state the fidelity.
        samples: model samples for Monte Carlo observables and fidelity.
        method: ``"auto"`` (exact where K^L ≤ 4^10, :func:`qtomo.distribution.enumerable`,
            or for a :class:`~qtomo.distribution.FullState`), ``"exact"`` (L ≤
            ENUMERATE_MAX_L) or ``"monte-carlo"``.
        pauli_strings: extra observables such as ``"X0 Z3 Z4"``.
        rows: test rows ``[start, stop)`` for the classical metrics; default :func:`unseen_rows`.
        seed: seed of the model's sampling generator.
        batch_size: records per forward pass / per sampling call.
        quiet: no progress bars.
        blocks: sizes k of the contiguous blocks whose reduced states are compared
            (:func:`qtomo.blocks.block_sites`; () for none; None: the default sizes that fit
            L). A physical model's blocks are contracted from its tensors, a network's come
            from the exact table where it is enumerated, else from its samples (with errors).
        target: the state the fidelities refer to: a :class:`~qtomo.targets.Target` or a
            specification for :func:`~qtomo.targets.parse_target` (``"ghz"``, ``"tfim:h=1"``,
            a file, …); default the dataset's ``/reference``.

    Returns:
        :class:`Evaluation`.

    Raises:
        QtomoError: model and data disagree on L, K or POVM; bad Pauli
            string; ``method="exact"`` above the limit; unknown method; a bad target.
    """
    if isinstance(model, str | os.PathLike):
        model = load_checkpoint(model)
    run = _Request.resolve(model, as_dataset(dataset), samples=samples, method=method,
                           pauli_strings=pauli_strings, rows=rows, seed=seed,
                           batch_size=batch_size, quiet=quiet, blocks=blocks, target=target)
    notes: list[str] = []
    classical = _classical_figures(run, notes)
    if isinstance(run.model, PhysicalState):
        figures = _by_contraction(run)
    elif run.exact:
        figures = _by_enumeration(run, notes)
    else:
        figures = _by_sampling(run, notes)
    data_obs, states = _data_figures(run, figures.blocks, notes)
    dataset, chosen = run.dataset, run.chosen
    data_fidelity = _data_fidelity(chosen, dataset, notes)
    return Evaluation(
        classical=classical,
        test_rows=(int(run.test_rows[0]), int(run.test_rows[1])),
        fidelity=figures.fidelity,
        reconstruction=figures.reconstruction,
        observables=ObservableComparison(figures.observables, data_obs, _references(run)),
        model=_model_summary(run.model, run.checkpoint, run.povm_name),
        data={"path": str(dataset.path), "L": dataset.L, "K": dataset.K,
              "povm": dataset.povm.name, "n_records": dataset.n_records,
              **{key: plain(value) for key, value in dataset.attrs.items()
                 if key in _DATA_ATTRS}},
        warnings=tuple(dataset_warnings(dataset)) + tuple(notes),
        reduced_states=states,
        entanglement=figures.entanglement,
        target=None if chosen is None else chosen.as_dict(),
        data_fidelity=data_fidelity,
    )


@dataclass(frozen=True)
class _Request:
    """What one :func:`evaluate` call works with, resolved and checked before any work: the
    model and its checkpoint, the records, the method, the target and the blocks."""

    model: Distribution
    checkpoint: Checkpoint | None
    dataset: Dataset
    povm_name: str | None
    exact: bool  # sums over all K^L records
    dense: bool  # dense 2^L states (targets, a physical model's ρ), no enumeration needed
    strings: dict[str, dict[int, str]]
    pauli_strings: tuple[str, ...]
    chosen: Target | None
    block_list: list
    test_rows: tuple[int, int]
    samples: int
    seed: int
    batch_size: int
    quiet: bool
    hamiltonian: TFIM | None
    #: the model's sampling generator, seeded with ``seed``, shared by every use in turn
    generator: torch.Generator

    @classmethod
    def resolve(cls, model: Checkpoint | Distribution, dataset: Dataset, *, samples: int,
                method: str, pauli_strings: Sequence[str], rows: tuple[int, int] | None,
                seed: int, batch_size: int, quiet: bool, blocks: Sequence[int] | None,
                target: Target | str | None) -> _Request:
        checkpoint = model if isinstance(model, Checkpoint) else None
        config = checkpoint.config if checkpoint is not None else None
        model = checkpoint.model if checkpoint is not None else model
        own_povm = model.povm
        povm_name = config["povm"] if config is not None else (
            own_povm if own_povm is None or isinstance(own_povm, str) else own_povm.name)
        _check_compatible(model, povm_name, dataset)
        _check_same_elements(own_povm, config, dataset)
        if method not in METHODS:
            raise QtomoError(f"unknown evaluation method {method!r}; expected one of "
                             f"{', '.join(METHODS)}")
        exact = method == "exact" or (method == "auto" and (
            enumerable(dataset.L, dataset.K) or isinstance(model, FullState)))
        if exact and dataset.L > ENUMERATE_MAX_L:
            raise QtomoError(f"exact evaluation enumerates K^L records and needs L <= "
                             f"{ENUMERATE_MAX_L}; got L = {dataset.L} (use --method monte-carlo)")
        if not model.has_log_prob and method == "exact":
            raise QtomoError(f"the {model.family} model has no log_prob, and exact evaluation "
                             f"sums Q(a) over all K^L records; use --method auto or monte-carlo")
        return cls(
            model=model, checkpoint=checkpoint, dataset=dataset, povm_name=povm_name,
            exact=exact and model.has_log_prob,
            dense=dataset.L <= ENUMERATE_MAX_L and method != "monte-carlo",
            strings={text: parse_pauli_string(text, dataset.L) for text in pauli_strings},
            pauli_strings=tuple(pauli_strings), chosen=_chosen_target(target, dataset),
            block_list=block_sites(dataset.L, default_block_sizes(dataset.L) if blocks is None
                                   else blocks),
            test_rows=check_rows(rows, dataset) if rows is not None else unseen_rows(dataset,
                                                                                     config),
            samples=samples, seed=seed, batch_size=batch_size, quiet=quiet,
            hamiltonian=hamiltonian_from_attrs(dataset.attrs, dataset.L),
            generator=torch.Generator(device=distribution_device(model)).manual_seed(seed))

    @property
    def dense_target(self) -> np.ndarray | None:
        """ψ, or ρ of a mixed target (a noisy state: docs/simulate.md "Noisy states"), where
        dense states are affordable."""
        return self.chosen.dense() if self.chosen is not None and self.dense else None

    @property
    def pure_mps(self) -> list[np.ndarray] | None:
        """The MPS of a pure target (any L), else None."""
        return list(self.chosen.mps) if self.chosen is not None and self.chosen.pure else None


@dataclass(frozen=True)
class _ModelFigures:
    """The quantum figures of a model, however they were obtained (contraction, enumeration or
    sampling): its fidelity to the target, ρ where built, observables, what its blocks'
    reduced states come from, and the bond entropies of a physical state."""

    fidelity: QuantumFidelity | SampledFidelity | ContractedFidelity | None
    reconstruction: Reconstruction | None
    observables: Observables
    blocks: Any  # {block: ρ_A}, the probability table, or BlockCounts of samples
    entanglement: Entanglement | None = None


def _classical_figures(run: _Request, notes: list[str]) -> ClassicalMetrics:
    """NLL, KL and F_c on the test rows (exact ln Q, an estimate, or a histogram of samples)."""
    model, dataset = run.model, run.dataset
    test_records = dataset.iter_chunks(_CHUNK, *run.test_rows)
    if not dataset.has_log_prob:
        notes.append("measured data (no exact ln P per record): KL(P||Q) and the classical "
                     "fidelity are left out; the NLL is the model's cross-entropy on held-out "
                     "rows, and model vs data-only observables (z column) show what it learned")
    if not model.has_log_prob:
        notes.append(f"the {model.family} model has no log_prob (samples only): skipped NLL, "
                     f"KL, the exact ρ and its closest physical state; observables and the "
                     f"quantum fidelity are Monte Carlo over {run.samples} samples")
        classical = sampled_classical_metrics(model, test_records, samples=run.samples,
                                              generator=run.generator,
                                              batch_size=run.batch_size)
        notes.append(
            f"F_c from a histogram of {run.samples} model samples (biased low by the finite "
            f"histogram)" if classical.classical_fidelity is not None else
            f"skipped F_c: a histogram over K^L = {dataset.K}^{dataset.L} records is too large")
        return classical
    if not model.exact_log_prob:
        notes.append("this model's ln Q is an estimate (not exact): NLL, KL, F_c and the exact "
                     "sums are estimates too")
    if isinstance(model, PhysicalState) and has_settings(dataset.povm) and not \
            dataset.has_log_prob:  # fair NLL on measured bases (docs/measured-data.md)
        notes.append("the NLL of this physical model includes the basis distribution of the "
                     "training records (per-site frequencies), as a network learns it; its "
                     "Born rule alone assumes uniform bases")
        model = BasisWeightedLogProb(model, training_basis_frequencies(dataset, run.test_rows))
    return classical_metrics(model, test_records, batch_size=run.batch_size)


def _by_contraction(run: _Request) -> _ModelFigures:
    """A physical state's figures, all contracted from its tensors (no Monte Carlo error)."""
    tensors = run.model.tensors()
    fidelity, reconstruction, observables, entanglement = _physical_state_figures(
        tensors, run.dense_target, run.pure_mps, run.dataset.reference.get("entropy"),
        run.hamiltonian, run.strings, dense=run.dense)
    blocks = {block: block_density_matrix(tensors, block) for block in run.block_list}
    return _ModelFigures(fidelity, reconstruction, observables, blocks, entanglement)


def _by_enumeration(run: _Request, notes: list[str]) -> _ModelFigures:
    """Exact sums over all K^L records: ρ = Σ_a Q(a) Q_a, its fidelity and observables."""
    povm = run.dataset.povm
    probabilities = enumerate_probabilities(run.model, batch_size=run.batch_size,
                                            quiet=run.quiet)
    reconstruction = density_matrix(probabilities, povm)
    fidelity = None
    if run.dense_target is not None:
        fidelity = reconstruction.fidelity(run.dense_target)
        if not fidelity.physical:
            notes.append(f"ρ_model has a negative eigenvalue ({fidelity.min_eigenvalue:.3g}):"
                         f" the fidelity {fidelity.value:.6g} is not that of a state; the "
                         f"closest physical state has {fidelity.projected:.6g}")
    elif not reconstruction.is_physical:
        notes.append(f"ρ_model is unphysical: smallest eigenvalue "
                     f"{reconstruction.min_eigenvalue:.3g}, purity {reconstruction.purity:.4g}"
                     f" (a state has eigenvalues ≥ 0 and purity ≤ 1); its observables are "
                     f"not those of a state")
    observables = exact_observables(probabilities, povm, hamiltonian=run.hamiltonian,
                                    pauli_strings=run.pauli_strings)
    return _ModelFigures(fidelity, reconstruction, observables, probabilities)


def _by_sampling(run: _Request, notes: list[str]) -> _ModelFigures:
    """Monte Carlo over the model's samples: observables, block counts and the fidelity to a
    pure target (masked sampling for a GHZ target of an autoregressive model)."""
    model, povm, chosen, pure_mps = run.model, run.dataset.povm, run.chosen, run.pure_mps
    generator = run.generator
    blocks = BlockCounts(run.block_list, run.dataset.K)
    observables = model_observables(model, povm, samples=run.samples,
                                    hamiltonian=run.hamiltonian,
                                    pauli_strings=run.pauli_strings,
                                    batch_size=run.batch_size, generator=generator,
                                    quiet=run.quiet, on_batch=blocks.add)
    autoregressive = isinstance(model, Autoregressive)
    if autoregressive and run.strings:
        observables = _masked_strings(model, povm, observables, run.strings, run.samples,
                                      run.batch_size, generator)
    noise = run.dataset.noise
    if pure_mps is None and (noise.active or chosen is not None):
        mixed = (f"the measured state is mixed ({noise} on every qubit)" if noise.active
                 else f"the target {chosen.spec!r} is mixed")
        notes.append(f"{mixed}: a Monte Carlo fidelity needs a pure target, so none is given "
                     f"without the exact sums (L <= {ENUMERATE_MAX_L}); the reduced states of "
                     f"blocks compare with the dataset's reference")
    fidelity = None
    if autoregressive and pure_mps is not None and chosen.is_ghz:
        fidelity = SampledFidelity(ghz_fidelity(model, povm, samples=run.samples,
                                                batch_size=run.batch_size,
                                                generator=generator),
                                   run.samples, method="masked")
    elif pure_mps is not None:
        with warnings.catch_warnings():  # reported below, in the notes
            warnings.simplefilter("ignore", FidelityWarning)
            estimate = mps_fidelity(model, pure_mps, povm, samples=run.samples,
                                    generator=generator, quiet=run.quiet)
        fidelity = SampledFidelity(estimate, run.samples)
    if fidelity is not None and not fidelity.reliable:
        notes.append(f"Monte Carlo quantum fidelity {fidelity.estimate} has a relative error "
                     f"above 10 %; treat it as unreliable")
    return _ModelFigures(fidelity, None, observables, blocks)


def _data_figures(run: _Request, model_blocks,
                  notes: list[str]) -> tuple[Observables, tuple[ReducedState, ...]]:
    """The data-only observables (one pass over the file, which also counts the blocks) and
    the reduced states of the blocks, model beside data and target."""
    dataset, povm = run.dataset, run.dataset.povm
    data_blocks = BlockCounts(run.block_list, dataset.K)

    def records():  # one pass over the file feeds the observables and the block counts
        for outcomes, _ in dataset.iter_chunks(_CHUNK):
            data_blocks.add(outcomes)
            yield outcomes

    calibration = sign_calibration(povm, dataset.L)
    if calibration is not None:  # only the records measuring each operator (any bases)
        data_obs, refused = basis_observables(records(), dataset.L, hamiltonian=run.hamiltonian,
                                              pauli_strings=run.pauli_strings,
                                              calibration=calibration)
        notes += [f"data-only {note}" for note in refused]
    else:
        data_obs = estimate_observables(records(), povm, hamiltonian=run.hamiltonian,
                                        pauli_strings=run.pauli_strings)
    if dataset.attrs.get("biased_bases") and not isinstance(run.model, PhysicalState):
        notes.append(f"the {run.model.family} model learned the records' biased basis "
                     f"distribution, while ρ = Σ_a Q(a) Q_a assumes uniform bases: the model's "
                     f"ρ, fidelity and observables are not those of the measured state (fit "
                     f"mps or lpdo)")
    incomplete = records_incomplete(dataset) is not None
    if incomplete and run.block_list:  # the dual-frame ρ̂_A assumes uniform, complete bases
        notes.append("data-only reduced states of blocks are left out: they need every "
                     "qubit's basis uniform and independent, and these records are not")
    states = _reduced_states(run.block_list, povm, dataset, model_blocks,
                             None if incomplete else data_blocks, run.samples, run.seed)
    return data_obs, states


def _references(run: _Request) -> dict:
    """The reference values of the observables (the dataset's, or contracted from an imported
    MPS), and of the Pauli strings where the target is dense."""
    reference = run.dataset.reference
    if "mps" in reference and "X" not in reference:  # an imported MPS only (genmodel)
        reference = {**state_references(reference["mps"], run.hamiltonian), **reference}
    references = {name: reference[name] for name in ("X", "Z", "XX", "ZZ", "energy")
                  if name in reference}
    if run.dense_target is not None:
        references["strings"] = {text: expectation_pauli_string(run.dense_target, string)
                                 for text, string in run.strings.items()}
    return references


def _chosen_target(target: Target | str | None, dataset: Dataset) -> Target | None:
    """The target of the fidelities: ``target`` (parsed for the dataset's L) or, without one,
    the dataset's reference (:func:`qtomo.targets.dataset_target`); QtomoError for another L."""
    if target is None:
        return dataset_target(dataset)
    chosen = parse_target(target, dataset.L) if isinstance(target, str) else target
    if chosen.L != dataset.L:
        raise QtomoError(f"target {chosen.spec!r} has L = {chosen.L}; the data have L = "
                         f"{dataset.L}")
    return chosen


def _data_fidelity(chosen: Target | None, dataset: Dataset,
                   notes: list[str]) -> DataFidelity | None:
    """The data-only fidelity over all records (None without a pure target, with a note for a
    mixed one)."""
    if chosen is None:
        return None
    if not chosen.pure:
        notes.append(f"the target {chosen.spec!r} is mixed: the data-only fidelity needs a pure "
                     f"target and is left out")
        return None
    affordable = affordable_records(chosen)
    if affordable < dataset.n_records:
        notes.append(f"the data-only fidelity uses the first {affordable} of "
                     f"{dataset.n_records} records (the contraction through the target's MPS "
                     f"is capped at about 10 s)")
    return data_fidelity((outcomes for outcomes, _ in dataset.iter_chunks(_CHUNK)), chosen,
                         dataset.povm, max_records=affordable)


def _physical_state_figures(
    tensors: list[np.ndarray], target: np.ndarray | None, pure: list[np.ndarray] | None,
    reference_entropy: np.ndarray | None, hamiltonian: TFIM | None,
    strings: dict[str, dict[int, str]], *, dense: bool,
) -> tuple[QuantumFidelity | ContractedFidelity | None, Reconstruction | None, Observables,
           Entanglement | None]:
    """Fidelity, ρ (if ``dense``), observables and bond entropies of a physical model's state,
    all by contraction of its tensors (no Monte Carlo error).

    ``target`` is the dense reference (vector, or density matrix of a noisy state) used with
    ``dense``; ``pure`` the reference MPS contracted with the tensors otherwise (None for a noisy
    dataset: no fidelity above the dense limit).
    """
    values = state_references(tensors, hamiltonian)

    def exact(value) -> Estimate:
        value = np.asarray(value, dtype=np.float64)
        return Estimate.exact(value)

    observables = Observables(
        X=exact(values["X"]), Z=exact(values["Z"]), XX=exact(values["XX"]),
        ZZ=exact(values["ZZ"]), energy=None if hamiltonian is None else exact(values["energy"]),
        strings={text: exact(pauli_expectation(tensors, string))
                 for text, string in strings.items()},
        n_samples=None)
    reconstruction = Reconstruction(state_density_matrix(tensors)) if dense else None
    fidelity: QuantumFidelity | ContractedFidelity | None = None
    if reconstruction is not None:
        fidelity = None if target is None else reconstruction.fidelity(target)
    elif pure is not None:
        fidelity = ContractedFidelity(pure_state_fidelity(pure, tensors))
    entanglement = (Entanglement(values["entropy"], reference_entropy)
                    if "entropy" in values else None)
    return fidelity, reconstruction, observables, entanglement


def _masked_strings(model: Autoregressive, povm, observables: Observables,
                    strings: dict[str, dict[int, str]], samples: int, batch_size: int,
                    generator: torch.Generator) -> Observables:
    """The model's Pauli strings re-estimated by masked ancestral sampling (lower variance)."""
    masked = {text: masked_expectation(model, operator_tables(povm, pauli_operators(string)),
                                       samples=samples, batch_size=batch_size,
                                       generator=generator)
              for text, string in strings.items()}
    return dataclasses.replace(observables, strings=masked)


def _reduced_states(blocks: list, povm, dataset: Dataset,
                    model_blocks: BlockCounts | np.ndarray | dict[tuple[int, ...], np.ndarray],
                    data: BlockCounts | None, samples: int, seed: int
                    ) -> tuple[ReducedState, ...]:
    """Block figures of the model, of the data alone and, when the model side is sampled, of
    as many exact samples of the target (the projection's bias at that N), drawn through the
    reference MPS (measured with E†(M_k) for a noisy state, docs/simulate.md "Noisy states")."""
    if not blocks:
        return ()
    reference, noise = dataset.reference, dataset.noise
    exact_samples = None
    mps = reference.get("mps")
    if mps is None and "psi" in reference:
        mps = vector_to_mps(reference["psi"], canonical="right")  # the sampler's form
    if isinstance(model_blocks, BlockCounts) and mps is not None:
        truth = MPSDistribution(mps, noise.heisenberg_povm(povm) if noise.active else povm)
        generator = torch.Generator().manual_seed(seed + 1)
        exact_samples = BlockCounts.from_records(
            sample_batches(truth, samples, _CHUNK, generator), blocks, dataset.K)
    return reduced_states(blocks, povm, model=model_blocks, data=data,
                          exact_samples=exact_samples,
                          targets=target_reduced_states(reference, blocks, noise), seed=seed)


def _model_summary(model: Distribution, checkpoint: Checkpoint | None, povm_name) -> dict:
    summary = {
        "family": model.family,
        "L": model.L,
        "K": model.K,
        "povm": povm_name,
        "log_prob": ("none" if not model.has_log_prob
                     else "exact" if model.exact_log_prob else "estimate"),
    }
    if isinstance(model, torch.nn.Module):
        summary["parameters"] = sum(p.numel() for p in model.parameters())
    if checkpoint is not None:
        summary["path"] = str(checkpoint.path)
        summary["hyperparameters"] = checkpoint.config.get("hyperparameters")
        summary["training"] = checkpoint.config.get("training")
    return summary
