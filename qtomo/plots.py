"""The evaluation figure of ``qtomo evaluate --plot`` (matplotlib, no pyplot state, Agg canvas).

Panels: ⟨Z_0 Z_r⟩ against r and ⟨X_i⟩ against i, each for the reference state, the model and
the data alone (error bars: one standard error); and, when the training history JSON written by
:func:`qtomo.train.fit` is given and exists, the training and validation NLL per epoch with the
entropy H(P) of the test records (the floor the NLL approaches).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from qtomo.atomic import atomic_output
from qtomo.errors import QtomoError

__all__ = ["check_plot_path", "plot_evaluation"]

_STYLES = {"model": ("C0", "o"), "data": ("C1", "s")}


def _series(axis, x: np.ndarray, entry: dict, pick) -> None:
    """Reference line, model and data error bars of one observable family."""
    if entry["reference"] is not None:
        axis.plot(x, pick(np.asarray(entry["reference"])), "k-", lw=1.5, label="reference")
    for offset, side in ((-0.08, "model"), (0.08, "data")):
        if entry[side] is None:
            continue
        color, marker = _STYLES[side]
        value, stderr = (pick(np.asarray(entry[side][key])) for key in ("value", "stderr"))
        label = "data only" if side == "data" else side
        axis.errorbar(x + offset, value, yerr=stderr, fmt=marker, color=color, ms=4, capsize=2,
                      label=label)


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


def plot_evaluation(report: dict, path: str | os.PathLike,
                    history: str | os.PathLike | None = None) -> Path:
    """Write the evaluation figure of an :func:`qtomo.evaluate.evaluate` report, atomically.

    Args:
        report: the dict returned by ``evaluate``.
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
    panels = 3 if epochs else 2
    figure = Figure(figsize=(4.2 * panels, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels)
    observables = report["observables"]
    L = report["data"]["L"]
    r = np.arange(1, L)
    _series(axes[0], r, observables["ZZ"], lambda matrix: matrix[0, 1:])
    axes[0].set(xlabel="distance r", ylabel=r"$\langle Z_0 Z_r\rangle$",
                title=r"correlations $\langle Z_0 Z_r\rangle$")
    _series(axes[1], np.arange(L), observables["X"], lambda vector: vector)
    axes[1].set(xlabel="site i", ylabel=r"$\langle X_i\rangle$",
                title=r"transverse field $\langle X_i\rangle$")
    axes[0].legend(fontsize="small")
    if epochs:
        epoch = [row["epoch"] for row in epochs]
        axes[2].plot(epoch, [row["train_nll"] for row in epochs], "C0-", label="train NLL")
        axes[2].plot(epoch, [row["val_nll"] for row in epochs], "C1-", label="validation NLL")
        axes[2].axhline(report["entropy"]["value"], color="k", ls="--", lw=1,
                        label="entropy H(P) (test)")
        axes[2].set(xlabel="epoch", ylabel="nats per record", title="training")
        axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[2].legend(fontsize="small")
    data = report["data"]
    figure.suptitle(f"{data.get('state', '?')}  L = {L}, {data['povm']}  —  model "
                    f"{report['model']['family']}, observables {observables['method']}",
                    fontsize="medium")
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format=suffix, dpi=150)
    return path


def _read_history(history: str | os.PathLike | None) -> list[dict]:
    if history is None or not Path(history).is_file():
        return []
    try:
        return json.loads(Path(history).read_text())["epochs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise QtomoError(f"cannot read the training history {history}: {error}") from None
