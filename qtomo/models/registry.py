"""The family registry behind :func:`qtomo.models.build` (see :mod:`qtomo.models`)."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from typing import Any

from qtomo.errors import QtomoError
from qtomo.models.base import QtomoModel, check_hyperparameter
from qtomo.povm import POVM, get_povm

#: family name -> (module, model class, config class); how to add one: see :mod:`qtomo.models`
FAMILIES: dict[str, tuple[str, str, str]] = {
    "rnn": ("qtomo.models.rnn", "RNNModel", "RecurrentConfig"),
    "gru": ("qtomo.models.rnn", "GRUModel", "RecurrentConfig"),
    "lstm": ("qtomo.models.rnn", "LSTMModel", "RecurrentConfig"),
    "transformer": ("qtomo.models.transformer", "TransformerModel", "TransformerConfig"),
    "flow": ("qtomo.models.flow", "ArgmaxFlow", "FlowConfig"),
    "mps": ("qtomo.models.mps", "MPSModel", "MPSConfig"),
    "lpdo": ("qtomo.models.mps", "LPDOModel", "LPDOConfig"),
    "cnn": ("qtomo.models.cnn", "CNNModel", "CNNConfig"),
    "rbm": ("qtomo.models.rbm", "RBMModel", "RBMConfig"),
    "vae": ("qtomo.models.vae", "VAEModel", "VAEConfig"),
    "gan": ("qtomo.models.gan", "GANModel", "GANConfig"),
    "linear": ("qtomo.models.dense", "LinearModel", "LinearConfig"),
    "dense": ("qtomo.models.dense", "DenseModel", "DenseConfig"),
}


def family_classes(name: str) -> tuple[type[QtomoModel], type]:
    """(model class, config class) of the family ``name``; QtomoError if there is none."""
    if name not in FAMILIES:
        raise QtomoError(f"unknown model {name!r}; expected one of: {', '.join(FAMILIES)}")
    module_name, model_name, config_name = FAMILIES[name]
    module = importlib.import_module(module_name)
    return getattr(module, model_name), getattr(module, config_name)


def config_class(name: str) -> type:
    """The frozen hyperparameter dataclass of the family ``name``."""
    return family_classes(name)[1]


def build(name: str, *, L: int, K: int, povm: POVM | str | None = None,
          **hyperparameters: Any) -> QtomoModel:
    """A freshly initialised model of family ``name`` for L qubits and K outcomes per qubit.

    Args:
        name: a key of :data:`FAMILIES` (``"rnn"``, ``"gru"``, ``"lstm"``, ``"transformer"``,
            ``"flow"``, ``"mps"``, ``"lpdo"``, ``"cnn"``, …).
        L: qubits, ≥ 1. K: outcomes per qubit, ≥ 2.
        povm: the POVM of the records (a :class:`~qtomo.povm.POVM` or a registered name);
            needed by the physical families (``mps``, ``lpdo``), whose Q is the Born rule of
            their state, and ignored by the others.
        **hyperparameters: fields of the family's config dataclass; the rest keep their
            defaults.

    Returns:
        The model (float32, on the CPU), with ``model.config`` its full hyperparameters.

    Raises:
        QtomoError: unknown family, unknown hyperparameter, a value out of range, or a
            physical family without a POVM of K outcomes.
    """
    model_class, config = family_classes(name)
    check_hyperparameter(name, "L", L, low=1)
    check_hyperparameter(name, "K", K, low=2)
    known = [field.name for field in dataclasses.fields(config)]
    for key in hyperparameters:
        if key not in known:
            raise QtomoError(f"unknown hyperparameter {key!r} for model {name!r}; "
                             f"expected one of: {', '.join(known)}")
    if not model_class.needs_povm:
        return model_class(L, K, config(**hyperparameters))
    if povm is None:
        raise QtomoError(f"model {name!r} is a quantum state and needs the POVM of the records "
                         "(povm=…)")
    povm = get_povm(povm) if isinstance(povm, str) else povm
    if povm.K != K:
        raise QtomoError(f"POVM {povm.name!r} has K = {povm.K} outcomes; the model was asked "
                         f"for K = {K}")
    return model_class(L, K, config(**hyperparameters), povm)


def hyperparameters(model: QtomoModel) -> dict[str, Any]:
    """The model's hyperparameters as a plain dict (what a checkpoint stores)."""
    return dataclasses.asdict(model.config)


def hyperparameter_types() -> dict[str, type]:
    """The Python type (``int``, ``float`` or ``str``) of every hyperparameter name, from the
    config dataclasses' annotations (what ``qtomo fit`` parses each option as).

    Raises:
        QtomoError: two families annotate one name with different types (a registry bug: one
            command-line option cannot parse both).

    Example:
        >>> hyperparameter_types()["hidden"]
        <class 'int'>
    """
    types: dict[str, type] = {}
    for name in FAMILIES:
        hints = typing.get_type_hints(config_class(name))  # also ClassVars: not fields
        for key in (field.name for field in dataclasses.fields(config_class(name))):
            kind = hints[key]
            if types.setdefault(key, kind) is not kind:
                raise QtomoError(f"hyperparameter {key!r} of model {name!r} is {kind.__name__}; "
                                 f"another family declares it {types[key].__name__}")
    return types


def hyperparameter_defaults() -> dict[str, dict[str, Any]]:
    """Every hyperparameter name of every family, with its default per family.

    Example:
        >>> hyperparameter_defaults()["heads"]
        {'transformer': 4}
    """
    table: dict[str, dict[str, Any]] = {}
    for name in FAMILIES:
        for field in dataclasses.fields(config_class(name)):
            table.setdefault(field.name, {})[name] = field.default
    return table
