"""Causal convolutional autoregressive family ``cnn``: a 1D PixelCNN / WaveNet over the sites.

Site i reads the embedded previous outcomes x_j = e(a_{j-1}) (a start token at j = 0) through
``blocks`` stacks of causal dilated convolutions of kernel size k = ``kernel``; layer t of a
stack has dilation k^t, t = 0..m-1, and adds a residual branch::

    y_i = x_i + W_2 GELU(Σ_{s=0}^{k-1} C_s x_{i - s k^t} + c),     q(· | a_<i) = softmax(W h_i + b)

with x_j = 0 for j < 0 (left zero padding), so position i never reads x_{>i}, i.e. outcome
a_{≥i}. Receptive field: one stack sees 1 + (k - 1)(1 + k + … + k^{m-1}) = k^m positions, and
m = max(1, ⌈log_k L⌉) makes k^m ≥ L, so q(· | a_<i) depends on every earlier outcome at every
L (the input at position i is a_{i-1}, hence positions i - L + 1..i cover a_0..a_{i-1}).

Sampling keeps a cache of past activations: every layer's input at every filled position,
(n, L, C) per layer. Step i writes the new input of each layer and reads the k cached inputs
i - s k^t it needs, so a sample costs one step per site, O(k · layers) per step — the "fast
WaveNet" scheme (Paine et al. 2016) — instead of a forward pass over the whole prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qtomo.models.autoregressive import AutoregressiveModel, shift_right
from qtomo.models.base import check_hyperparameter

#: per layer, its input at every filled position (n, L, C), and the number of positions filled
Cache = tuple[list[torch.Tensor], int]


@dataclass(frozen=True)
class CNNConfig:
    """Hyperparameters of the convolutional family.

    Args:
        channels: width C of the embedding and of every layer (1..4096).
        kernel: kernel size k of every causal convolution; dilations are powers of k (2..16).
        blocks: stacks of dilated layers, each of receptive field ≥ L (1..16).
    """

    channels: int = 64
    kernel: int = 2
    blocks: int = 2

    def __post_init__(self) -> None:
        check_hyperparameter("cnn", "channels", self.channels, low=1, high=4096)
        check_hyperparameter("cnn", "kernel", self.kernel, low=2, high=16)
        check_hyperparameter("cnn", "blocks", self.blocks, low=1, high=16)


def dilations(L: int, kernel: int, blocks: int) -> list[int]:
    """Dilations of every layer: (1, k, …, k^{m-1}) per stack, m = max(1, ⌈log_k L⌉).

    Example:
        >>> dilations(6, 2, 2)          # 2^3 = 8 ≥ 6
        [1, 2, 4, 1, 2, 4]
        >>> dilations(10, 3, 1)         # 3^3 = 27 ≥ 10
        [1, 3, 9]
    """
    m, reach = 1, kernel
    while reach < L:
        m, reach = m + 1, reach * kernel
    return [kernel**t for t in range(m)] * blocks


class CausalLayer(nn.Module):
    """y = x + W_2 GELU(causal dilated conv(x)) over (B, l, C) sequences."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel - 1) * self.dilation
        h = self.conv(F.pad(x.transpose(1, 2), (pad, 0)))  # (B, C, l)
        return x + self.out(F.gelu(h.transpose(1, 2)))  # (B, l, C)

    def step(self, history: torch.Tensor, i: int) -> torch.Tensor:
        """Output at position i from the cached inputs ``history`` (n, L, C) filled up to i."""
        taps = [i - s * self.dilation for s in range(self.kernel - 1, -1, -1)]  # oldest first
        window = torch.stack([history[:, t] if t >= 0 else torch.zeros_like(history[:, i])
                              for t in taps], dim=-1)  # (n, C, k)
        h = F.conv1d(window, self.conv.weight, self.conv.bias)[..., 0]  # (n, C)
        return history[:, i] + self.out(F.gelu(h))  # (n, C)


class CNNModel(AutoregressiveModel):
    """Causal dilated convolutional network over the records (module docstring: layout).

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`CNNConfig`.

    Example:
        >>> model = CNNModel(L=5, K=4, config=CNNConfig(channels=8))
        >>> model.dilations
        [1, 2, 4, 1, 2, 4]
        >>> a = model.sample(3, generator=torch.Generator().manual_seed(0))
        >>> model.conditionals(a).exp().sum(-1).allclose(torch.ones(3, 5))
        True
    """

    family = "cnn"

    def __init__(self, L: int, K: int, config: CNNConfig) -> None:
        super().__init__(L, K)
        self.config = config
        self.dilations = dilations(self.L, config.kernel, config.blocks)
        self.embed = nn.Embedding(K + 1, config.channels)  # K outcomes + start token
        self.layers = nn.ModuleList(CausalLayer(config.channels, config.kernel, d)
                                    for d in self.dilations)
        self.norm = nn.LayerNorm(config.channels)
        self.head = nn.Linear(config.channels, K)

    @property
    def receptive_field(self) -> int:
        """Positions one stack of layers sees, k^m ≥ L (module docstring)."""
        return 1 + sum((self.config.kernel - 1) * d for d in self.dilations) // self.config.blocks

    def logits(self, a: torch.Tensor) -> torch.Tensor:
        x = self.embed(shift_right(a, self.K))  # (B, l, C)
        for layer in self.layers:
            x = layer(x)  # (B, l, C)
        return self.head(self.norm(x))  # (B, l, K)

    def step(self, previous: torch.Tensor, state: Cache | None) -> tuple[torch.Tensor, Cache]:
        """One site from the cache of every layer's past inputs: O(k · layers) work."""
        if state is None:
            shape = (previous.shape[0], self.L, self.config.channels)
            state = ([self.head.weight.new_zeros(shape) for _ in self.layers], 0)
        histories, i = state
        x = self.embed(previous)  # (n, C)
        for layer, history in zip(self.layers, histories, strict=True):
            history[:, i] = x
            x = layer.step(history, i)  # (n, C)
        return self.head(self.norm(x)), (histories, i + 1)  # (n, K)

    def select_state(self, state: Cache, index: torch.Tensor) -> Cache:
        """Rows ``index`` (m,) of every layer's cached inputs, (m, L, C) each."""
        histories, i = state
        return [history.index_select(0, index) for history in histories], i

