r"""Multinomial restricted Boltzmann machine ``rbm`` over POVM records.

Visible units are the L sites, each one-hot over its K outcomes (v_ik = 1[a_i = k]); H binary
hidden units h_j ∈ {0, 1} couple to them (Carrasquilla et al. 2019's multinomial RBM baseline;
Torlai et al. 2018 and QuCumber use binary visibles)::

    E(a, h) = −Σ_i b_{i a_i} − Σ_j c_j h_j − Σ_ij W_{i a_i, j} h_j
    F(a)    = −ln Σ_h e^{−E(a, h)} = −Σ_i b_{i a_i} − Σ_j softplus(c_j + Σ_i W_{i a_i, j})
    Q(a)    = e^{−F(a)} / Z,        Z = Σ_a e^{−F(a)}

so −F is the exact unnormalised ln Q. ln Z is exact by enumeration of all K^L records when
K^L ≤ :data:`EXACT_MAX_RECORDS`, and otherwise an annealed importance sampling (AIS) estimate
with its standard error (``exact_log_prob`` is then False; the evaluation labels its figures).

Training (contrastive divergence, Hinton 2002; persistent CD, Tieleman 2008). The gradient of
the mean NLL is E_data[∇F] − E_Q[∇F]; the model expectation is replaced by chains of
``gibbs_steps`` = k block Gibbs sweeps started at the data batch (``contrastive="cd"``) or
continued from the previous step's ``chains`` persistent chains (``"pcd"``). ``training_nll``
in train mode returns the surrogate F(a_n) − mean_m F(v_m) (chain samples v_m held constant),
whose gradient is exactly that CD / PCD gradient; it is not an NLL. In eval mode (the trainer's
validation) it returns −ln Q(a).

Sampling: block Gibbs sampling, h ~ Bernoulli(σ(c + W^T v)) then every site at once
a_i ~ softmax_k(b_ik + (W h)_ik), in ``chains`` parallel chains started from the independent
sites softmax(b); ``burn_in`` sweeps are discarded, then one record is kept every ``thinning``
sweeps per chain. Records from one chain are correlated when ``thinning`` is short of the
mixing time, and the chains are biased when ``burn_in`` is: these samples are approximate.

AIS (Neal 2001; Salakhutdinov & Murray 2008) anneals f_β(a) = e^{b·v} Π_j (1 + e^{β(c_j +
(W^T v)_j)}) from β = 0 (independent sites, Z_0 = 2^H Π_i Σ_k e^{b_ik}, sampled exactly) to
β = 1 (the RBM) over ``ais_steps`` equal steps, one Gibbs sweep of the β-scaled RBM (which
leaves f_β invariant) per step, in ``ais_chains`` independent runs with log-weights
w = Σ_t [ln f_{β_t}(v_t) − ln f_{β_{t−1}}(v_t)]::

    ln Ẑ = ln Z_0 + ln mean_m e^{w_m},        stderr ≈ std_m(e^{w_m}) / (√M mean_m e^{w_m})

Ẑ is unbiased for Z; ln Ẑ is biased low by about stderr²/2 (Jensen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from qtomo.errors import QtomoError
from qtomo.estimate import Estimate
from qtomo.models.base import QtomoModel, check_hyperparameter, sample_categorical
from qtomo.povm import enumerate_outcomes

__all__ = ["EXACT_MAX_RECORDS", "RBMConfig", "RBMModel"]

#: ln Z by enumeration up to this many records K^L (4^10 and 6^8 included); AIS above
EXACT_MAX_RECORDS = 2**21
CONTRASTIVE = ("cd", "pcd")
_CHUNK = 2**16


@dataclass(frozen=True)
class RBMConfig:
    """Hyperparameters of the multinomial RBM.

    Args:
        hidden: hidden units H (1..4096).
        gibbs_steps: k, block Gibbs sweeps per training step (1..1000).
        contrastive: ``"pcd"`` (persistent chains) or ``"cd"`` (chains restart at the data).
        chains: persistent chains of PCD, and parallel chains of :meth:`RBMModel.sample`
            (1..2**20).
        burn_in: sweeps discarded before sampling (0..10**6).
        thinning: sweeps between two kept records of one chain (1..10**4).
        ais_steps: annealing steps of the AIS estimate of ln Z (1..10**6).
        ais_chains: independent AIS runs (2..2**20).

    Raises:
        QtomoError: for a value out of range.
    """

    hidden: int = 128
    gibbs_steps: int = 10
    contrastive: str = "pcd"
    chains: int = 256
    burn_in: int = 500
    thinning: int = 10
    ais_steps: int = 2000
    ais_chains: int = 512

    def __post_init__(self) -> None:
        check_hyperparameter("rbm", "hidden", self.hidden, low=1, high=4096)
        check_hyperparameter("rbm", "gibbs_steps", self.gibbs_steps, low=1, high=1000)
        if self.contrastive not in CONTRASTIVE:
            raise QtomoError(f"rbm hyperparameter contrastive must be one of "
                             f"{', '.join(CONTRASTIVE)}; got {self.contrastive!r}")
        check_hyperparameter("rbm", "chains", self.chains, low=1, high=2**20)
        check_hyperparameter("rbm", "burn_in", self.burn_in, low=0, high=10**6)
        check_hyperparameter("rbm", "thinning", self.thinning, low=1, high=10**4)
        check_hyperparameter("rbm", "ais_steps", self.ais_steps, low=1, high=10**6)
        check_hyperparameter("rbm", "ais_chains", self.ais_chains, low=2, high=2**20)


class RBMModel(QtomoModel):
    """Multinomial RBM (module docstring: energy, free energy, training, sampling, AIS).

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`RBMConfig`.

    Example (Σ_a Q(a) = 1 by enumeration, and AIS agrees with the exact ln Z):
        >>> from qtomo.povm import enumerate_outcomes
        >>> _ = torch.manual_seed(0)
        >>> model = RBMModel(L=3, K=4, config=RBMConfig(hidden=8))
        >>> a = torch.from_numpy(enumerate_outcomes(3, 4))
        >>> round(model.log_prob(a).double().exp().sum().item(), 5)
        1.0
        >>> exact = model.log_partition().value
        >>> ais = model.log_partition_ais(300, 256, generator=torch.Generator().manual_seed(1))
        >>> abs(ais.value - exact) < 4 * ais.stderr + 1e-3
        True
    """

    family = "rbm"
    #: the default 3e-3 learns the correlations too slowly (docs/models.md "Model families")
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-2}

    def __init__(self, L: int, K: int, config: RBMConfig) -> None:
        super().__init__(L, K)
        self.config = config
        D = self.L * self.K
        self.weight = nn.Parameter(torch.randn(D, config.hidden) * 0.01)  # W_{ik, j}, row i·K + k
        self.visible_bias = nn.Parameter(torch.zeros(self.L, self.K))  # b_ik
        self.hidden_bias = nn.Parameter(torch.zeros(config.hidden))  # c_j
        # PCD's persistent chains live in the state dict, so that a resumed run continues them
        self.register_buffer("persistent", torch.randint(K, (config.chains, self.L)))
        self.register_buffer("offsets", torch.arange(self.L) * self.K, persistent=False)
        self._log_z: tuple[tuple, Estimate] | None = None

    @property
    def exact_log_prob(self) -> bool:  # type: ignore[override]
        """True when ln Z is computed by enumeration (K^L ≤ :data:`EXACT_MAX_RECORDS`)."""
        return self.K**self.L <= EXACT_MAX_RECORDS

    # --- energies ---------------------------------------------------------------------------

    def _input(self, a: torch.Tensor) -> torch.Tensor:
        """c + W^T v for records a (B, L): (B, H)."""
        return self.hidden_bias + self.weight[a + self.offsets].sum(1)

    def _bias_term(self, a: torch.Tensor) -> torch.Tensor:
        """b · v = Σ_i b_{i a_i} for records a (B, L): (B,)."""
        return self.visible_bias.gather(1, a.T).sum(0)

    def free_energy(self, a: torch.Tensor) -> torch.Tensor:
        """F(a) = −Σ_i b_{i a_i} − Σ_j softplus(c_j + Σ_i W_{i a_i, j}) = −ln Q(a) − ln Z.

        Args:
            a: LongTensor (B, L) of outcomes in 0..K-1.

        Returns:
            (B,) float, differentiable in the parameters.
        """
        return -self._bias_term(a) - F.softplus(self._input(a)).sum(-1)

    # --- Gibbs sampling ---------------------------------------------------------------------

    def gibbs_sweep(self, a: torch.Tensor, beta: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """One block Gibbs sweep a → h → a' of the RBM with couplings scaled by β.

        h_j ~ Bernoulli(σ(β(c_j + (W^T v)_j))), then a'_i ~ softmax_k(b_ik + β (W h)_ik) for
        every site at once; β = 1 is the model, β < 1 the AIS intermediates.

        Args:
            a: LongTensor (n, L). beta: coupling scale in [0, 1]. generator: random source.

        Returns:
            LongTensor (n, L).
        """
        p_h = torch.sigmoid(beta * self._input(a))  # (n, H)
        h = (torch.rand(p_h.shape, generator=generator, device=p_h.device) < p_h).to(p_h.dtype)
        logits = self.visible_bias + beta * (h @ self.weight.T).view(-1, self.L, self.K)
        return sample_categorical(logits, generator)  # (n, L)

    def _independent_sites(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """n records with a_i ~ softmax(b_i) independent (the β = 0 distribution)."""
        return sample_categorical(self.visible_bias.expand(n, -1, -1), generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n records by block Gibbs sampling in min(n, ``chains``) parallel chains.

        Each chain starts from the independent sites softmax(b), runs ``burn_in`` sweeps, then
        keeps one record every ``thinning`` sweeps: burn_in + thinning ⌈n / chains⌉ sweeps.

        Returns:
            LongTensor (n, L) on the model's device (approximate samples: module docstring).
        """
        c = max(1, min(n, self.config.chains))
        a = self._independent_sites(c, generator)
        for _ in range(self.config.burn_in):
            a = self.gibbs_sweep(a, generator=generator)
        kept = []
        for _ in range(math.ceil(n / c)):
            for _ in range(self.config.thinning):
                a = self.gibbs_sweep(a, generator=generator)
            kept.append(a)
        return torch.cat(kept)[:n] if kept else a[:0]

    # --- likelihood -------------------------------------------------------------------------

    def _parameter_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    @torch.no_grad()
    def log_partition(self) -> Estimate:
        """ln Z: exact by enumeration when K^L ≤ :data:`EXACT_MAX_RECORDS` (stderr 0), else
        the AIS estimate of :meth:`log_partition_ais` (fixed seed 0); cached until the
        parameters change.

        Returns:
            :class:`~qtomo.estimate.Estimate` of floats.
        """
        key = self._parameter_key()
        if self._log_z is None or self._log_z[0] != key:
            if self.exact_log_prob:
                value = self.log_partition_exact()
                self._log_z = (key, Estimate.exact(value))
            else:
                generator = torch.Generator(device=self.device).manual_seed(0)
                self._log_z = (key, self.log_partition_ais(generator=generator))
        return self._log_z[1]

    @torch.no_grad()
    def log_partition_exact(self) -> float:
        """ln Z = ln Σ_a e^{−F(a)} over all K^L records, in float64 (needs K^L ≤ 2^31)."""
        if self.K**self.L > 2**31:
            raise QtomoError(f"exact ln Z enumerates K^L records; K^L = {self.K}^{self.L} is "
                             f"too many (use log_partition_ais)")
        every = torch.from_numpy(enumerate_outcomes(self.L, self.K)).to(self.device)
        parts = [torch.logsumexp(-self.free_energy(every[s:s + _CHUNK]).double(), 0)
                 for s in range(0, every.shape[0], _CHUNK)]
        return torch.logsumexp(torch.stack(parts), 0).item()

    @torch.no_grad()
    def log_partition_ais(self, steps: int | None = None, chains: int | None = None,
                          generator: torch.Generator | None = None) -> Estimate:
        """Annealed importance sampling estimate of ln Z with its standard error.

        Args:
            steps: annealing steps T (default ``config.ais_steps``).
            chains: independent runs M (default ``config.ais_chains``).
            generator: random source on the model's device.

        Returns:
            :class:`~qtomo.estimate.Estimate` ``(ln Ẑ, stderr)`` (module docstring).
        """
        T = self.config.ais_steps if steps is None else steps
        M = self.config.ais_chains if chains is None else chains
        if T < 1 or M < 2:
            raise QtomoError(f"AIS needs steps >= 1 and chains >= 2; got {T} and {M}")
        a = self._independent_sites(M, generator)  # exact draws from f_0 / Z_0
        log_z0 = (torch.logsumexp(self.visible_bias.double(), -1).sum()
                  + self.config.hidden * math.log(2)).item()
        log_w = torch.zeros(M, dtype=torch.float64, device=a.device)
        previous = 0.0
        for t in range(1, T + 1):
            beta = t / T
            x = self._input(a)  # (M, H); b·v cancels between f_β and f_β'
            log_w += (F.softplus(beta * x) - F.softplus(previous * x)).sum(-1).double()
            if t < T:
                a = self.gibbs_sweep(a, beta, generator)
            previous = beta
        mean_log_w = torch.logsumexp(log_w, 0).item() - math.log(M)
        ratios = (log_w - log_w.max()).exp()  # (M,)
        stderr = (ratios.std() / (math.sqrt(M) * ratios.mean())).item()
        return Estimate(log_z0 + mean_log_w, stderr)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) = −F(a) − ln Z: exact, or an estimate when ln Z is AIS (``exact_log_prob``).

        Args:
            a: LongTensor (B, L).

        Returns:
            (B,) float; differentiable in the parameters through F only.

        Raises:
            QtomoError: for records of the wrong shape or dtype, or outcomes out of range.
        """
        self.check_records(a)
        return -self.free_energy(a) - self.log_partition().value

    def training_nll(self, a: torch.Tensor) -> torch.Tensor:
        """Train mode: the CD / PCD surrogate F(a_n) − mean_m F(v_m) (module docstring), whose
        gradient is the contrastive-divergence gradient; eval mode: −ln Q(a). (B,) float."""
        if not self.training:
            return -self.log_prob(a)
        with torch.no_grad():
            chains = a if self.config.contrastive == "cd" else self.persistent
            for _ in range(self.config.gibbs_steps):
                chains = self.gibbs_sweep(chains)
            if self.config.contrastive == "pcd":
                self.persistent.copy_(chains)
        return self.free_energy(a) - self.free_energy(chains).mean()
