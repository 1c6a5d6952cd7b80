"""Checkpoint files (docs/training.md "Checkpoint format"): one ``torch.save`` file of tensors and
plain data.

Layout of the saved dict (format version 1)::

    format         "qtomo.checkpoint"
    version        1
    qtomo_version  the writer's version
    config         family        registry name ("gru", …)
                   hyperparameters  dict of the family's config fields
                   L, K          qubits, outcomes per qubit
                   povm          POVM name of the training data
                   data          provenance of the training data: path (absolute),
                                 relative_path (from the checkpoint's folder), n_records, attrs (the
                                 dataset's root attributes), train_rows and val_rows ([start,
                                 stop) row ranges: the rows trained on and the validation rows)
                   training      summary: epochs run, best epoch, best val NLL, options, …
    state_dict     the model's parameters and buffers
    trainer        optimizer, scheduler and RNG states, epoch and history, for ``--resume``
                   (``None`` in a checkpoint not written by the trainer)

Only tensors, dicts, lists, strings and numbers are stored, so ``torch.load(weights_only=True)``
reads it without unpickling code. Files are written to a temporary name in the same folder and
renamed, so a crash never leaves a half-written checkpoint.

On load the whole structure is checked once against :data:`SCHEMA` (every field above that qtomo
reads: its type, the row ranges, the trainer state of a ``.last.pt``) and every floating-point
tensor must be finite, so that a crafted or damaged file is one :class:`CheckpointError` line
naming the field, never a traceback later in ``fit``, ``evaluate`` or ``info``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import qtomo
from qtomo.atomic import atomic_output, describe_leftover
from qtomo.errors import CheckpointError, QtomoError
from qtomo.guards import missing_file
from qtomo.jsontext import plain
from qtomo.models.base import QtomoModel
from qtomo.models.registry import build, hyperparameters
from qtomo.options import TrainOptions
from qtomo.povm import povm_from_elements

FORMAT = "qtomo.checkpoint"
VERSION = 1

# A tiny schema language: a label names a leaf type; {"key": spec} is a mapping whose keys are
# required ("key?" optional, "*" any other key); ("list", spec) a list, ("or none", spec) either.
_ROWS = ("rows",)
_TENSORS = {"*": "tensor"}
_STAGE = {"val_nll_before?": "number", "val_nll?": "number", "time_s?": "number", "*": "any"}
_REFINEMENT = {**_STAGE, "iterations?": "integer"}
_SWEEPS = {**_STAGE, "half_sweeps?": "integer"}
#: the stages after the epochs in a training summary: (key, what they are called, their unit)
_STAGES = (("full_batch", "full-batch Adam", "iterations"),
           ("sweeps", "sweeps", "half_sweeps"), ("refine", "L-BFGS refinement", "iterations"))
_TRAINING = {"epochs_run?": "integer", "best_epoch?": "integer", "best_val_nll?": "number",
             "stopped_early?": "bool", "options?": "mapping", "world_size?": "integer",
             "device?": "text", "n_parameters?": "integer", "time_s?": "number",
             "full_batch?": ("or none", _REFINEMENT), "sweeps?": ("or none", _SWEEPS),
             "refine?": ("or none", _REFINEMENT), "*": "any"}
SCHEMA = {
    "format": "text", "version": "integer", "qtomo_version?": "text",
    "config": {
        "family": "text", "hyperparameters": {"*": "scalar"}, "L": "integer", "K": "integer",
        "povm": "text",
        "data?": ("or empty", {"path?": "text", "relative_path?": "text",
                               "n_records?": "integer", "attrs?": "mapping",
                               "train_rows": _ROWS, "val_rows": _ROWS, "*": "any"}),
        "training?": _TRAINING,
    },
    "state_dict": _TENSORS,
    "trainer?": ("or none", {
        "epoch": "integer", "bad_epochs": "integer",
        "history": ("list", {"epoch": "integer", "train_nll": "number", "val_nll": "number",
                             "lr": "number", "time_s": "number"}),
        "best": {"epoch": "integer", "val_nll": "number", "state_dict": ("or none", _TENSORS)},
        "optimizer": {"state": "mapping", "param_groups": ("list", "mapping")},
        "scheduler": "mapping",
        "average": ("or none", _TENSORS),
        "rng": {"cpu": "tensor", "cuda": ("or none", "tensor")},
    }),
}
#: what resuming reads besides the trainer state: the run's data and options
RESUMABLE = {"config": {"data": {"path": "text", "n_records": "integer", "train_rows": _ROWS,
                                 "val_rows": _ROWS, "*": "any"},
                        "training": {"options": "mapping", "*": "any"}, "*": "any"},
             "*": "any"}
_LEAVES = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "text": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "scalar": lambda v: isinstance(v, int | float | str | bool),
    "mapping": lambda v: isinstance(v, dict),
    "tensor": lambda v: isinstance(v, torch.Tensor),
    "rows": lambda v: (isinstance(v, list) and len(v) == 2
                       and all(_LEAVES["integer"](x) for x in v) and v[0] <= v[1]),
    "any": lambda v: True,
}
_EXPECTED = {"integer": "an integer >= 0", "number": "a number", "text": "text",
             "bool": "true or false", "scalar": "a number or text", "mapping": "a mapping",
             "tensor": "a tensor", "rows": "a row range [start, stop] with 0 <= start <= stop"}


def check_schema(value: Any, spec: Any = None, where: str = "checkpoint") -> None:
    """Raise QtomoError unless ``value`` matches ``spec`` (default :data:`SCHEMA`).

    Example:
        >>> check_schema({"epoch": "3"}, {"epoch": "integer"}, "trainer")
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: trainer.epoch must be an integer >= 0; got '3'
    """
    spec = SCHEMA if spec is None else spec
    if isinstance(spec, str):
        if not _LEAVES[spec](value):
            shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
            raise QtomoError(f"{where} must be {_EXPECTED[spec]}; got {shown}")
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise QtomoError(f"{where} must be a mapping; got {type(value).__name__}")
        for key, item in spec.items():
            name = key.rstrip("?")
            if key != "*" and (name in value or not key.endswith("?")):
                if name not in value:
                    raise QtomoError(f"{where} lacks the field {name!r}")
                check_schema(value[name], item, f"{where}.{name}")
        if "*" in spec:
            for name, item in value.items():
                if f"{name}" not in spec and f"{name}?" not in spec:
                    check_schema(item, spec["*"], f"{where}.{name}")
    elif spec[0] == "list":
        if not isinstance(value, list):
            raise QtomoError(f"{where} must be a list; got {type(value).__name__}")
        for index, item in enumerate(value):
            check_schema(item, spec[1], f"{where}[{index}]")
    elif spec[0] == "or none":
        if value is not None:
            check_schema(value, spec[1], where)
    elif spec[0] == "or empty":
        if value != {}:
            check_schema(value, spec[1], where)
    else:
        check_schema(value, spec[0], where)


def _check_finite(payload: dict) -> None:
    """QtomoError naming the first floating-point tensor with a NaN or an infinity."""
    trainer = payload.get("trainer") or {}
    groups = {"state_dict": payload["state_dict"], "trainer.average": trainer.get("average"),
              "trainer.best.state_dict": (trainer.get("best") or {}).get("state_dict")}
    for where, tensors in groups.items():
        for key, tensor in (tensors or {}).items():
            if (tensor.is_floating_point() or tensor.is_complex()) and not bool(
                    torch.isfinite(tensor).all()):
                raise QtomoError(f"{where}.{key} holds non-finite weights (NaN or inf)")
    for where, value in (("config.training.best_val_nll",
                          payload["config"].get("training", {}).get("best_val_nll")),
                         ("trainer.best.val_nll", (trainer.get("best") or {}).get("val_nll"))):
        if value is not None and math.isnan(value):
            raise QtomoError(f"{where} is NaN")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the rebuilt ``model`` (eval mode), its plain ``config`` and the
    ``trainer`` state (``None`` unless written by :func:`qtomo.train.fit`)."""

    path: Path
    model: QtomoModel
    config: dict[str, Any]
    trainer: dict[str, Any] | None


