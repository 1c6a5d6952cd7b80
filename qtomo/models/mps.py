"""Physical model families ``mps`` and ``lpdo``: a quantum state whose Born distribution is Q.

Instead of a distribution over records, these families hold the state itself (README
"Physical model families"), in the conventions of :mod:`qtomo.states.mps`::

    mps:   ψ(s) = A_0^{s_0} A_1^{s_1} ⋯ A_{L-1}^{s_{L-1}},      A_i (χ_i, 2, χ_{i+1})
    lpdo:  ρ = Tr_κ |X⟩⟨X|,  X(s, q) = A_0^{s_0 q_0} ⋯,          A_i (χ_i, 2, κ, χ_{i+1})
    Q(a) = Tr(M_a ρ) / Tr ρ                                    (Born rule of the data's POVM)

so ρ ≥ 0 by construction and ``kraus`` = κ = 1 is the ``mps`` family. ln Q of a batch is the
exact, differentiable contraction :func:`qtomo.states.mps_sampler.born_log_prob` (the one the MPS
sampler uses), and maximum likelihood runs through the ordinary trainer. Bond dimensions are
χ_i = min(chi, d^i, d^(L−i)) with d = 2κ (larger bonds would be redundant).

Parameters are float64 tensors, the real and imaginary parts in a trailing axis of 2 (real
tensors with ``real=1``, the prior of states with real amplitudes, as the TFIM and GHZ ground
states); ``after_step`` rescales every tensor to unit norm, which leaves Q unchanged (Q is
normalised by Tr ρ) and keeps the tensors well conditioned. Initialisation: the product state
|+…+⟩ in the first bond and Kraus channel of every tensor plus Gaussian noise of total relative
size 0.3 (docs/models.md "Physical model families" for the measurements behind it).

``tensors()`` gives the state back: the normalised, right-canonical tensors as numpy complex128
arrays (the public contract of SPEC §3); ``sample`` is the exact batched sampler
:class:`~qtomo.states.mps_sampler.MPSDistribution` on them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from qtomo.errors import QtomoError
from qtomo.heldout import HeldOut
from qtomo.models.base import QtomoModel, check_hyperparameter
from qtomo.povm import POVM, PerQubitPOVM, povm_elements
from qtomo.states.mps import right_canonical
from qtomo.states.mps_sampler import MPSDistribution, born_log_prob, born_log_prob_bytes
from qtomo.sweeps import PATIENCE, SweepResult, amplitude_vectors, sweep, sweep_bytes

_NOISE = 0.3  # relative size of the random part of the initial tensors
_GROWTH_NOISE = 0.02  # size of a grown tensor's new entries, relative to its typical entry
#: bond dimensions a size search tries (docs/physical-fits.md): steps of at most ×2, no 3 (TFIM
#: L = 50 from 10^5 records, two datasets: χ = 2 → 4 kept χ = 4 at fidelity 0.973 in 31–32 s,
#: 2 → 3 → 4 kept χ = 4 at 0.961–0.962 in 45–47 s, the held-out NLL worse too)
_CHI_LADDER = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class MPSConfig:
    """Hyperparameters of the ``mps`` family.

    Args:
        chi: largest bond dimension χ (1..1024).
        real: 1 for real tensors (states with real amplitudes), 0 for complex.
        positive: 1 for real non-negative tensors, hence amplitudes ψ(s) ≥ 0 (QuCumber's
            positive wave function; implies ``real`` = 1), 0 for none.
    """

    chi: int = 4
    real: int = 0
    positive: int = 0
    kraus: ClassVar[int] = 1  # a pure state: not a hyperparameter

    def __post_init__(self) -> None:
        _check_sizes("mps", self)


@dataclass(frozen=True)
class LPDOConfig:
    """Hyperparameters of the ``lpdo`` family.

    Args:
        chi: largest bond dimension χ (1..1024).
        kraus: Kraus (purification) dimension κ per site (1..64); κ = 1 is a pure state.
        real: 1 for real tensors, 0 for complex.
        positive: 1 for real non-negative tensors (ρ with non-negative entries; implies
            ``real`` = 1), 0 for none.
    """

    chi: int = 4
    kraus: int = 2
    real: int = 0
    positive: int = 0

    def __post_init__(self) -> None:
        check_hyperparameter("lpdo", "kraus", self.kraus, low=1, high=64)
        _check_sizes("lpdo", self)


def _check_sizes(family: str, config: MPSConfig | LPDOConfig) -> None:
    """Check chi, real and positive; ``positive`` = 1 sets ``real`` = 1 (non-negative tensors
    are real)."""
    check_hyperparameter(family, "chi", config.chi, low=1, high=1024)
    check_hyperparameter(family, "real", config.real, low=0, high=1)
    check_hyperparameter(family, "positive", config.positive, low=0, high=1)
    if config.positive:
        object.__setattr__(config, "real", 1)


class LPDOModel(QtomoModel):
    """ρ = Tr_κ |X⟩⟨X| as a locally purified MPS; Q(a) = Tr(M_a ρ) / Tr ρ exactly.

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`LPDOConfig`; povm: the records' POVM
            (K elements).

    Example (a fresh model is normalised: Σ_a Q(a) = 1 over all 4^3 records):
        >>> from qtomo.povm import enumerate_outcomes, get_povm
        >>> model = LPDOModel(3, 4, LPDOConfig(chi=2, kraus=2), get_povm("pauli4"))
        >>> a = torch.from_numpy(enumerate_outcomes(3, 4))
        >>> round(float(model.log_prob(a).detach().exp().sum()), 12)
        1.0
        >>> [B.shape for B in model.tensors()]
        [(1, 2, 2, 2), (2, 2, 2, 2), (2, 2, 2, 1)]
    """

    family = "lpdo"
    needs_povm = True
    #: local sweeps from the initial state: they reach the maximum likelihood in seconds where
    #: Adam and L-BFGS took minutes (docs/physical-fits.md "Sweeps"); the Adam settings apply
    #: where --epochs is given
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 3e-2, "batch_size": 1024, "ema": 0.9,
                                                 "epochs": 0, "sweeps": 8}
    #: non-negative tensors (``positive``) cannot sweep: full-batch Adam then L-BFGS, measured
    #: on TFIM L = 10 and 12 and GHZ L = 8 (docs/models.md "Physical model families"); the
    #: mini-batch settings apply where --epochs is given
    gradient_train_defaults: ClassVar[dict[str, Any]] = {"lr": 3e-2, "batch_size": 1024,
                                                          "ema": 0.9, "epochs": 0,
                                                          "full_batch": 500, "refine": 500}
    #: real tensors generalise better from few records where the state allows them, complex
    #: ones are needed where it does not: measured in docs/training.md "Choosing hyperparameters"
    selection_defaults: ClassVar[dict[str, tuple]] = {"real": (1, 0)}
    sizes: ClassVar[dict[str, tuple[int, ...]]] = {"chi": _CHI_LADDER, "kraus": (1, 2, 3, 4, 6, 8)}
    #: the first size from two seeds: a mixed state's likelihood has separate maxima (depolarized
    #: TFIM L = 6: 0.898 from two seeds, 0.871 from one; docs/training.md "Restarts for
    #: GHZ-like states")
    search_restarts: ClassVar[int] = 2
    #: records without X/Y outcomes fix |ψ(s)|² only: the positive prior, not a selection of
    #: real vs complex on noise (docs/measured-data.md)
    unphased_defaults: ClassVar[dict[str, Any]] = {"positive": 1, "real": 1}

    @classmethod
    def train_defaults_for(cls, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The sweeps, or Adam and L-BFGS where ``positive`` = 1 is among the values given."""
        positive = hyperparameters.get("positive", 0)
        if 1 in (positive if isinstance(positive, list) else [positive]):
            return dict(cls.gradient_train_defaults)
        return dict(cls.train_defaults)

    def __init__(self, L: int, K: int, config: LPDOConfig | MPSConfig,
                 povm: POVM | PerQubitPOVM) -> None:
        super().__init__(L, K)
        self.config, self.povm = config, povm
        self.kappa = config.kraus
        self.chi = _bonds(L, config)  # χ_0 … χ_L
        # (K, 2, 2) complex128, or (L, K, 2, 2) when the POVM differs from qubit to qubit
        self.register_buffer("povm_elements", torch.tensor(povm_elements(povm, L)))
        parts = () if config.real else (2,)  # complex: (re, im) in a trailing axis
        sites = []
        for i in range(L):
            shape = (self.chi[i], 2, self.kappa, self.chi[i + 1], *parts)
            A = _NOISE * torch.randn(shape, dtype=torch.float64) / np.sqrt(np.prod(shape[:4]))
            plus = A[0, :, 0, 0, 0] if parts else A[0, :, 0, 0]  # real part of channel 0
            plus.fill_(1 / np.sqrt(2))  # |+⟩
            if config.positive:  # the tensor is A ⊙ A (see site_tensors)
                A = A.abs().sqrt()
            sites.append(nn.Parameter(A / A.norm()))
        self.sites = nn.ParameterList(sites)

    def grows(self, name: str, value: int) -> bool:
        """Whether ``chi`` or ``kraus`` = ``value`` gives larger tensors than this model's."""
        config = dataclasses.replace(self.config, **{name: value})
        return _bonds(self.L, config) != _bonds(self.L, self.config) or \
            config.kraus != self.config.kraus

    def grown(self, **sizes: int) -> LPDOModel:
        """The same state with larger ``chi`` and/or ``kraus``: every tensor embedded in the
        leading block of the larger one, the new entries Gaussian of relative size 0.02. The
        state moves only by products of two new entries (fidelity to the old state above
        0.9999), and the gradient in the new directions is not zero. (Noise on the old entries
        too cost TFIM L = 50's χ = 6 stage 0.016 nats per record of validation NLL, a
        half-sweep to win back.)"""
        larger = type(self)(self.L, self.K, dataclasses.replace(self.config, **sizes), self.povm)
        with torch.no_grad():
            for old, new in zip(self.sites, larger.sites, strict=True):
                scale = _GROWTH_NOISE * old.norm() / math.sqrt(old.numel())
                new.copy_(scale * torch.randn_like(new))
                new[tuple(slice(0, n) for n in old.shape)] = old
        return larger.to(self.povm_elements.device)

    def training_bytes(self, records: int) -> int:
        """Peak bytes of ln Q and its gradient over ``records`` rows
        (:func:`~qtomo.states.mps_sampler.born_log_prob_bytes`)."""
        return born_log_prob_bytes(self.chi, self.kappa, self.K, records)

    def sweep_bytes(self, records: int) -> int:
        """Peak bytes of the sweeps (:func:`qtomo.sweeps.sweep_bytes`)."""
        amplitudes = amplitude_vectors(self.povm_elements, self.kappa, max(self.chi)) is not None
        return sweep_bytes(self.chi, records, amplitudes=amplitudes)

    def sweep_refusal(self) -> str | None:
        """Non-negative tensors (``positive``) stay so only under gradient steps: a sweep's
        gauge moves (QR) would make them signed."""
        if self.config.positive:
            return (f"the {self.family} model with positive = 1 (non-negative tensors) cannot "
                    f"sweep")
        return None

    def sweep(self, records: torch.Tensor, n_rows: int, validate: Callable[[], HeldOut], *,
              max_sweeps: int, patience: int = PATIENCE, world: int = 1,
              quiet: bool = True, counts: torch.Tensor | None = None) -> SweepResult:
        """Local maximum-likelihood sweeps over the sites (:func:`qtomo.sweeps.sweep`)."""
        refusal = self.sweep_refusal()
        if refusal is not None:
            raise QtomoError(refusal)
        elements = self.povm_elements.expand(self.L, *self.povm_elements.shape[-3:])

        @torch.no_grad()
        def store(sites: list[torch.Tensor]) -> None:
            for parameter, site in zip(self.sites, sites, strict=True):
                parameter.copy_(site)

        return sweep(list(self.sites), bool(self.config.real), elements, records, n_rows,
                     store, validate, max_sweeps=max_sweeps, patience=patience, world=world,
                     quiet=quiet, counts=counts)

    @torch.no_grad()
    def set_tensors(self, tensors: list[np.ndarray]) -> None:
        """Make the model hold a given state, e.g. to start a fit from an expected state.

        Args:
            tensors: L arrays (χ_l, 2, χ_r) (a pure state) or (χ_l, 2, κ', χ_r), any gauge and
                norm, each no larger than this model's tensor at that site (padded with zeros).

        Raises:
            QtomoError: a tensor larger than the model's, or complex amplitudes for a model
                with real tensors.
        """
        if len(tensors) != self.L:
            raise QtomoError(f"the state has {len(tensors)} tensors; the model has L = {self.L}")
        for i, (site, A) in enumerate(zip(self.sites, tensors, strict=True)):
            A = np.asarray(A, dtype=np.complex128)
            A = A.reshape(A.shape[0], 2, -1, A.shape[-1])  # (χl, 2, κ', χr)
            shape = tuple(site.shape[:4])
            if any(n > m for n, m in zip(A.shape, shape, strict=True)):
                raise QtomoError(f"tensor {i} has shape {A.shape}; the model holds at most "
                                 f"{shape} there (raise --chi or --kraus)")
            if self.config.real and np.abs(A.imag).max() > 1e-12 * np.abs(A).max():
                raise QtomoError(f"tensor {i} is complex; the model has real tensors (real=0)")
            if self.config.positive and A.real.min() < -1e-12 * np.abs(A).max():
                raise QtomoError(f"tensor {i} has negative entries; the model has non-negative "
                                 f"tensors (positive=1)")
            if self.config.positive:
                A = np.sqrt(np.clip(A.real, 0.0, None))
            padded = np.zeros(shape, dtype=np.complex128)
            padded[tuple(slice(0, n) for n in A.shape)] = A
            value = torch.from_numpy(padded.real if self.config.real else padded)
            site.copy_(value if self.config.real else torch.view_as_real(value))

    def site_tensors(self) -> list[torch.Tensor]:
        """The tensors A_i as complex128 torch tensors (χ_i, 2, κ, χ_{i+1}), differentiable, in
        the training gauge and norm (use :meth:`tensors` for the normalised state); with
        ``positive`` the parameters' squares A ⊙ A, non-negative by construction."""
        if self.config.positive:
            return [(A * A).to(torch.complex128) for A in self.sites]
        if self.config.real:
            return [A.to(torch.complex128) for A in self.sites]
        return [torch.view_as_complex(A) for A in self.sites]

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        """ln Q(a) = ln Tr(M_a ρ) − ln Tr ρ for LongTensor a (B, L): float64 (B,), exact.

        Raises:
            QtomoError: for records of the wrong shape or dtype, or outcomes out of range.
        """
        self.check_records(a)
        return born_log_prob(self.site_tensors(), self.povm_elements, a)

    @torch.no_grad()
    def after_step(self) -> None:
        """Rescale every tensor to unit Frobenius norm (Q is unchanged)."""
        for A in self.sites:
            A /= A.norm()

    def tensors(self) -> list[np.ndarray]:
        """The normalised state as right-canonical numpy complex128 tensors.

        Returns:
            L arrays (χ_i, 2, κ, χ_{i+1}) (``lpdo``) or (χ_i, 2, χ_{i+1}) (``mps``),
            χ_0 = χ_L = 1, with Σ_{s,q} A^{s,q} A^{s,q}† = 1 at every site and Tr ρ = 1.
        """
        with torch.no_grad():
            raw = [A.detach().cpu().numpy() for A in self.site_tensors()]
        return [self._public_shape(A) for A in right_canonical(raw)]

    def _public_shape(self, A: np.ndarray) -> np.ndarray:
        return A

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n records drawn exactly from Q (the batched MPS sampler on :meth:`tensors`);
        LongTensor (n, L) on the model's device."""
        return MPSDistribution(self.tensors(), self.povm, device=self.device).sample(n, generator)


