r"""Generative adversarial network ``gan`` over POVM records: Wasserstein GAN with gradient
penalty (WGAN-GP, Gulrajani et al. 2017), generator outputs relaxed by the straight-through
Gumbel-softmax (Jang et al. 2017).

The generator G maps noise z ∈ R^d (d = ``latent``) to logits of every site; a record is one
draw per site, so Q is a mixture of product distributions that only its samples define::

    z ~ N(0, 1),   g_ik ~ Gumbel(0, 1),   a_i = argmax_k (G(z)_ik + g_ik)
    x = onehot(a) − s.detach() + s,        s_i = softmax((G(z)_i + g_i) / τ)

(the straight-through sample x equals onehot(a) in the forward pass and has the gradient of
the relaxed s, τ = ``temperature``). The critic D scores flattened one-hot records (L·K,) and is
trained to estimate the Wasserstein-1 distance between the data P and Q, with the two-sided
penalty on its gradient at random interpolates x̂ = u x_real + (1 − u) x_fake, u ~ U(0, 1)::

    critic:     E_Q[D(x)] − E_P[D(x)] + λ E_x̂[(‖∇D(x̂)‖ − 1)²]     (λ = ``penalty``)
    generator:  −E_Q[D(x)]                                           (every ``critic_steps``)

Why WGAN-GP rather than the standard GAN with an R1 penalty: real and generated records are
one-hot vectors, vertices of the simplex, whose supports coincide only when Q = P; a
Jensen–Shannon discriminator saturates on such disjoint supports and stops giving the generator
gradients, while the Wasserstein critic's gradient stays informative, and WGAN-GP is the variant
shown to train on discrete sequences (the character-level language model of Gulrajani et al.).

There is no likelihood: ``log_prob`` raises a one-line QtomoError. Training goes through the
trainer's hook :meth:`GANModel.train_step` (its own critic and generator updates with the
trainer's one optimizer, Adam betas (0.5, 0.9) through ``optimizer_defaults``), and model
selection through ``training_nll``, which here is *not* an
NLL but the per-record share of the squared maximum mean discrepancy (Gretton et al. 2012)
between the records and 4 096 model samples drawn with a fixed seed, without its data-only term::

    v(a_n) = mean_{m≠m'} k(y_m, y_m') − 2 mean_m k(a_n, y_m),    k(x, y) = exp(−2 d_H(x, y) / L)
    mean_n v(a_n) = MMD²(P, Q) − E_P[k(a, a')]  (minimal at Q = P; d_H: Hamming distance)

The kernel is a product of strictly positive-definite kernels on the sites, so MMD² = 0 only at
Q = P.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qtomo.errors import QtomoError
from qtomo.models.base import QtomoModel, check_hyperparameter
from qtomo.models.vae import mlp

__all__ = ["GANConfig", "GANModel"]

#: model samples of the validation criterion (module docstring)
MMD_SAMPLES = 4096


@dataclass(frozen=True)
class GANConfig:
    """Hyperparameters of :class:`GANModel`.

    Args:
        latent: dimension d of the generator's noise (1..4096).
        hidden: width of the hidden layers of generator and critic (1..8192).
        depth: hidden layers of generator and critic (1..16).
        critic_steps: critic updates per generator update (1..100).
        penalty: weight λ > 0 of the gradient penalty.
        temperature: τ > 0 of the Gumbel-softmax relaxation of the straight-through gradient.

    Raises:
        QtomoError: for a value out of range.
    """

    latent: int = 16
    hidden: int = 256
    depth: int = 2
    critic_steps: int = 5
    penalty: float = 10.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        check_hyperparameter("gan", "latent", self.latent, low=1, high=4096)
        check_hyperparameter("gan", "hidden", self.hidden, low=1, high=8192)
        check_hyperparameter("gan", "depth", self.depth, low=1, high=16)
        check_hyperparameter("gan", "critic_steps", self.critic_steps, low=1, high=100)
        check_hyperparameter("gan", "penalty", self.penalty, low=1e-12, high=1e6, integer=False)
        check_hyperparameter("gan", "temperature", self.temperature, low=1e-3, high=1e3,
                             integer=False)


class GANModel(QtomoModel):
    """WGAN-GP over records a ∈ {0..K-1}^L (module docstring: objective, reasons, criterion).

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`GANConfig`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = GANModel(L=3, K=4, config=GANConfig(hidden=8))
        >>> model.sample(5, generator=torch.Generator().manual_seed(1)).shape
        torch.Size([5, 3])
        >>> model.log_prob(torch.zeros(1, 3, dtype=torch.long))
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: gan has no log_prob (an implicit model: samples only)
    """

    family: ClassVar[str] = "gan"
    exact_log_prob: ClassVar[bool] = False
    has_log_prob: ClassVar[bool] = False
    makes_own_step: ClassVar[bool] = True
    #: Adam's first-moment decay 0.5 and second 0.9 (Gulrajani et al.): with the default 0.9 the
    #: momentum carries the generator around the critic's moving optimum and F_c stalls near 0.97
    optimizer_defaults: ClassVar[dict] = {"betas": (0.5, 0.9)}
    #: the moving average of the weights is what makes the oscillating iterates usable
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "ema": 0.999, "batch_size": 128}

    def __init__(self, L: int, K: int, config: GANConfig) -> None:
        super().__init__(L, K)
        self.config = config
        D = self.L * self.K
        self.generator = mlp(config.latent, config.hidden, config.depth, D)  # z → logits
        self.critic = mlp(D, config.hidden, config.depth, 1)  # one-hot record → score
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # critic updates
        self.register_buffer("eye", torch.eye(self.K), persistent=False)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        raise QtomoError("gan has no log_prob (an implicit model: samples only)")

    def generate(self, n: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """n records and their straight-through one-hot relaxations (module docstring).

        Returns:
            a LongTensor (n, L) and x float (n, L·K), equal to onehot(a) with the gradient of
            the Gumbel-softmax.
        """
        z = torch.randn((n, self.config.latent), generator=generator, device=self.eye.device)
        logits = self.generator(z).unflatten(-1, (self.L, self.K))  # (n, L, K)
        u = torch.rand(logits.shape, generator=generator, device=logits.device)
        perturbed = logits - torch.log(-torch.log(u.clamp_min(1e-20)))  # + Gumbel noise
        a = perturbed.argmax(-1)  # (n, L)
        soft = F.softmax(perturbed / self.config.temperature, dim=-1)
        x = self.eye[a] - soft.detach() + soft  # (n, L, K)
        return a, x.flatten(-2)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples of Q: z ~ N(0, 1), a_i = argmax_k (G(z)_ik + Gumbel): (n, L)."""
        return self.generate(n, generator)[0]

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """E_x̂[(‖∇D(x̂)‖ − 1)²] at random interpolates of real and fake rows (B, L·K)."""
        u = torch.rand((real.shape[0], 1), device=real.device)
        mixed = (u * real + (1 - u) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self.critic(mixed).sum(), mixed, create_graph=True)
        return (grad.norm(dim=-1) - 1).square().mean()

    def train_step(self, a: torch.Tensor, optimizer: torch.optim.Optimizer,
                   clip: float = 0.0) -> torch.Tensor:
        """One critic update, and a generator update every ``critic_steps`` calls.

        The trainer's hook for families that make their own update (:mod:`qtomo.train`): one
        ``optimizer`` holds all parameters; each update leaves the other network's gradients
        ``None``, so the optimizer step moves only the network being trained.

        Args:
            a: LongTensor (B, L), a batch of data records.
            optimizer: the trainer's optimizer over all parameters.
            clip: gradient-norm clip of each update (0 = none).

        Returns:
            the critic loss of this step (scalar tensor, detached): what the trainer logs as
            its training figure.
        """
        real = self.eye[a].flatten(-2)  # (B, L·K)
        fake = self.generate(a.shape[0])[1].detach()
        loss = (self.critic(fake).mean() - self.critic(real).mean()
                + self.config.penalty * self._penalty(real, fake))
        self._update(loss, optimizer, self.critic, clip)
        self.updates += 1
        if int(self.updates) % self.config.critic_steps == 0:
            generated = self.generate(a.shape[0])[1]
            self._update(-self.critic(generated).mean(), optimizer, self.generator, clip)
        return loss.detach()

    def _update(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, network: nn.Module,
                clip: float) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trained = {id(p) for p in network.parameters()}
        for p in self.parameters():
            if id(p) not in trained:
                p.grad = None  # so that the step leaves the other network as it is
        if clip:
            nn.utils.clip_grad_norm_(network.parameters(), clip)
        optimizer.step()

    @torch.no_grad()
    def training_nll(self, a: torch.Tensor) -> torch.Tensor:
        """Per-record MMD² share v(a_n) (module docstring; not an NLL): (B,) float.

        Deterministic: the model samples come from a generator seeded 0.
        """
        seeded = torch.Generator(device=self.eye.device).manual_seed(0)
        y = self.eye[self.sample(MMD_SAMPLES, seeded)].flatten(-2)  # (M, L·K)
        x = self.eye[a].flatten(-2)  # (B, L·K)
        scale = 2.0 / self.L  # k = exp(−scale · d_H), d_H = L − x·y for one-hot rows

        def kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return torch.exp(-scale * (self.L - u @ v.T))

        k_yy = kernel(y, y)  # (M, M)
        M = y.shape[0]
        model_term = (k_yy.sum() - k_yy.diagonal().sum()) / (M * (M - 1))
        return model_term - 2 * kernel(x, y).mean(-1)
