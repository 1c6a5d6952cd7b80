"""The one interface every model family shares (docs/training.md "The model interface").

A model is a normalised distribution Q(a) over POVM records a ∈ {0..K-1}^L::

    model.L, model.K                                  # qubits, outcomes per qubit
    model.log_prob(a: LongTensor[B, L]) -> Tensor[B]  # ln Q(a)
    model.sample(n, generator=None) -> LongTensor[n, L]
    model.training_nll(a) -> Tensor[B]                # what the trainer minimises (default -ln Q)
    model.train_step(a, optimizer, clip)              # optional: a family's own update (gan)
    model.after_step()                                # the trainer calls it after each step
    model.sweep(records, n_rows, validate, ...)       # optional: local sweeps (mps, lpdo)
    model.povm                                        # the POVM Q refers to, or None

Families hold their hyperparameters in a frozen dataclass ``model.config``; ``model.family`` is
the registry name. Trainer, metrics and CLI use only this interface. Families whose Q is the Born
rule of a state (``mps``, ``lpdo``) hold their POVM (``needs_povm``): ``build`` hands it to them
and the trainer checks that the data were measured with it; for the networks ``povm`` is None.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from qtomo.errors import QtomoError
from qtomo.heldout import HeldOut
from qtomo.povm import POVM, check_outcomes
from qtomo.sweeps import PATIENCE, SweepResult


class QtomoModel(nn.Module):
    """Base class of all model families: a normalised distribution over (L,) records in 0..K-1."""

    family: ClassVar[str] = ""
    #: True when ``log_prob`` is exact; False when it is an estimate (flows, vae, large rbm)
    exact_log_prob: ClassVar[bool] = True
    #: False for implicit models (``gan``) whose ``log_prob`` raises: samples only
    has_log_prob: ClassVar[bool] = True
    #: keyword arguments of the trainer's AdamW that the family needs (``gan``: its betas)
    optimizer_defaults: ClassVar[dict] = {}
    #: True for a family that makes its own optimiser update (:meth:`train_step`, e.g. the
    #: adversarial ``gan``) instead of the trainer's step on :meth:`training_nll`
    makes_own_step: ClassVar[bool] = False
    #: True when the constructor takes the POVM (``(L, K, config, povm)``): Q is a Born rule
    needs_povm: ClassVar[bool] = False
    #: training options (fields of :class:`qtomo.train.TrainOptions`) that ``qtomo fit`` uses
    #: for this family unless given on the command line
    train_defaults: ClassVar[dict[str, Any]] = {}
    #: hyperparameters that a plain ``qtomo fit`` selects among these values unless given,
    #: the simpler first: a later value is kept only where the held-out rows prefer it
    #: (:func:`qtomo.growth.fit_in_order`, and the first stage of a size search)
    selection_defaults: ClassVar[dict[str, tuple]] = {}
    #: hyperparameters that size the state, each with the ladder of values a size search
    #: climbs (:func:`qtomo.growth.fit_growing`); empty for families that cannot grow
    sizes: ClassVar[dict[str, tuple[int, ...]]] = {}
    #: trainings (from consecutive seeds) of a size search's first stage when the user gives
    #: no ``--restarts``: each value of the selection keeps its lowest validation NLL
    #: (:func:`qtomo.growth.fit_growing`)
    search_restarts: ClassVar[int] = 1
    #: hyperparameters a plain ``qtomo fit`` uses, instead of selecting them, when the records
    #: cannot determine the phases of the amplitudes (:func:`qtomo.recipe.phase_prior`)
    unphased_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def train_defaults_for(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The training options a plain fit uses with ``hyperparameters`` given (a list value is
        several to select among): :attr:`train_defaults` unless a family's recipe depends on
        them."""
        return dict(cls.train_defaults)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every family's ``log_prob`` and ``training_nll`` records of any integer dtype
        (uint8 as :meth:`qtomo.data.Dataset.outcomes` returns them, int8..int64, numpy arrays:
        :func:`as_records`), checked (:meth:`check_records`; an int64 tensor, the trainer's,
        by the family itself), and check ``sample``'s count (:func:`check_count`), once, here."""
        super().__init_subclass__(**kwargs)
        for name in ("log_prob", "training_nll"):
            if name in cls.__dict__:
                setattr(cls, name, _taking_records(cls.__dict__[name]))
        if "sample" in cls.__dict__:
            cls.sample = _checking_count(cls.__dict__["sample"])

    def __init__(self, L: int, K: int) -> None:
        super().__init__()
        self.L = int(L)
        self.K = int(K)
        self.povm: POVM | None = None

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) for integer records (B, L) (a tensor or numpy array of any integer dtype);
        returns (B,) float."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n ≥ 0 independent records Q-distributed; LongTensor (n, L) on the model's device."""
        raise NotImplementedError

    def grows(self, name: str, value: int) -> bool:
        """Whether setting the size ``name`` (a key of :attr:`sizes`) to ``value`` would give a
        larger model than this one (False where every bond is already at its largest)."""
        raise QtomoError(f"the {self.family} family has no size to grow")

    def grown(self, **sizes: int) -> QtomoModel:
        """The same distribution in a model with larger ``sizes``, its new parameters small and
        random (so that a gradient method can use them)."""
        raise QtomoError(f"the {self.family} family has no size to grow")

    def training_bytes(self, records: int) -> int:
        """Estimated peak memory in bytes of one differentiable pass of :meth:`training_nll`
        over ``records`` rows, for the families with :attr:`sizes` (a size search stops before
        a size that would not fit)."""
        raise QtomoError(f"the {self.family} family has no size to grow")

    def sweep_refusal(self) -> str | None:
        """Why this model cannot be fitted by local sweeps (:meth:`sweep`), or None where it
        can; the trainer refuses ``sweeps`` > 0 with this line before any epoch."""
        return f"the {self.family} family has no local sweeps"

    def sweep(self, records: torch.Tensor, n_rows: int, validate: Callable[[], HeldOut], *,
              max_sweeps: int, patience: int = PATIENCE, world: int = 1,
              quiet: bool = True, counts: torch.Tensor | None = None) -> SweepResult:
        """Maximise the likelihood of ``records`` (LongTensor (N_rank, L), this rank's training
        rows, each ``counts`` (float64 (N_rank,)) times, once where None; ``n_rows`` over all
        ranks, Σ counts) site by site (:func:`qtomo.sweeps.sweep`; ``validate()`` gives the
        validation rows' NLLs, and an earlier state they prefer is kept, asked after
        ``patience`` half-sweeps without a better validation NLL, 0 for never; a progress bar
        over the sites unless ``quiet``); the model ends holding the state kept."""
        raise QtomoError(self.sweep_refusal() or f"the {self.family} family cannot sweep")

    def sweep_bytes(self, records: int) -> int:
        """Estimated peak memory in bytes of :meth:`sweep` over ``records`` rows (the size
        search refuses a size whose sweeps would not fit)."""
        raise QtomoError(self.sweep_refusal() or f"the {self.family} family cannot sweep")

    def check_records(self, a: torch.Tensor) -> None:
        """Raise QtomoError unless ``a`` is an integer tensor (B, L) with outcomes in 0..K−1.

        Every family calls this at the door of ``log_prob`` (and of what shares its pass), so
        a record of the wrong length or an outcome out of range is one line, not a torch error.
        """
        check_outcomes(a, self.L, self.K)

    def importance_chunks(self, a: torch.Tensor, samples: int) -> list[int]:
        """Check records ``a`` (B, L) and an importance-sample count S ≥ 1; return the draws per
        chunk, each s ≤ 2^16 / B and summing to S, so that s·B draws bound the memory.

        Raises:
            QtomoError: for bad records (:meth:`check_records`) or S < 1.
        """
        self.check_records(a)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise QtomoError(f"importance samples must be an integer ≥ 1; got {samples!r}")
        chunk = max(1, (1 << 16) // max(a.shape[0], 1))
        return [min(chunk, samples - start) for start in range(0, samples, chunk)]

    def training_nll(self, a: torch.Tensor) -> torch.Tensor:
        """Per-record objective minimised by the trainer, (B,) float; -ln Q(a) by default."""
        return -self.log_prob(a)

    def train_step(self, a: torch.Tensor, optimizer: torch.optim.Optimizer,
                   clip: float = 0.0) -> torch.Tensor:
        """One optimiser update on the batch ``a`` (B, L), returning the figure the trainer logs
        (a detached scalar); called instead of the likelihood step when ``makes_own_step``."""
        raise QtomoError(f"the {self.family} model trains on the likelihood; it makes no step "
                         f"of its own")

    def after_step(self) -> None:
        """Called by the trainer after every optimizer step (e.g. to rescale tensors); no-op."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def as_records(a: Any, device: torch.device) -> Any:
    """Integer records as the LongTensor the families index with: a numpy array of an integer
    dtype becomes a tensor on ``device``, an integer tensor of another width an int64 one on
    its own device. Anything else (floats, bool, lists) is returned as it is, for the family's
    :meth:`QtomoModel.check_records` to refuse with its one-line message.

    Example:
        >>> as_records(np.array([[0, 3]], dtype=np.uint8), torch.device("cpu"))
        tensor([[0, 3]])
    """
    if isinstance(a, np.ndarray) and a.dtype.kind in "iu":
        return torch.from_numpy(a.astype(np.int64)).to(device)
    integer_dtypes = (torch.uint8, torch.int8, torch.int16, torch.int32)
    if isinstance(a, torch.Tensor) and a.dtype in integer_dtypes:
        return a.long()
    return a


def check_count(n: Any) -> int:
    """``n`` as an int if it is a whole number ≥ 0 (int or numpy integer, not bool).

    Example:
        >>> check_count(2.5)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: the number of records must be an integer >= 0; got 2.5
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise QtomoError(f"the number of records must be an integer >= 0; got {n!r}")
    return int(n)


def _taking_records(method: Callable) -> Callable:
    @functools.wraps(method)
    def taking_records(self: QtomoModel, a: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        records = as_records(a, _parameter_device(self))
        if not (isinstance(a, torch.Tensor) and a.dtype == torch.int64):
            self.check_records(records)  # an int64 tensor: the family's own check (no 2nd sync)
        return method(self, records, *args, **kwargs)

    return taking_records


def _checking_count(method: Callable) -> Callable:
    @functools.wraps(method)
    def checking_count(self: QtomoModel, n: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return method(self, check_count(n), *args, **kwargs)

    return checking_count


def _parameter_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for one with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_hyperparameter(family: str, name: str, value: object, *, low: float,
                         high: float | None = None, integer: bool = True) -> None:
    """Raise QtomoError unless ``low <= value <= high`` (and ``value`` is an int if ``integer``).

    Config dataclasses call this from ``__post_init__`` so that every way of building a model
    (``build``, a checkpoint, the CLI) rejects the same values with the same one-line message.

    Example:
        >>> check_hyperparameter("gru", "hidden", 64, low=1)
        >>> check_hyperparameter("gru", "hidden", 0, low=1)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: gru hyperparameter hidden must be an integer >= 1; got 0
    """
    kind = "an integer" if integer else "a number"
    bounds = f">= {low}" if high is None else f"in {low}..{high}"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or value < low or (high is not None and value > high):
        raise QtomoError(f"{family} hyperparameter {name} must be {kind} {bounds}; got {value!r}")


def sample_categorical(logits: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of softmax(logits), by the Gumbel-max trick argmax_k(logits_k + g_k).

    Args:
        logits: float (…, K), unnormalised log-probabilities (log-softmax rows are fine).
        generator: random source on the logits' device.

    Returns:
        LongTensor (…) in 0..K-1.

    Example:
        >>> sample_categorical(torch.tensor([[0.0, -torch.inf, -torch.inf]] * 3)).tolist()
        [0, 0, 0]
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    return (logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)
