"""Model families and their registry: ``build`` a model by name, ``load`` one from a checkpoint.

Every family implements :class:`qtomo.models.base.QtomoModel` (docs/training.md "The model
interface"), so the trainer, the metrics and the CLI never ask which family they hold. The
autoregressive families derive ``log_prob``, ``conditionals`` and ``sample`` from one method (see
:mod:`qtomo.models.autoregressive`).

Registration convention (how to add a family): write one module ``qtomo/models/<name>.py`` with

- a frozen dataclass of hyperparameters, every field with a default, whose ``__post_init__``
  rejects out-of-range values with a :class:`~qtomo.errors.QtomoError` (use
  :func:`qtomo.models.base.check_hyperparameter`);
- a :class:`~qtomo.models.base.QtomoModel` subclass with ``family = "<name>"``, a constructor
  ``(L, K, config)`` and the config stored as ``self.config``;

and add one line ``"<name>": ("qtomo.models.<name>", "<ModelClass>", "<ConfigClass>")`` to
:data:`qtomo.models.registry.FAMILIES`. Modules are imported when a family is first built, so a
family's dependencies cost nothing until it is used. ``build``, ``load``, the checkpoint format and
``qtomo fit`` (whose options come from the config fields) then work for it unchanged.

Example:
    >>> model = build("gru", L=6, K=4, hidden=16)
    >>> model.config
    RecurrentConfig(hidden=16, layers=2)
    >>> build("lstm", L=6, K=4, hidden=0)
    Traceback (most recent call last):
    ...
    qtomo.errors.QtomoError: recurrent hyperparameter hidden must be an integer in 1..4096; got 0
"""

from __future__ import annotations

from qtomo.models.base import QtomoModel
from qtomo.models.checkpoint import Checkpoint, load, load_checkpoint, save_checkpoint
from qtomo.models.registry import (
    FAMILIES,
    build,
    config_class,
    family_classes,
    hyperparameter_defaults,
    hyperparameter_types,
    hyperparameters,
)

__all__ = ["FAMILIES", "Checkpoint", "QtomoModel", "build", "config_class", "family_classes",
           "hyperparameter_defaults", "hyperparameter_types", "hyperparameters", "load",
           "load_checkpoint", "save_checkpoint"]
