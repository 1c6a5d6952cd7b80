"""Recurrent autoregressive families ``rnn``, ``gru`` and ``lstm``: one core, three cells.

Site i reads the embedded previous outcome e(a_{i-1}) (a start token at i = 0), updates a stack
of ``layers`` recurrent cells of width ``hidden``, and maps the top hidden state to K logits::

    h_i = cell(e(a_{i-1}), h_{i-1}),        q(· | a_<i) = softmax(W h_i + b)

Teacher forcing runs the cell over the whole record (cuDNN on GPU); sampling carries h_i from
site to site, so it costs one cell step per site. The 3 × 100 GRU of Carrasquilla et al. (2019)
is ``build("gru", L=…, K=…, hidden=100, layers=3)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from qtomo.models.autoregressive import AutoregressiveModel, shift_right
from qtomo.models.base import check_hyperparameter


@dataclass(frozen=True)
class RecurrentConfig:
    """Hyperparameters of the recurrent families.

    Args:
        hidden: width of the embedding and of every hidden state (1..4096).
        layers: number of stacked cells (1..16).
    """

    hidden: int = 64
    layers: int = 2

    def __post_init__(self) -> None:
        check_hyperparameter("recurrent", "hidden", self.hidden, low=1, high=4096)
        check_hyperparameter("recurrent", "layers", self.layers, low=1, high=16)


class RecurrentModel(AutoregressiveModel):
    """Autoregressive recurrent network; subclasses choose the cell (``torch.nn.RNN/GRU/LSTM``).

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`RecurrentConfig`.

    Example:
        >>> model = GRUModel(L=4, K=4, config=RecurrentConfig(hidden=8, layers=1))
        >>> a = model.sample(3, generator=torch.Generator().manual_seed(0))
        >>> model.log_prob(a).shape
        torch.Size([3])
    """

    cell: ClassVar[type[nn.RNNBase]]

    def __init__(self, L: int, K: int, config: RecurrentConfig) -> None:
        super().__init__(L, K)
        self.config = config
        self.embed = nn.Embedding(K + 1, config.hidden)  # K outcomes + start token
        self.core = self.cell(config.hidden, config.hidden, num_layers=config.layers,
                              batch_first=True)
        self.head = nn.Linear(config.hidden, K)

    def logits(self, a: torch.Tensor) -> torch.Tensor:
        x = self.embed(shift_right(a, self.K))  # (B, l, hidden)
        h, _ = self.core(x)  # (B, l, hidden)
        return self.head(h)  # (B, l, K)

    def step(self, previous: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        """One cell step; the state is the stack of hidden states ((h, c) for the LSTM)."""
        x = self.embed(previous)[:, None]  # (n, 1, hidden)
        h, state = self.core(x, state)  # (n, 1, hidden)
        return self.head(h[:, 0]), state  # (n, K)

    def select_state(self, state: object, index: torch.Tensor) -> object:
        """Rows ``index`` (m,) of the hidden states (layers, n, hidden) (and cells, LSTM)."""
        if isinstance(state, tuple):  # LSTM: (h, c)
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)  # (layers, m, hidden)


class RNNModel(RecurrentModel):
    """Elman cells, h_i = tanh(W x_i + U h_{i-1} + b)."""

    family = "rnn"
    cell = nn.RNN


class GRUModel(RecurrentModel):
    """Gated recurrent units (the default family)."""

    family = "gru"
    cell = nn.GRU


class LSTMModel(RecurrentModel):
    """Long short-term memory cells."""

    family = "lstm"
    cell = nn.LSTM
