r"""Argmax flow: a normalising flow over continuous v ∈ R^{L×K} whose argmax is the record.

Design (Hoogeboom et al. 2021, "Argmax Flows and Multinomial Diffusion", arXiv:2102.05379, §3)::

    v ~ p(v)                       p(v) = N(F(v); 0, 1) |det ∂F/∂v|     (flow F: R^{L×K} → R^{L×K})
    a_i = argmax_k v_ik            Q(a) = ∫ p(v) 1[argmax v = a] dv      (i = 0..L-1)

Sampling is one parallel pass over all sites: z ~ N(0, 1)^{L×K}, v = F⁻¹(z), a = argmax. Q(a)
is an integral over the argmax cell C(a) = {v : argmax_k v_ik = a_i ∀i}; a dequantiser q(v|a)
supported on C(a) turns it into an expectation::

    Q(a)    = E_{q(v|a)}[p(v) / q(v|a)]
    ln Q(a) ≥ E_q[ln p(v) − ln q(v|a)]                       (ELBO: the bound, used for training)
    ln Q(a) ≈ ln (1/S) Σ_s p(v_s) / q(v_s|a),  v_s ~ q(·|a)  (importance-weighted: the estimate)

The importance-weighted estimate is a lower bound in expectation too, never looser than the
ELBO on the same draws (Jensen), and tends to ln Q(a) as S → ∞ (Burda et al. 2016, IWAE); its
exponential is an unbiased estimate of Q(a), so Σ_a exp(estimate) ≈ 1.

Dequantiser: the thresholding construction of the paper (§3, "Thresholding"). A conditional flow
gives u ~ q(u|a) on R^{L×K} without constraint; the coordinate of the observed outcome is kept and
is the threshold T_i = u_{i a_i}; the others are pushed below it::

    v_{i a_i} = T_i,      v_ik = T_i − softplus(T_i − u_ik)   (k ≠ a_i)
    ln q(v|a) = ln q(u|a) − Σ_i Σ_{k≠a_i} ln σ(T_i − u_ik)

(triangular Jacobian: ∂v_ik/∂u_ik = σ(T_i − u_ik)). We chose thresholding over variational
dequantisation of integer codes because it needs no ordering of the K outcomes (POVM outcome
labels are unordered), and the cell C(a) is exactly the set that maps to a, so sampling needs no
rejection and no rounding.

Transforms: the dequantiser is a stack of zuko affine coupling transforms (RealNVP,
:class:`zuko.flows.GeneralCouplingTransform`) that receives the one-hot record as context. The
flow F of the continuous density p(v) is chosen by the hyperparameter ``transform``:

- ``"affine"`` (default): affine coupling layers, RealNVP (Dinh et al. 2017),
  v_B ↦ v_B e^{s(v_A)} + t(v_A);
- ``"additive"``: additive coupling layers, NICE (Dinh et al. 2014), v_B ↦ v_B + t(v_A), each
  of unit Jacobian, followed as in NICE (§3.3) by one learned diagonal scaling
  v ↦ v e^{s} + t, the only volume change;
- ``"maf"``: masked autoregressive layers, MAF (Papamakarios et al. 2017,
  :class:`zuko.flows.MaskedAutoregressiveTransform`), v_j ↦ v_j e^{s_j(v_<j)} + t_j(v_<j)
  in the flat order j = i·K + k, reversed every other layer. Density evaluation (training) is
  one pass per layer; sampling inverts each layer in L·K sequential passes, so it is the
  slowest of the three.

Coupling masks split whole sites (all K coordinates of a site on the same side): layer t
conditions on the sites whose bit ⌊t/2⌋ mod ⌈log2 L⌉ is 1 (t even) or 0 (t odd), so every pair of
sites is coupled directly within 2⌈log2 L⌉ layers (the default 6 up to L = 8; beyond, pairs
interact through the composition). A single site (L = 1) splits its K coordinates.
The flat feature index of v_ik is i·K + k.

Example:
    >>> _ = torch.manual_seed(0)
    >>> model = ArgmaxFlow(L=3, K=4, config=FlowConfig(layers=2, hidden=16))
    >>> a = model.sample(5, generator=torch.Generator().manual_seed(1))
    >>> a.shape, a.dtype, bool(((0 <= a) & (a < 4)).all())
    (torch.Size([5, 3]), torch.int64, True)
    >>> gen = torch.Generator().manual_seed(2)
    >>> bound = model.log_prob_bound(a, samples=8, generator=gen)
    >>> estimate = model.log_prob(a, samples=8, generator=gen.manual_seed(2))
    >>> bool((bound <= estimate).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from zuko.flows import GeneralCouplingTransform, MaskedAutoregressiveTransform
from zuko.flows.gaussianization import ElementWiseTransform
from zuko.lazy import LazyComposedTransform, LazyTransform
from zuko.transforms import AdditiveTransform

from qtomo.errors import QtomoError
from qtomo.models.base import QtomoModel, check_hyperparameter

__all__ = ["TRANSFORMS", "ArgmaxFlow", "FlowConfig", "prior_layers"]

_LOG_2PI = math.log(2 * math.pi)
#: choices of ``FlowConfig.transform`` (module docstring)
TRANSFORMS = ("affine", "additive", "maf")


@dataclass(frozen=True)
class FlowConfig:
    """Hyperparameters of :class:`ArgmaxFlow`.

    Args:
        layers: affine coupling layers in the flow F of p(v) (1..256).
        hidden: width of the hidden layers of every coupling network (1..8192).
        depth: hidden layers per coupling network (1..16).
        dequant_layers: conditional coupling layers of the dequantiser q(u|a), after its
            conditional element-wise affine layer (0..256).
        importance_samples: default S of :meth:`ArgmaxFlow.log_prob` (1..2**20).
        transform: layers of F: ``"affine"`` (RealNVP coupling), ``"additive"`` (NICE
            coupling) or ``"maf"`` (masked autoregressive; module docstring).

    Raises:
        QtomoError: for a value out of range.
    """

    layers: int = 6
    hidden: int = 128
    depth: int = 2
    dequant_layers: int = 2
    importance_samples: int = 64
    transform: str = "affine"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise QtomoError(f"flow hyperparameter transform must be one of "
                             f"{', '.join(TRANSFORMS)}; got {self.transform!r}")
        check_hyperparameter("flow", "layers", self.layers, low=1, high=256)
        check_hyperparameter("flow", "hidden", self.hidden, low=1, high=8192)
        check_hyperparameter("flow", "depth", self.depth, low=1, high=16)
        check_hyperparameter("flow", "dequant_layers", self.dequant_layers, low=0, high=256)
        check_hyperparameter("flow", "importance_samples", self.importance_samples, low=1,
                             high=2**20)


def _log_normal(x: torch.Tensor) -> torch.Tensor:
    """ln N(x; 0, 1) of (B, D) rows; returns (B,)."""
    return -0.5 * (x.square().sum(-1) + x.shape[-1] * _LOG_2PI)


def coupling_masks(L: int, K: int, n: int) -> list[torch.Tensor]:
    """The n boolean (L·K,) masks of the coupling layers; True = conditioning (unchanged) side.

    Example:
        >>> [m.view(4, 2)[:, 0].int().tolist() for m in coupling_masks(4, 2, 4)]
        [[0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]]
    """
    if L == 1:
        side = torch.arange(K) % 2 == 1  # (K,)
        return [side ^ bool(t % 2) for t in range(n)]
    bits = max(1, math.ceil(math.log2(L)))
    site = torch.arange(L)
    masks = []
    for t in range(n):
        side = (site >> ((t // 2) % bits)) & 1 == 1  # (L,)
        masks.append((side ^ bool(t % 2)).repeat_interleave(K))  # (L·K,)
    return masks


def prior_layers(L: int, K: int, config: FlowConfig) -> list[LazyTransform]:
    """The ``config.layers`` layers of F (v → z) of the chosen ``config.transform``.

    Example:
        >>> [type(t).__name__ for t in prior_layers(2, 2, FlowConfig(layers=2,
        ...                                                          transform="additive"))]
        ['GeneralCouplingTransform', 'GeneralCouplingTransform', 'ElementWiseTransform']
    """
    D = L * K
    mlp = {"hidden_features": (config.hidden,) * config.depth}
    if config.transform == "maf":
        order = torch.arange(D)
        return [MaskedAutoregressiveTransform(D, order=order if t % 2 == 0 else order.flip(0),
                                              **mlp) for t in range(config.layers)]
    if config.transform == "additive":
        couplings = [GeneralCouplingTransform(D, mask=mask, univariate=AdditiveTransform,
                                              shapes=((),), **mlp)
                     for mask in coupling_masks(L, K, config.layers)]
        return [*couplings, ElementWiseTransform(D)]
    return [GeneralCouplingTransform(D, mask=mask, **mlp)
            for mask in coupling_masks(L, K, config.layers)]


class ArgmaxFlow(QtomoModel):
    """Argmax flow over records a ∈ {0..K-1}^L (module docstring: formulas, reference, layout).

    ``log_prob`` is an importance-weighted *estimate* of ln Q(a); ``log_prob_bound`` is the
    variational lower bound (ELBO) that training minimises through ``training_nll``.

    Args:
        L: qubits (≥ 1).
        K: outcomes per qubit (≥ 2).
        config: hyperparameters.

    Raises:
        QtomoError: L < 1 or K < 2.

    Example (Σ_a Q(a) = 1 over all K^L records, up to the noise of the estimate):
        >>> _ = torch.manual_seed(0)
        >>> model = ArgmaxFlow(L=2, K=2, config=FlowConfig(layers=2, hidden=8))
        >>> every = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
        >>> gen = torch.Generator().manual_seed(0)
        >>> total = model.log_prob(every, samples=4096, generator=gen).exp().sum()
        >>> abs(total.item() - 1) < 0.02
        True
    """

    family: ClassVar[str] = "flow"
    exact_log_prob: ClassVar[bool] = False

    def __init__(self, L: int, K: int, config: FlowConfig) -> None:
        check_hyperparameter("flow", "L", L, low=1)
        check_hyperparameter("flow", "K", K, low=2)
        super().__init__(L, K)
        self.config = config
        D = self.L * self.K
        mlp = {"hidden_features": (config.hidden,) * config.depth}
        self.prior = LazyComposedTransform(*prior_layers(self.L, self.K, config))  # v → z
        self.dequantizer = LazyComposedTransform(
            ElementWiseTransform(D, context=D, **mlp),
            *(GeneralCouplingTransform(D, context=D, mask=mask, **mlp)
              for mask in coupling_masks(self.L, self.K, config.dequant_layers)),
        )  # ε → u, given the one-hot record
        for transform in (*self.prior.transforms, *self.dequantizer.transforms):
            # Zero output layers start every transform at the identity (as in Glow): Q is uniform
            # and q(v|a) a thresholded standard normal, so the importance weights are tame at
            # step 0 and the first steps do not blow up.
            if hasattr(transform, "hyper"):
                nn.init.zeros_(transform.hyper[-1].weight)
                nn.init.zeros_(transform.hyper[-1].bias)
            else:  # NICE's unconditional scaling: its parameters are (ln scale, shift)
                for phi in transform.phi:
                    nn.init.zeros_(phi)
        self.register_buffer("eye", torch.eye(self.K), persistent=False)  # one-hot rows

    def log_density(self, v: torch.Tensor) -> torch.Tensor:
        """ln p(v) = ln N(F(v); 0, 1) + ln |det ∂F/∂v| for v (B, L, K) float; returns (B,)."""
        z, ladj = self.prior().call_and_ladj(v.flatten(-2))  # (B, L·K), (B,)
        return _log_normal(z) + ladj

    def dequantize(self, a: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The dequantiser's map ε ↦ v inside the argmax cell of a, with ln q(v|a).

        u = G(ε | onehot(a)) (conditional flow), then thresholding (module docstring), so
        ln q(v|a) = ln N(ε; 0, 1) − ln |det ∂v/∂ε|.

        Args:
            a: LongTensor (B, L) of outcomes in 0..K-1.
            eps: base noise (B, L, K) float, standard normal for a draw v ~ q(·|a).

        Returns:
            v (B, L, K) with argmax_k v_ik = a_i, and ln q(v|a) (B,), both float.
        """
        onehot = self.eye[a]  # (B, L, K)
        u, ladj = self.dequantizer(onehot.flatten(-2)).call_and_ladj(eps.flatten(-2))  # (B, L·K)
        log_q = _log_normal(eps.flatten(-2)) - ladj
        u = u.unflatten(-1, (self.L, self.K))  # (B, L, K)
        threshold = u.gather(-1, a.unsqueeze(-1))  # (B, L, 1)
        gap = threshold - u  # (B, L, K), zero at the observed outcome
        v = torch.where(onehot.bool(), u, threshold - F.softplus(gap))
        log_q = log_q - (F.logsigmoid(gap) * (1 - onehot)).sum((-2, -1))
        return v, log_q

    def log_weights(
        self, a: torch.Tensor, samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Importance log-weights w_s = ln p(v_s) − ln q(v_s|a), v_s ~ q(·|a) independent.

        Args:
            a: LongTensor (B, L).
            samples: S ≥ 1.
            generator: random source (default: torch's global one).

        Returns:
            (B, S) float; E_q[exp w] = Q(a) and E_q[w] ≤ ln Q(a).

        Raises:
            QtomoError: for bad records (:meth:`check_records`) or S < 1.
        """
        chunks = self.importance_chunks(a, samples)
        B = a.shape[0]
        weights = []
        for s in chunks:  # draws for one record are rows s·B + b
            rows = a.repeat(s, 1)  # (s·B, L)
            eps = torch.randn(rows.shape + (self.K,), generator=generator, device=a.device,
                              dtype=self.eye.dtype)
            v, log_q = self.dequantize(rows, eps)
            weights.append((self.log_density(v) - log_q).view(s, B))
        return torch.cat(weights).T  # (B, S)

    def log_prob(
        self,
        a: torch.Tensor,
        samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Importance-weighted *estimate* of ln Q(a) = ln (1/S) Σ_s p(v_s)/q(v_s|a).

        Consistent: it converges to ln Q(a) as S grows; exp of it is unbiased for Q(a).

        Args:
            a: LongTensor (B, L) of outcomes in 0..K-1.
            samples: S; default ``config.importance_samples`` (64).
            generator: random source of the draws (default: torch's global one).

        Returns:
            (B,) float on the model's device.

        Raises:
            QtomoError: for records of the wrong shape or dtype, or outcomes out of range.
        """
        S = self.config.importance_samples if samples is None else samples
        return torch.logsumexp(self.log_weights(a, S, generator), dim=-1) - math.log(S)

    def log_prob_bound(
        self, a: torch.Tensor, samples: int = 1, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Variational lower *bound* (ELBO) E_q[ln p(v) − ln q(v|a)] ≤ ln Q(a), S-sample mean.

        With the same draws it never exceeds :meth:`log_prob` (Jensen). Training uses S = 1.

        Args:
            a: LongTensor (B, L).
            samples: draws averaged, S ≥ 1.
            generator: random source (default: torch's global one).

        Returns:
            (B,) float, differentiable in the parameters of p and q.
        """
        return self.log_weights(a, samples, generator).mean(-1)

    def training_nll(self, a: torch.Tensor) -> torch.Tensor:
        """Per-record −ELBO (one draw), an upper bound of −ln Q(a); (B,) float."""
        return -self.log_prob_bound(a)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples, all sites in one pass: a = argmax_k F⁻¹(z), z ~ N(0, 1)^{L×K}.

        Returns:
            LongTensor (n, L) on the model's device.
        """
        z = torch.randn((n, self.L * self.K), generator=generator, device=self.device,
                        dtype=self.eye.dtype)
        v = self.prior().inv(z)  # (n, L·K)
        return v.view(n, self.L, self.K).argmax(-1)