def save_checkpoint(path: str | Path, model: QtomoModel, *, povm: str,
                    data: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
                    trainer: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and its plain config to ``path`` atomically (temporary file + rename).

    Args:
        path: destination, conventionally ``*.pt``; its folder is created if needed.
        model: any registered family.
        povm: name of the POVM the model's outcomes refer to.
        data: dataset provenance (see the module docstring); plain values only.
        training: training summary.
        trainer: optimizer/scheduler/RNG state for resuming.

    Returns:
        The path written.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "qtomo_version": qtomo.__version__,
        "config": plain({"family": model.family, "hyperparameters": hyperparameters(model),
                         "L": model.L, "K": model.K, "povm": povm, "data": data or {},
                         "training": training or {}}),
        "state_dict": {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()},
        "trainer": trainer,
    }
    buffer = io.BytesIO()  # so that a failed write is a plain OSError (ENOSPC), not torch's
    torch.save(payload, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return path


def _torch_archive(path: Path) -> bool:
    """Whether a zip archive holds torch.save's ``<name>/data.pkl`` (an unreadable one: True,
    for torch.load to report)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return True


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and validate a checkpoint and rebuild its model.

    Args:
        path: a file written by :func:`save_checkpoint` (or ``qtomo fit``).
        map_location: device the tensors are loaded onto.

    Returns:
        :class:`Checkpoint` with the model in eval mode on ``map_location``.

    Raises:
        CheckpointError: missing or unreadable file, not a qtomo checkpoint, an unknown version
            or family, a field of the wrong type (:data:`SCHEMA`), non-finite weights, or a
            config that does not match the stored tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing_file(path, "checkpoint file"))
    leftover = describe_leftover(path)
    if leftover is not None:
        raise CheckpointError(f"{path}: {leftover}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a qtomo checkpoint (not a torch.save archive)")
    if not _torch_archive(path):
        raise CheckpointError(f"{path} is a zip archive but not a qtomo checkpoint (no "
                                  f"torch.save data in it); expected a .pt file of qtomo fit")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a qtomo checkpoint (it holds objects other than "
                              "tensors and plain data)") from None
    except Exception as error:  # torch raises many types for a truncated or corrupt archive
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable qtomo checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a qtomo checkpoint (expected format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {payload.get('version')!r}; "
                              f"this qtomo reads version {VERSION}")
    try:
        check_schema(payload)
        if payload.get("trainer") is not None:
            check_schema(payload, RESUMABLE)
        _check_finite(payload)
        config, state_dict = payload["config"], payload["state_dict"]
        # a physical family keeps its POVM elements as a buffer; the networks need only the name
        povm = (povm_from_elements(config["povm"], state_dict["povm_elements"].cpu().numpy())
                if "povm_elements" in state_dict else config["povm"])
        model = build(config["family"], L=config["L"], K=config["K"], povm=povm,
                      **config["hyperparameters"])
        if "options" in config.get("training", {}):
            known = {field.name for field in dataclasses.fields(TrainOptions)}
            options = config["training"]["options"]
            unknown = sorted(set(options) - known)
            if unknown:
                raise QtomoError(f"config.training.options has unknown option(s) "
                                 f"{', '.join(unknown)}")
            TrainOptions(**options)
    except QtomoError as error:
        raise CheckpointError(f"{path}: {error}") from None
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError) as error:
        lines = str(error).strip().splitlines()  # a heading, then one line per problem
        reason = lines[min(1, len(lines) - 1)].strip()
        raise CheckpointError(f"{path}: config does not match the stored tensors ({reason})"
                              ) from None
    model.to(map_location).eval()
    return Checkpoint(path=path, model=model, config=config, trainer=payload.get("trainer"))


def load(path: str | Path, map_location: str | torch.device = "cpu") -> QtomoModel:
    """The model stored in a checkpoint, in eval mode on ``map_location`` (see
    :func:`load_checkpoint` for the checks and errors).

    Example:
        >>> import tempfile, qtomo.models
        >>> model = qtomo.models.build("gru", L=3, K=4, hidden=8)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = save_checkpoint(f"{folder}/m.pt", model, povm="pauli4")
        ...     same = load(path)
        >>> a = torch.tensor([[0, 1, 3]])
        >>> bool(torch.equal(same.log_prob(a), model.log_prob(a)))
        True
    """
    return load_checkpoint(path, map_location).model


def training_data_path(checkpoint: Checkpoint) -> Path | None:
    """The training dataset of a checkpoint: its recorded absolute path if that file exists,
    else its path relative to the checkpoint's folder (a moved run folder); None if unrecorded.

    Raises:
        CheckpointError: if a path is recorded but the file is at neither place.
    """
    data = checkpoint.config.get("data") or {}
    recorded = data.get("path")
    relative = data.get("relative_path")
    if recorded is None and relative is None:
        return None
    candidates = [Path(p) for p in (recorded,) if p is not None]
    candidates += [checkpoint.path.parent / relative] if relative is not None else []
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{checkpoint.path}: its training dataset is at neither "
                          f"{' nor '.join(map(str, candidates))}; give --data")


def describe(checkpoint: Checkpoint) -> str:
    """A few human-readable lines on what a checkpoint holds (for ``qtomo info``)."""
    config = checkpoint.config
    n_parameters = sum(p.numel() for p in checkpoint.model.parameters())
    hp = ", ".join(f"{key}={value}" for key, value in config["hyperparameters"].items())
    lines = [f"{checkpoint.path}: qtomo checkpoint, model {config['family']} ({hp}), "
             f"{n_parameters} parameters",
             f"  L = {config['L']}, K = {config['K']}, povm = {config['povm']}"]
    data = config.get("data") or {}
    if data:
        (train_start, train_stop), (val_start, val_stop) = data["train_rows"], data["val_rows"]
        lines.append(f"  data: {data.get('path')} ({data.get('n_records')} records; train rows "
                     f"[{train_start}, {train_stop}), validation rows [{val_start}, {val_stop}))")
    training = config.get("training") or {}
    if "best_val_nll" in training:
        lines.append(f"  training: {training.get('epochs_run')} epochs, best validation NLL "
                     f"{training.get('best_val_nll'):.6g} at epoch {training.get('best_epoch')}"
                     + (", stopped early" if training.get("stopped_early") else "")
                     + (f", {training['time_s']:.1f} s" if "time_s" in training else ""))
    for key, name, unit in _STAGES:
        stage = training.get(key)
        if isinstance(stage, dict):
            lines.append(f"  {name}: {stage.get(unit)} {unit.replace('_', '-')}, validation NLL "
                         f"{stage.get('val_nll_before'):.6g} -> {stage.get('val_nll'):.6g}, "
                         f"stopped: {stage.get('stopped')}")
    search = training.get("size_search")
    if isinstance(search, dict):
        tried = ", ".join(
            ",".join(f"{k}={v}" for k, v in stage["sizes"].items()) + ("*" if stage["kept"] else "")
            for stage in search.get("stages", []))
        lines.append(f"  size search (* kept): {tried}; {search.get('reason')}")
        if search.get("first"):
            lines.append(f"  first size: {search['first']}")
    if checkpoint.trainer is not None:
        lines.append(f"  resumable from epoch {checkpoint.trainer['epoch']}")
    return "\n".join(lines)


def checkpoint_summary(checkpoint: Checkpoint) -> dict[str, Any]:
    """What ``qtomo info --json`` says about a checkpoint: ``kind`` (``"checkpoint"``),
    ``path``, ``family``, ``hyperparameters``, ``L``, ``K``, ``povm``, ``n_parameters``,
    ``data`` (provenance: path, records, train and validation rows, the dataset's attributes),
    ``training`` (the summary ``fit`` stored: epochs, best epoch and NLL, ``time_s``, options …;
    empty if none) and ``resumable_epoch`` (the ``.last.pt`` epoch, or None); plain values."""
    config = checkpoint.config
    return plain({
        "kind": "checkpoint", "path": str(checkpoint.path), "family": config["family"],
        "hyperparameters": config["hyperparameters"], "L": config["L"], "K": config["K"],
        "povm": config["povm"],
        "n_parameters": sum(p.numel() for p in checkpoint.model.parameters()),
        "data": config.get("data") or {}, "training": config.get("training") or {},
        "resumable_epoch": None if checkpoint.trainer is None else checkpoint.trainer["epoch"]})
