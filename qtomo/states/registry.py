"""The registry of named states behind ``qtomo simulate`` and ``--target NAME``.

Every state qtomo prepares by name is one :class:`NamedState` in :data:`NAMED_STATES`: how to
build it exactly (dense ψ, small L) and as an MPS (any L), which parameters it reads from
:class:`StateParameters`, the field its parameter adds to the default file name, which extra
reference it stores, and whether a target may name it. Callers ask the registry
(:func:`named_state_entry`, :func:`prepare_state`) and never compare a state's name.

How to add a state: write its builders (``qtomo/states/exact.py``, ``mps.py`` or ``named.py``),
add an entry below, and, if a target may name it, its name to :data:`TARGETS`.

Example:
    >>> entry = named_state_entry("tfim")
    >>> entry.file_field({"h": 0.5}), entry.target_parameters
    ('_h0.5', {'h': 1.0, 'J': 1.0})
    >>> named_state_entry("ghz").mps(4, StateParameters()).bond_dimensions
    [2, 2, 2]
    >>> [name for name in TARGETS if name not in NAMED_STATES]   # every target is registered
    []
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qtomo.errors import QtomoError
from qtomo.states import exact
from qtomo.states.exact import ExactState
from qtomo.states.hamiltonians import TFIM, XXZ
from qtomo.states.mps import MPSState, ghz_mps, mps_to_vector, product_mps, tfim_mps
from qtomo.states.named import cluster_mps, w_mps, xxz_ground_state, xxz_mps

__all__ = ["CIRCUIT", "NAMED_STATES", "TARGETS", "GroundStateOf", "NamedState",
           "StateParameters", "dataset_hamiltonian", "named_state_entry", "prepare_state",
           "x_term"]


@dataclass(frozen=True)
class StateParameters:
    """The parameters of every named state; each state reads its own (:data:`NAMED_STATES`).

    Attributes:
        J, h, boundary: TFIM H = −J Σ Z_i Z_{i+1} − h Σ X_i (``"open"`` or ``"periodic"``); J
            is also the XXZ coupling.
        delta: XXZ anisotropy Δ in H = J Σ (XX + YY + Δ ZZ).
        product_state: single-qubit label (0, 1, +, -, +i, -i) of the product state.
        depth, seed: layers of the random brickwork and the seed that draws its gates.
        circuit: an OpenQASM 2 file (path) or a qiskit ``QuantumCircuit``.
        gates, circuit_label: a circuit state's gates and its label (the dataset's ``circuit``
            attribute), set by :func:`prepare_state`.
        chi_max, svd_min, dmrg_seconds: MPS bond cap (DMRG and circuits), discarded weight per
            DMRG truncation and DMRG time budget; None keeps the builder's default.
    """

    J: float = 1.0
    h: float = 1.0
    delta: float = 1.0
    boundary: str = "open"
    product_state: str = "+"
    depth: int | None = None
    seed: int = 0
    circuit: Any = None
    gates: tuple | None = None
    circuit_label: str = ""
    chi_max: int | None = None
    svd_min: float | None = None
    dmrg_seconds: float | None = None

    def dmrg_options(self) -> dict[str, float]:
        """The DMRG options given (``chi_max``, ``svd_min``, ``max_seconds``), as keywords."""
        given = {"chi_max": self.chi_max, "svd_min": self.svd_min,
                 "max_seconds": self.dmrg_seconds}
        return {key: value for key, value in given.items() if value is not None}


#: a builder: (L, parameters) → the state
Builder = Callable[[int, StateParameters], Any]


@dataclass(frozen=True)
class GroundStateOf:
    """The Hamiltonian a named state is the ground state of, as a dataset's root attributes
    give it (docs/conventions.md "The dataset file").

    Attributes:
        label: the dataset in messages, e.g. ``"a TFIM dataset"``.
        attrs: the root attributes it needs.
        build: (L, attrs) → the Hamiltonian (:class:`~qtomo.states.hamiltonians.TFIM`, …),
            which checks the values.
        x_term: what Σ X_i is in H, named in plot titles (the TFIM's ``"transverse field"``).
    """

    label: str
    attrs: tuple[str, ...]
    build: Callable[[int, Mapping[str, Any]], TFIM | XXZ]
    x_term: str = ""

    def from_attrs(self, attrs: Mapping[str, Any], L: int) -> TFIM | XXZ:
        """The Hamiltonian of L qubits; QtomoError naming the attributes missing."""
        missing = [key for key in self.attrs if key not in attrs]
        if missing:
            raise QtomoError(f"{self.label} needs the attribute(s) {', '.join(missing)}")
        return self.build(L, attrs)


@dataclass(frozen=True)
class NamedState:
    """How qtomo builds one named state.

    Attributes:
        name: the name ``--state`` and the dataset's ``state`` attribute use.
        mps: (L, parameters) → :class:`~qtomo.states.mps.MPSState` (the MPS path, any L).
        exact: (L, parameters) → :class:`~qtomo.states.exact.ExactState` (the exact path,
            small L); None: the MPS contracted to ψ.
        file_name: (parameter, format) of the field the default file name carries, e.g.
            ``("h", "_h{:g}")``; None: no field.
        mps_reference: the exact path also stores ``/reference/mps`` (an exact MPS at any L).
        exact_mps: the MPS is the state itself at every L (closed form, no DMRG or truncation);
            a target uses it at every L, the others the dense state up to
            :data:`~qtomo.states.exact.EXACT_MAX_L` and the MPS above.
        target_parameters: the numbers a target spec ``name:key=value,…`` may set, with their
            defaults; None when the spec carries no such parameters.
        site_labels: a target spec names one single-qubit label per site (``product:+-0``).
        ground_state_of: the Hamiltonian whose ground state it is; None for the others.
        requires: (parameter, what to give) the state cannot do without.
        prepare: (L or None, parameters) → (L, parameters with the gates); circuits only.
    """

    name: str
    mps: Builder
    exact: Builder | None = None
    file_name: tuple[str, str] | None = None
    mps_reference: bool = False
    exact_mps: bool = False
    target_parameters: Mapping[str, float] | None = None
    site_labels: bool = False
    ground_state_of: GroundStateOf | None = None
    requires: tuple[str, str] | None = None
    prepare: Callable[[int | None, StateParameters], tuple[int, StateParameters]] | None = None

    def build(self, L: int, parameters: StateParameters, method: str) -> ExactState | MPSState:
        """The state of L qubits on the ``exact`` (dense ψ) or ``mps`` path."""
        if method == "exact" and self.exact is not None:
            return self.exact(L, parameters)
        built = self.mps(L, parameters)
        if method == "exact":
            return ExactState(mps_to_vector(built.tensors), built.attrs)
        return built

    def references(self, built: Any, L: int, parameters: StateParameters) -> dict:
        """``built.references()`` of the state built (maybe followed by a noise channel,
        :func:`qtomo.states.noise.noisy_state`), with the exact MPS of the noiseless state
        added where :attr:`mps_reference` asks."""
        reference = built.references()
        if self.mps_reference and "mps" not in reference:
            reference["mps"] = self.mps(L, parameters).references()["mps"]
        return reference

    def file_field(self, values: Mapping[str, Any]) -> str:
        """The default file name's field for ``values`` (parameter → value), e.g. ``_h1``;
        empty without a field or when its value is None (not given)."""
        if self.file_name is None or values.get(self.file_name[0]) is None:
            return ""
        parameter, template = self.file_name
        return template.format(values[parameter])


def _read_circuit(L: int | None, parameters: StateParameters) -> tuple[int, StateParameters]:
    """L = the circuit's register (a given L must equal it); its gates and label."""
    from qtomo.states.circuit import circuit_gates

    size, gates, label = circuit_gates(parameters.circuit)
    if L is not None and L != size:
        raise QtomoError(f"the circuit {label} has a register of {size} qubits; got L = {L}")
    return size, dataclasses.replace(parameters, gates=tuple(gates), circuit_label=label)


def _draw_brickwork(L: int | None,
                    parameters: StateParameters) -> tuple[int, StateParameters]:
    """L (default :data:`DEFAULT_L`); the Haar brickwork of ``depth`` layers drawn from
    ``seed``."""
    from qtomo.states.circuit import random_brickwork

    L = DEFAULT_L if L is None else L
    gates = random_brickwork(L, parameters.depth, parameters.seed)
    return L, dataclasses.replace(parameters, gates=tuple(gates),
                                  circuit_label=f"random brickwork depth {parameters.depth}")


def _circuit_mps(attrs: Callable[[StateParameters], dict]) -> Builder:
    """The builder of a circuit state: its gates applied to |0…0⟩ (bond cap ``chi_max``,
    default :data:`qtomo.states.circuit.CHI_MAX`), with the dataset attributes ``attrs``."""
    def build(L: int, parameters: StateParameters) -> MPSState:
        from qtomo.states.circuit import CHI_MAX, circuit_state

        chi_max = CHI_MAX if parameters.chi_max is None else parameters.chi_max
        return circuit_state(list(parameters.gates), L, attrs(parameters), chi_max)
    return build


_NO_PARAMETERS: Mapping[str, float] = {}

#: name → how to build it; the order is that of ``--state``'s choices
NAMED_STATES: dict[str, NamedState] = {entry.name: entry for entry in (
    NamedState(
        "tfim",
        mps=lambda L, p: tfim_mps(L, p.J, p.h, boundary=p.boundary, **p.dmrg_options()),
        exact=lambda L, p: exact.tfim_ground_state(L, p.J, p.h, p.boundary),
        file_name=("h", "_h{:g}"), target_parameters={"h": 1.0, "J": 1.0},
        ground_state_of=GroundStateOf(
            label="a TFIM dataset", attrs=("J", "h", "boundary"),
            build=lambda L, a: TFIM(int(L), float(a["J"]), float(a["h"]), str(a["boundary"])),
            x_term="transverse field")),
    NamedState("ghz", mps=lambda L, p: ghz_mps(L), exact=lambda L, p: exact.ghz_state(L),
               mps_reference=True, exact_mps=True, target_parameters=_NO_PARAMETERS),
    NamedState("product", mps=lambda L, p: product_mps(L, p.product_state),
               exact=lambda L, p: exact.product_state(L, p.product_state), exact_mps=True,
               site_labels=True),
    NamedState("w", mps=lambda L, p: w_mps(L), exact_mps=True,
               target_parameters=_NO_PARAMETERS),
    NamedState("cluster", mps=lambda L, p: cluster_mps(L), exact_mps=True,
               target_parameters=_NO_PARAMETERS),
    NamedState(
        "xxz", mps=lambda L, p: xxz_mps(L, p.J, p.delta, **p.dmrg_options()),
        exact=lambda L, p: xxz_ground_state(L, p.J, p.delta),
        file_name=("delta", "_delta{:g}"), target_parameters={"delta": 1.0, "J": 1.0},
        ground_state_of=GroundStateOf(
            label="an XXZ dataset", attrs=("J", "delta"),
            build=lambda L, a: XXZ(int(L), float(a["J"]), float(a["delta"])))),
    NamedState(
        "random-circuit",
        mps=_circuit_mps(lambda p: {"state": "random-circuit", "circuit": p.circuit_label,
                                    "depth": int(p.depth)}),
        file_name=("depth", "_d{}"), requires=("depth", "--depth (layers of the brickwork)"),
        prepare=_draw_brickwork),
    NamedState(
        "circuit", mps=_circuit_mps(lambda p: {"state": "circuit", "circuit": p.circuit_label}),
        requires=("circuit", "a circuit (--circuit FILE.qasm)"), prepare=_read_circuit),
)}
#: the state a given ``circuit`` selects, whatever the state named
CIRCUIT = "circuit"
#: the states a target spec may name, in the order its documentation lists them
TARGETS = ("ghz", "w", "cluster", "product", "tfim", "xxz")
#: qubits when L is not given (a circuit's register otherwise)
DEFAULT_L = 50


def named_state_entry(name: str) -> NamedState:
    """The :class:`NamedState` called ``name``; QtomoError if there is none."""
    if name not in NAMED_STATES:
        raise QtomoError(f"unknown state {name!r}; expected one of {', '.join(NAMED_STATES)}")
    return NAMED_STATES[name]


def prepare_state(name: str, L: int | None,
                  parameters: StateParameters) -> tuple[NamedState, int, StateParameters]:
    """(entry, L, parameters) of the state to simulate, before anything is built.

    A ``circuit`` given selects :data:`CIRCUIT`; L defaults to :data:`DEFAULT_L` (a circuit's
    register); a circuit state's gates are read or drawn here.

    Raises:
        QtomoError: an unknown state, a parameter it requires not given, a circuit that
            cannot be read or whose register is not L.
    """
    entry = named_state_entry(CIRCUIT if parameters.circuit is not None else name)
    if entry.requires is not None and getattr(parameters, entry.requires[0]) is None:
        raise QtomoError(f"--state {entry.name} needs {entry.requires[1]}")
    if entry.prepare is None:
        return entry, DEFAULT_L if L is None else L, parameters
    return (entry, *entry.prepare(L, parameters))


def dataset_hamiltonian(attrs: Mapping[str, Any], L: int) -> TFIM | XXZ | None:
    """The Hamiltonian whose ground state a dataset with root attributes ``attrs`` holds, or
    None for a state without one (GHZ, product, W, cluster, circuits, measured data).

    Raises:
        QtomoError: an attribute the Hamiltonian needs is missing or has an impossible value.

    Example:
        >>> dataset_hamiltonian({"state": "xxz", "J": 1.0, "delta": 0.5}, 4)
        XXZ(L=4, J=1.0, delta=0.5, boundary='open')
    """
    entry = NAMED_STATES.get(attrs.get("state"))
    if entry is None or entry.ground_state_of is None:
        return None
    return entry.ground_state_of.from_attrs(attrs, L)


def x_term(state: str | None) -> str:
    """What Σ X_i is in the Hamiltonian of the named state ``state`` (``"transverse field"``
    for the TFIM), or ``""`` (another state, measured data).

    Example:
        >>> x_term("tfim"), x_term("ghz"), x_term(None)
        ('transverse field', '', '')
    """
    entry = NAMED_STATES.get(state)
    return "" if entry is None or entry.ground_state_of is None else entry.ground_state_of.x_term
