"""The optimisation settings of a fit (docs/training.md "Training"), a leaf module: the
checkpoint reader, the trainer and the recipe all read them, and it imports none of them."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from qtomo.errors import QtomoError

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings of :func:`fit` (all stored in the checkpoint).

    Args:
        epochs: maximum number of passes over the training rows (0: none, with
            ``full_batch``, ``sweeps`` or ``refine``).
        batch_size: records per optimizer step (global under DDP).
        lr: peak learning rate of AdamW.
        weight_decay: decoupled weight decay of AdamW.
        schedule: ``"cosine"`` (warm-up then cosine decay to lr/100) or ``"constant"``.
        warmup: warm-up steps (linear from lr/warmup to lr), at most a tenth of all steps.
        clip: maximum gradient norm (0 = no clipping).
        val_fraction: share of rows, taken from the end of the file, held out for validation.
        patience: stop after this many epochs without a better validation NLL (0 = never).
        ema: decay of an exponential moving average of the weights, updated after every
            step (0 = off, else in [0.5, 1)); when on, validation, the best checkpoint and
            ``result.model`` use the averaged weights, while training continues on the raw ones.
        seed: seeds the shuffling and any randomness of the objective.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        compile: wrap the objective in ``torch.compile``.
        resident_bytes: keep the training rows on the device when they need at most this many
            bytes (L bytes per record); stream them from the file otherwise.
        chunk_records: rows per read when streaming.
        bootstrap: train on a bootstrap resample of the training rows (as many draws with
            replacement, seeded by ``seed``), the finite-data spread of an ensemble
            (:func:`fit_ensemble`); needs the rows resident. Validation rows are never resampled.
        full_batch: after the epochs, at most this many full-batch AdamW steps (learning rate
            ``lr``, no schedule; :func:`qtomo.refine.refine` with ``method="adam"``; 0 = none)
            over all training rows, from the best weights, validated every ``refine_check``
            steps, stopping after five checks without a better validation NLL.
        sweeps: after the epochs and the full-batch steps, at most this many local
            maximum-likelihood sweeps of a tensor-network family (:func:`qtomo.sweeps.sweep`,
            docs/physical-fits.md "Sweeps"; 0 = none), from the best weights; they stop earlier
            when the validation NLL does.
        refine: after the epochs and sweeps, at most this many full-batch L-BFGS iterations
            from the best weights (:func:`qtomo.refine.refine`; 0 = none), validated every
            ``refine_check``.
        refine_check: L-BFGS iterations between validation checks of the refinement.
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: int = 100
    clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 5
    ema: float = 0.0
    seed: int = 0
    amp: bool = True
    compile: bool = False
    resident_bytes: int = 4 * 2**30
    chunk_records: int = 2**18
    bootstrap: bool = False
    full_batch: int = 0
    sweeps: int = 0
    refine: int = 0
    refine_check: int = 10

    def __post_init__(self) -> None:
        for option in dataclasses.fields(self):
            value, kind = getattr(self, option.name), option.type
            ok = (isinstance(value, bool) if kind == "bool"
                  else isinstance(value, str) if kind == "str"
                  else not isinstance(value, bool) and isinstance(
                      value, int if kind == "int" else int | float))
            if not ok:
                raise QtomoError(f"training option {option.name} must be of type {kind}; got "
                                 f"{value!r}")
        later = self.full_batch or self.sweeps or self.refine
        checks = [("epochs", self.epochs >= (0 if later else 1),
                   ">= 1 (or 0 with full_batch, sweeps or refine > 0)"),
                  ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("lr", 0 < self.lr < math.inf, "> 0"),
                  ("weight_decay", 0 <= self.weight_decay < math.inf, ">= 0"),
                  ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
                  ("warmup", self.warmup >= 0, ">= 0"), ("clip", 0 <= self.clip < math.inf, ">= 0"),
                  ("val_fraction", 0 < self.val_fraction < 1, "in (0, 1)"),
                  ("patience", self.patience >= 0, ">= 0"),
                  ("seed", 0 <= self.seed < 2**63, "in 0..2^63-1"),
                  ("ema", self.ema == 0 or 0.5 <= self.ema < 1, "0 or in [0.5, 1)"),
                  ("resident_bytes", self.resident_bytes >= 0, ">= 0"),
                  ("chunk_records", self.chunk_records >= 1, ">= 1"),
                  ("full_batch", self.full_batch >= 0, ">= 0"),
                  ("sweeps", self.sweeps >= 0, ">= 0"),
                  ("refine", self.refine >= 0, ">= 0"),
                  ("refine_check", self.refine_check >= 1, ">= 1")]
        for name, ok, expected in checks:
            if not ok:
                raise QtomoError(f"training option {name} must be {expected}; "
                                 f"got {getattr(self, name)!r}")
