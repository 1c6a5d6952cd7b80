"""Autoregressive Transformer family ``transformer``: a causal, pre-norm decoder.

Site i reads x_i = e(a_{i-1}) + p_i (embedded previous outcome, start token at i = 0, plus a
learned position embedding) and passes it through ``layers`` pre-norm blocks::

    x ← x + Attn(LN(x)),    x ← x + MLP(LN(x)),     q(· | a_<i) = softmax(W LN(x_i) + b)

with causal multi-head self-attention (``F.scaled_dot_product_attention``) of ``heads`` heads of
width d_model / heads and a GELU MLP of width ``d_ff`` (4 d_model by default). Sampling keeps the
keys and values of every layer in a cache of shape (n, heads, L, d_model / heads), so site i costs
one query against i cached keys instead of a forward pass over the whole prefix. The defaults are
the setting of Cha et al. (2021): 2 layers, d_model = 64, 4 heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qtomo.errors import QtomoError
from qtomo.models.autoregressive import AutoregressiveModel, shift_right
from qtomo.models.base import check_hyperparameter

#: per layer, the (keys, values) caches (n, heads, L, d_head) and the number of sites filled
Cache = tuple[list[tuple[torch.Tensor, torch.Tensor]], int]


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of the Transformer family.

    Args:
        d_model: width of the residual stream (1..4096), divisible by ``heads``.
        heads: attention heads (1..64).
        layers: decoder blocks (1..48).
        d_ff: hidden width of the MLP (1..16384); 0 means 4 d_model.
    """

    d_model: int = 64
    heads: int = 4
    layers: int = 2
    d_ff: int = 0

    def __post_init__(self) -> None:
        check_hyperparameter("transformer", "d_model", self.d_model, low=1, high=4096)
        check_hyperparameter("transformer", "heads", self.heads, low=1, high=64)
        check_hyperparameter("transformer", "layers", self.layers, low=1, high=48)
        check_hyperparameter("transformer", "d_ff", self.d_ff, low=0, high=16384)
        if self.d_model % self.heads:
            raise QtomoError(f"transformer hyperparameter d_model must be a multiple of "
                             f"heads = {self.heads}; got {self.d_model}")


class SelfAttention(nn.Module):
    """Causal multi-head self-attention with an optional key/value cache."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                filled: int = 0) -> torch.Tensor:
        """Causal attention over x (B, T, d) -> (B, T, d).

        With ``cache`` (sampling), x is the one site ``filled`` (T = 1): its key and value are
        written to the cache and its query attends to the sites 0..filled held there.
        """
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is None:  # teacher forcing: q, k, v each (B, heads, T, d_head)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # one query against the cache; plain matmuls beat SDPA's kernel setup on CPU
            keys, values = cache  # (B, heads, L, d_head) each
            keys[:, :, filled:filled + 1] = k
            values[:, :, filled:filled + 1] = v
            # the newest site may see every cached one, so no mask
            scores = q @ keys[:, :, :filled + 1].transpose(2, 3)  # (B, heads, 1, filled + 1)
            weights = torch.softmax(scores * q.shape[-1] ** -0.5, dim=-1)
            y = weights @ values[:, :, :filled + 1]  # (B, heads, 1, d_head)
        return self.out(y.transpose(1, 2).reshape(B, T, d))  # (B, T, d)


class Block(nn.Module):
    """Pre-norm decoder block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d_ff = config.d_ff or 4 * config.d_model
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, d_ff), nn.GELU(),
                                 nn.Linear(d_ff, config.d_model))

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                filled: int = 0) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache, filled)  # (B, T, d)
        return x + self.mlp(self.norm2(x))  # (B, T, d)


class TransformerModel(AutoregressiveModel):
    """Causal Transformer decoder over the records.

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`TransformerConfig`.

    Example:
        >>> model = TransformerModel(L=5, K=4, config=TransformerConfig(d_model=16, heads=2))
        >>> a = model.sample(3, generator=torch.Generator().manual_seed(0))
        >>> model.conditionals(a).exp().sum(-1)          # normalised at every site
        tensor([[1.0000, 1.0000, 1.0000, 1.0000, 1.0000],
                [1.0000, 1.0000, 1.0000, 1.0000, 1.0000],
                [1.0000, 1.0000, 1.0000, 1.0000, 1.0000]], grad_fn=<SumBackward1>)
    """

    family = "transformer"

    def __init__(self, L: int, K: int, config: TransformerConfig) -> None:
        super().__init__(L, K)
        self.config = config
        self.embed = nn.Embedding(K + 1, config.d_model)  # K outcomes + start token
        self.position = nn.Embedding(L, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, K)

    def _decode(self, tokens: torch.Tensor, sites: torch.Tensor, caches: list | None = None,
                filled: int = 0) -> torch.Tensor:
        """Logits (B, T, K) for input tokens (B, T) at site indices ``sites`` (T,)."""
        x = self.embed(tokens) + self.position(sites)  # (B, T, d)
        for layer, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[layer], filled)  # (B, T, d)
        return self.head(self.norm(x))  # (B, T, K)

    def logits(self, a: torch.Tensor) -> torch.Tensor:
        sites = torch.arange(a.shape[1], device=a.device)  # (l,)
        return self._decode(shift_right(a, self.K), sites)  # (B, l, K)

    def step(self, previous: torch.Tensor, state: Cache | None) -> tuple[torch.Tensor, Cache]:
        """One site against the key/value cache: O(filled) attention, O(1) everything else."""
        if state is None:
            n, d_head = previous.shape[0], self.config.d_model // self.config.heads
            shape = (n, self.config.heads, self.L, d_head)
            p = self.head.weight
            state = ([(p.new_empty(shape), p.new_empty(shape)) for _ in self.blocks], 0)
        caches, filled = state
        sites = torch.full((1,), filled, dtype=torch.long, device=previous.device)  # (1,)
        logits = self._decode(previous[:, None], sites, caches, filled)  # (n, 1, K)
        return logits[:, 0], (caches, filled + 1)

    def select_state(self, state: Cache, index: torch.Tensor) -> Cache:
        """Rows ``index`` (m,) of every layer's keys and values, (m, heads, L, d_head) each."""
        caches, filled = state
        return [(keys.index_select(0, index), values.index_select(0, index))
                for keys, values in caches], filled