def _bonds(L: int, config: LPDOConfig | MPSConfig) -> list[int]:
    """χ_i = min(chi, d^i, d^(L−i)), d = 2κ, for i = 0 … L: larger bonds would be redundant."""
    d = 2 * config.kraus
    return [min(config.chi, d**i, d ** (L - i)) for i in range(L + 1)]


class MPSModel(LPDOModel):
    """A pure state ψ as an MPS; Q(a) = ⟨ψ|M_a|ψ⟩ / ⟨ψ|ψ⟩ exactly (an LPDO with κ = 1).

    Args:
        L: qubits; K: outcomes per qubit; config: :class:`MPSConfig`; povm: the records' POVM.

    Example (χ = 1 starts at |+…+⟩, up to the noise; for pauli4 Q(1, 1) ≈ (1/3)²):
        >>> from qtomo.povm import get_povm
        >>> model = MPSModel(2, 4, MPSConfig(chi=1, real=1), get_povm("pauli4"))
        >>> bool(abs(model.log_prob(torch.tensor([[1, 1]])).detach().exp() - 1 / 9) < 0.02)
        True
        >>> [B.shape for B in model.tensors()]
        [(1, 2, 1), (1, 2, 1)]
    """

    family = "mps"
    sizes: ClassVar[dict[str, tuple[int, ...]]] = {"chi": _CHI_LADDER}
    #: one seed: the sweeps' phase search finds a GHZ-like phase basin from any start, and two
    #: seeds reached the same maximum (TFIM L = 100: the same NLL to 4·10^-7 nats per record;
    #: docs/training.md "Restarts for GHZ-like states")
    search_restarts: ClassVar[int] = 1

    def __init__(self, L: int, K: int, config: MPSConfig, povm: POVM | PerQubitPOVM) -> None:
        super().__init__(L, K, config, povm)

    def _public_shape(self, A: np.ndarray) -> np.ndarray:
        return A.reshape(A.shape[0], 2, A.shape[-1])
