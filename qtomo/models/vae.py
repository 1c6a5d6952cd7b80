r"""Variational autoencoder ``vae`` over POVM records (Kingma & Welling 2014; β-VAE, Higgins
et al. 2017; importance-weighted bound, Burda et al. 2016).

A Gaussian latent z ∈ R^d (d = ``latent``) and a decoder that makes the sites independent given
z; an encoder q(z|a) approximates the posterior::

    p(z) = N(z; 0, 1),    p(a|z) = Π_i softmax(D(z))_{i a_i},    Q(a) = ∫ p(z) p(a|z) dz
    q(z|a) = N(z; μ(a), diag σ²(a))                    (encoder E on the one-hot record)

Q(a) is an intractable integral; with log-weights w_s = ln p(a|z_s) + ln p(z_s) − ln q(z_s|a),
z_s ~ q(·|a) independent (the flow family's convention, :mod:`qtomo.models.flow`)::

    log_prob_bound(a) = mean_s w_s              ≤ ln Q(a)   (ELBO; never above the estimate
                                                              on the same draws, by Jensen)
    log_prob(a)       = ln (1/S) Σ_s e^{w_s}    → ln Q(a) as S → ∞  (IWAE; an *estimate*)

Training minimises the β-ELBO with one reparameterised draw z = μ + σ ε, ε ~ N(0, 1), and the
KL term in closed form::

    training_nll(a) = −ln p(a|z) + β KL(q(z|a) ‖ p(z)),   KL = ½ Σ_d (μ_d² + σ_d² − 1 − ln σ_d²)

(β = 1: the negative ELBO, an upper bound of −ln Q; β ≠ 1 trades reconstruction for a smoother
latent and is then no bound). Sampling is exact and ancestral: z ~ N(0, 1), then every site
a_i ~ softmax(D(z))_i at once. Encoder and decoder are MLPs of ``depth`` hidden layers of width
``hidden`` (GELU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qtomo.models.base import QtomoModel, check_hyperparameter, sample_categorical

__all__ = ["VAEConfig", "VAEModel", "mlp"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEConfig:
    """Hyperparameters of :class:`VAEModel`.

    Args:
        latent: dimension d of the Gaussian latent (1..4096).
        hidden: width of the hidden layers of encoder and decoder (1..8192).
        depth: hidden layers of encoder and decoder (1..16).
        beta: weight β ≥ 0 of the KL term of the training objective (1 = the ELBO).
        importance_samples: default S of :meth:`VAEModel.log_prob` (1..2**20).

    Raises:
        QtomoError: for a value out of range.
    """

    latent: int = 16
    hidden: int = 256
    depth: int = 2
    beta: float = 1.0
    importance_samples: int = 256

    def __post_init__(self) -> None:
        check_hyperparameter("vae", "latent", self.latent, low=1, high=4096)
        check_hyperparameter("vae", "hidden", self.hidden, low=1, high=8192)
        check_hyperparameter("vae", "depth", self.depth, low=1, high=16)
        check_hyperparameter("vae", "beta", self.beta, low=0, high=1e6, integer=False)
        check_hyperparameter("vae", "importance_samples", self.importance_samples, low=1,
                             high=2**20)


def mlp(inputs: int, hidden: int, depth: int, outputs: int) -> nn.Sequential:
    """inputs → (Linear, GELU) × depth → Linear(outputs), all widths ``hidden``.

    Example:
        >>> mlp(4, 8, 2, 3)(torch.zeros(5, 4)).shape
        torch.Size([5, 3])
    """
    layers: list[nn.Module] = []
    for width in (inputs,) + (hidden,) * (depth - 1):
        layers += [nn.Linear(width, hidden), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(hidden, outputs))


def _log_normal(x: torch.Tensor) -> torch.Tensor:
    """ln N(x; 0, 1) summed over the last axis."""
    return -0.5 * (x.square().sum(-1) + x.shape[-1] * _LOG_2PI)


class VAEModel(QtomoModel):
    """VAE over records a ∈ {0..K-1}^L (module docstring: formulas and references).

    ``log_prob`` is the importance-weighted *estimate* of ln Q(a); ``log_prob_bound`` the ELBO.

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`VAEConfig`.

    Example (the bound never exceeds the estimate on the same draws; Σ_a Q(a) ≈ 1):
        >>> from qtomo.povm import enumerate_outcomes
        >>> _ = torch.manual_seed(0)
        >>> model = VAEModel(L=2, K=3, config=VAEConfig(latent=2, hidden=8))
        >>> a = torch.from_numpy(enumerate_outcomes(2, 3))
        >>> bound = model.log_prob_bound(a, 64, torch.Generator().manual_seed(1))
        >>> estimate = model.log_prob(a, 64, torch.Generator().manual_seed(1))
        >>> bool((bound <= estimate).all())
        True
        >>> abs(model.log_prob(a, 4096).exp().sum().item() - 1) < 0.01
        True
    """

    family: ClassVar[str] = "vae"
    exact_log_prob: ClassVar[bool] = False

    def __init__(self, L: int, K: int, config: VAEConfig) -> None:
        super().__init__(L, K)
        self.config = config
        D = self.L * self.K
        self.encoder = mlp(D, config.hidden, config.depth, 2 * config.latent)  # → μ, ln σ²
        self.decoder = mlp(config.latent, config.hidden, config.depth, D)  # → logits
        self.register_buffer("eye", torch.eye(self.K), persistent=False)  # one-hot rows

    def encode(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ(a) and ln σ²(a) of q(z|a) for records a (B, L): two (B, d) float tensors."""
        mean, log_var = self.encoder(self.eye[a].flatten(-2)).chunk(2, dim=-1)
        return mean, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """ln p(a_i = k | z) for latents z (…, d): (…, L, K), log-softmax over k."""
        return F.log_softmax(self.decoder(z).unflatten(-1, (self.L, self.K)), dim=-1)

    def _log_likelihood(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ln p(a|z) for a (B, L) and z (S, B, d): (S, B)."""
        log_p = self.decode(z)  # (S, B, L, K)
        return log_p.gather(-1, a.expand(z.shape[0], -1, -1).unsqueeze(-1)).squeeze(-1).sum(-1)

    def log_weights(self, a: torch.Tensor, samples: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance log-weights w_s = ln p(a|z_s) + ln p(z_s) − ln q(z_s|a), z_s ~ q(·|a).

        Args:
            a: LongTensor (B, L). samples: S ≥ 1. generator: random source of the draws.

        Returns:
            (B, S) float; E_q[e^w] = Q(a) and E_q[w] ≤ ln Q(a).

        Raises:
            QtomoError: for bad records (:meth:`check_records`) or S < 1.
        """
        chunks = self.importance_chunks(a, samples)  # bounds the (s, B, L, K) decoder output
        mean, log_var = self.encode(a)  # (B, d) each
        std = (0.5 * log_var).exp()
        weights = []
        for s in chunks:
            eps = torch.randn((s, *mean.shape), generator=generator, device=mean.device,
                              dtype=mean.dtype)  # (s, B, d)
            z = mean + std * eps
            log_q = _log_normal(eps) - 0.5 * log_var.sum(-1)  # ln q(z|a) = ln N(ε) − ln Π σ
            weights.append(self._log_likelihood(a, z) + _log_normal(z) - log_q)  # (s, B)
        return torch.cat(weights).T  # (B, S)

    def log_prob(self, a: torch.Tensor, samples: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-weighted *estimate* ln (1/S) Σ_s e^{w_s} of ln Q(a) (IWAE).

        Args:
            a: LongTensor (B, L). samples: S, default ``config.importance_samples``.
            generator: random source of the draws (default torch's global one).

        Returns:
            (B,) float; its exponential is unbiased for Q(a).
        """
        S = self.config.importance_samples if samples is None else samples
        return torch.logsumexp(self.log_weights(a, S, generator), dim=-1) - math.log(S)

    def log_prob_bound(self, a: torch.Tensor, samples: int = 1,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO mean_s w_s ≤ ln Q(a) (β = 1, S-sample Monte Carlo): (B,) float."""
        return self.log_weights(a, samples, generator).mean(-1)

    def training_nll(self, a: torch.Tensor) -> torch.Tensor:
        """−ln p(a|z) + β KL(q(z|a) ‖ N(0, 1)), one reparameterised draw: (B,) float."""
        mean, log_var = self.encode(a)
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)  # (B, d)
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(-1)  # (B,)
        return -self._log_likelihood(a, z[None])[0] + self.config.beta * kl

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples: z ~ N(0, 1), a_i ~ p(a_i | z) for every site at once.

        Returns:
            LongTensor (n, L) on the model's device.
        """
        z = torch.randn((n, self.config.latent), generator=generator, device=self.device)
        return sample_categorical(self.decode(z), generator)  # (n, L)
