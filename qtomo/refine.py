"""Full-batch refinement: from where the stochastic optimiser stopped to a maximum of the
likelihood (docs/physical-fits.md, "The refinement: full-batch L-BFGS").

Adam with mini-batches stops near a maximum, at a distance set by its step size and the noise of
its batches. The refinement minimises the mean NLL of *all* training rows::

    NLL(θ) = -(1/N) Σ_n ln Q_θ(a_n)

with L-BFGS and a strong-Wolfe line search (``torch.optim.LBFGS``), or with full-batch Adam
steps (the noise-free gradient, each parameter's step scaled by its own history: it develops
the new directions of a grown non-negative state, which L-BFGS leaves almost unused); each
evaluation accumulates the gradient over chunks of rows, so memory is that of one chunk.
Repeated rows may come once with their count (Σ_n over all rows = Σ over distinct rows of
count · term), so a pass costs what the distinct rows cost. Every ``check_every`` iterations
the validation NLL is measured and the best parameters so far are kept; the refinement stops
when L-BFGS has converged (gradient or change below tolerance), when the validation NLL has not
improved for ``patience`` checks (the records no longer support a better state: held-out early
stopping of the maximum-likelihood fit), or after ``max_iter`` iterations. The kept parameters
are those with the lowest validation NLL, never worse than the start.

Under torchrun every rank holds a share of the rows; the loss and the gradients are summed with
``torch.distributed.all_reduce`` inside each evaluation, so all ranks take the same steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from qtomo.device import sum_over_ranks, weighted_sum
from qtomo.errors import QtomoError
from qtomo.models import QtomoModel

#: L-BFGS settings: the history spans the few hundred parameters of a small χ many times over;
#: the loss is a mean NLL of O(10) nats, so a change below 1e-12 is far below its noise
_HISTORY = 50
_TOLERANCE_GRAD = 1e-9
_TOLERANCE_CHANGE = 1e-12
_MAX_EVALUATIONS = 4  # per iteration: the line search rarely needs more than two


@dataclass(frozen=True)
class Refinement:
    """What :func:`refine` did (stored in the checkpoint's training summary as a dict).

    Attributes:
        iterations: L-BFGS iterations run.
        evaluations: full passes over the training rows (NLL and gradient).
        train_nll: training NLL at the kept parameters (nats per record).
        val_nll_before, val_nll: validation NLL at the start and at the kept parameters.
        stopped: why it ended: ``"converged"`` (gradient or change below tolerance),
            ``"validation"`` (no better validation NLL for ``patience`` checks),
            ``"iterations"`` (the ``max_iter`` cap; raise ``--refine`` to go on) or
            ``"non-finite"`` (a step gave a non-finite NLL; the best parameters were kept).
        time_s: wall time.
    """

    iterations: int
    evaluations: int
    train_nll: float
    val_nll_before: float
    val_nll: float
    stopped: str
    time_s: float


#: a chunk of rows, LongTensor (b, L), and how often each occurs (float64 (b,); None: once)
Batch = tuple[torch.Tensor, torch.Tensor | None]


#: the optimisers :func:`refine` runs: quasi-Newton, or Adam's steps scaled per parameter
METHODS = ("lbfgs", "adam")


def refine(model: QtomoModel, batches: Callable[[], Iterable[Batch]], n_rows: int,
           validate: Callable[[], float], *, max_iter: int, check_every: int = 10,
           patience: int = 3, select: bool = True, world: int = 1, method: str = "lbfgs",
           lr: float = 1.0, weight_decay: float = 0.0) -> Refinement:
    """Minimise the full-batch training NLL of ``model`` with L-BFGS or Adam (module docstring).

    Args:
        model: any family whose ``training_nll`` is differentiable; its parameters are updated
            in place and end at the kept (lowest validation NLL) values.
        batches: returns an iterable over this rank's training rows, (rows LongTensor (b, L),
            counts float64 (b,) or None) chunks (:data:`Batch`), one full pass per call.
        n_rows: number of training rows over all ranks (the mean's denominator, Σ counts).
        validate: the validation NLL of ``model`` as it is now (nats per record).
        max_iter: most iterations (≥ 1): L-BFGS iterations, or Adam steps.
        check_every: iterations between validation checks.
        patience: checks without a better validation NLL before stopping.
        select: keep the parameters of the lowest validation NLL and stop on ``patience``;
            False runs to convergence (or ``max_iter``) and keeps the last parameters, the
            plain maximum-likelihood fit (the statistical reference of ``benchmarks/limit.py``).
        world: number of processes (torchrun); 1 otherwise.
        method: one of :data:`METHODS`: ``"lbfgs"`` (strong-Wolfe line search, step 1), or
            ``"adam"``: full-batch AdamW steps of learning rate ``lr`` and ``weight_decay``.
        lr, weight_decay: Adam's step size and decoupled weight decay (unused by L-BFGS).

    Returns:
        :class:`Refinement`.

    Raises:
        QtomoError: a ``method`` not in :data:`METHODS`.
    """
    if method not in METHODS:
        raise QtomoError(f"refinement method must be one of {', '.join(METHODS)}; got "
                         f"{method!r}")
    started = time.perf_counter()
    parameters = [p for p in model.parameters() if p.requires_grad]
    objective = _TrainingNLL(model, parameters, batches, n_rows, world)
    model.train()
    val_before = validate()
    advance = (_lbfgs(objective, check_every) if method == "lbfgs"
               else _adam(objective, lr, weight_decay))
    iterations, stopped, val, kept = _with_checks(
        advance, parameters, validate, val_before, max_iter=max_iter,
        check_every=check_every, patience=patience, select=select)
    with torch.no_grad():
        for p, value in zip(parameters, kept, strict=True):
            p.copy_(value)
    model.after_step()
    train_nll = objective(gradient=False)
    model.eval()
    return Refinement(iterations=iterations, evaluations=objective.evaluations,
                      train_nll=train_nll, val_nll_before=val_before, val_nll=val,
                      stopped=stopped, time_s=time.perf_counter() - started)


class _TrainingNLL:
    """NLL(θ) = -(1/N) Σ_n ln Q_θ(a_n) over all training rows of all ranks, float64 on the
    parameters' device; counts its evaluations with gradient (the L-BFGS closure calls)."""

    def __init__(self, model: QtomoModel, parameters: list[torch.Tensor],
                 batches: Callable[[], Iterable[Batch]], n_rows: int, world: int):
        self.model, self.parameters, self.batches = model, parameters, batches
        self.n_rows, self.world = n_rows, world
        self.evaluations = 0

    def __call__(self, gradient: bool) -> float:
        """The training NLL; with ``gradient``, its gradient accumulated into ``p.grad``."""
        total = torch.zeros((), dtype=torch.float64, device=self.parameters[0].device)
        with torch.set_grad_enabled(gradient):
            for a, counts in self.batches():
                loss = weighted_sum(self.model.training_nll(a), counts) / self.n_rows
                if gradient:
                    loss.backward()
                total += loss.detach().double()
        grads = [p.grad for p in self.parameters] if gradient else []
        return sum_over_ranks(total, *grads, world=self.world).item()


#: runs at most n iterations from the parameters as they are; returns (iterations run, whether
#: the optimiser stopped on its own tolerance before n)
Advance = Callable[[int], tuple[int, bool]]


def _lbfgs(objective: _TrainingNLL, check_every: int) -> Advance:
    """L-BFGS iterations on ``objective``, its curvature history kept across calls."""
    parameters = objective.parameters
    optimizer = torch.optim.LBFGS(parameters, lr=1, max_iter=check_every,
                                  history_size=_HISTORY, line_search_fn="strong_wolfe",
                                  tolerance_grad=_TOLERANCE_GRAD,
                                  tolerance_change=_TOLERANCE_CHANGE)

    def closure() -> float:
        objective.evaluations += 1
        objective.model.train()
        optimizer.zero_grad(set_to_none=False)
        return objective(gradient=True)

    def advance(n: int) -> tuple[int, bool]:
        group = optimizer.param_groups[0]
        group["max_iter"], group["max_eval"] = n, _MAX_EVALUATIONS * n
        before, evaluated = optimizer.state[parameters[0]].get("n_iter", 0), objective.evaluations
        optimizer.step(closure)
        done = optimizer.state[parameters[0]]["n_iter"] - before
        optimizer.zero_grad(set_to_none=True)
        # fewer iterations than asked within the evaluation cap: stopped on a tolerance
        return done, done < n and objective.evaluations - evaluated < group["max_eval"]

    return advance


def _adam(objective: _TrainingNLL, lr: float, weight_decay: float) -> Advance:
    """Full-batch AdamW steps on ``objective``: each parameter's step is scaled by its own
    gradient history, which develops directions that L-BFGS barely moves (the new entries of
    a grown non-negative state); it has no tolerance of its own and runs every step asked."""
    optimizer = torch.optim.AdamW(objective.parameters, lr=lr, weight_decay=weight_decay)

    def advance(n: int) -> tuple[int, bool]:
        for _ in range(n):
            objective.evaluations += 1
            optimizer.zero_grad(set_to_none=False)
            objective(gradient=True)
            optimizer.step()
            objective.model.after_step()
        optimizer.zero_grad(set_to_none=True)
        return n, False

    return advance


def _with_checks(advance: Advance, parameters: list[torch.Tensor],
                 validate: Callable[[], float], val_before: float, *, max_iter: int,
                 check_every: int, patience: int,
                 select: bool) -> tuple[int, str, float, list[torch.Tensor]]:
    """``advance`` in rounds of ``check_every`` iterations, the validation NLL checked after
    each (arguments as :func:`refine`).

    Returns:
        (iterations, why it stopped, validation NLL of the kept parameters, a copy of the kept
        parameters); the model's parameters are left at the last step's.
    """
    best_val, best_state = val_before, _copy(parameters)
    stopped, bad_checks, iterations = "iterations", 0, 0
    while iterations < max_iter:
        asked = min(check_every, max_iter - iterations)
        done, converged = advance(asked)
        iterations += done
        if not all(torch.isfinite(p).all() for p in parameters):
            stopped = "non-finite"
            break
        val = validate()
        if not math.isfinite(val):
            stopped = "non-finite"
            break
        if val < best_val or not select:
            best_val, best_state, bad_checks = val, _copy(parameters), 0
        else:
            bad_checks += 1
        if converged:
            stopped = "converged"
            break
        if bad_checks >= patience:
            stopped = "validation"
            break
    return iterations, stopped, best_val, best_state


def _copy(parameters: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in parameters]
