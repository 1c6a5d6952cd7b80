"""Circuit states: OpenQASM 2 files, qiskit circuits and random brickwork circuits, as MPS.

Qubit order (docs/conventions.md "Conventions"; docs/states-and-circuits.md): QASM qubit ``q[i]`` is
qtomo site i, the first column of a record and the most significant factor of ψ. With several
``qreg`` declarations the registers are concatenated in the order declared. qiskit numbers its
qubits the same way (``circuit.qubits[i]`` is site i) but prints bitstrings and builds
``Statevector`` with qubit 0 least significant: qtomo's ψ is qiskit's with the bit order reversed.

A gate is a (2^k, 2^k) unitary on k listed qubits, the first listed the most significant:
``cx a, b`` is |0⟩⟨0| ⊗ 1 + |1⟩⟨1| ⊗ X with a the control. The circuit acts on |0…0⟩.

Simulation (:class:`CircuitMPS`): the state is an MPS kept in mixed canonical form. A gate on
k qubits is brought onto neighbouring sites by SWAPs, its sites are contracted into one tensor
θ (χ_l, 2^k, χ_r), the gate applied, and θ split again by SVDs from the left with the
orthogonality centre inside θ, so each truncation discards exactly the weight Σ_dropped λ² of
the normalised state. Schmidt values are dropped while their summed weight stays ≤ ``svd_min``
and above the cap ``chi_max``; the summed discarded weight ε bounds the infidelity,
1 − |⟨ψ_exact|ψ⟩|² ≤ ε (to first order), and a circuit with ε > ``max_discarded`` is refused.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qtomo.errors import QtomoError
from qtomo.states.mps import MPSState, right_canonical

__all__ = ["CHI_MAX", "MAX_DISCARDED", "CircuitMPS", "Gate", "circuit_gates", "circuit_state",
           "gate_matrix", "parse_qasm", "qiskit_gates", "random_brickwork", "read_qasm_file"]

#: default bond-dimension cap of circuit MPS
CHI_MAX = 256
#: largest summed discarded weight accepted (1 − fidelity to the untruncated state, to first order)
MAX_DISCARDED = 1e-8
#: Schmidt weight dropped per SVD (relative), as for the DMRG states
SVD_MIN = 1e-14


@dataclass(frozen=True)
class Gate:
    """A unitary on listed qubits.

    Attributes:
        name: gate name (for messages).
        matrix: (2^k, 2^k) complex128, the first listed qubit the most significant factor.
        qubits: k distinct sites.
        line: QASM line number (0 when not from a file).
    """

    name: str
    matrix: np.ndarray
    qubits: tuple[int, ...]
    line: int = 0


# --- the qelib1.inc gates ----------------------------------------------------------------

def _u3(theta: float, phi: float, lam: float) -> np.ndarray:
    """u3(θ, φ, λ) = [[cos θ/2, −e^{iλ} sin θ/2], [e^{iφ} sin θ/2, e^{i(φ+λ)} cos θ/2]]."""
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    return np.array([[c, -np.exp(1j * lam) * s],
                     [np.exp(1j * phi) * s, np.exp(1j * (phi + lam)) * c]])


def _controlled(u: np.ndarray) -> np.ndarray:
    """|0⟩⟨0| ⊗ 1 + |1⟩⟨1| ⊗ U, the control the first (most significant) qubit."""
    k = u.shape[0]
    out = np.eye(2 * k, dtype=np.complex128)
    out[k:, k:] = u
    return out


def _rotation(pauli: np.ndarray, theta: float) -> np.ndarray:
    """exp(−i θ P / 2) for a Pauli product P (P² = 1)."""
    return math.cos(theta / 2) * np.eye(pauli.shape[0]) - 1j * math.sin(theta / 2) * pauli


_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]])
_Z = np.diag([1.0, -1.0]).astype(np.complex128)
_H = np.array([[1, 1], [1, -1]], dtype=np.complex128) / math.sqrt(2)
_SX = np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]) / 2
_SWAP = np.eye(4, dtype=np.complex128)[[0, 2, 1, 3]]

#: name → (number of parameters, number of qubits, matrix of the parameters)
GATES = {
    "id": (0, 1, lambda: np.eye(2)),
    "x": (0, 1, lambda: _X), "y": (0, 1, lambda: _Y), "z": (0, 1, lambda: _Z),
    "h": (0, 1, lambda: _H),
    "s": (0, 1, lambda: np.diag([1, 1j])), "sdg": (0, 1, lambda: np.diag([1, -1j])),
    "t": (0, 1, lambda: np.diag([1, np.exp(1j * math.pi / 4)])),
    "tdg": (0, 1, lambda: np.diag([1, np.exp(-1j * math.pi / 4)])),
    "sx": (0, 1, lambda: _SX), "sxdg": (0, 1, lambda: _SX.conj().T),
    "rx": (1, 1, lambda t: _rotation(_X, t)), "ry": (1, 1, lambda t: _rotation(_Y, t)),
    "rz": (1, 1, lambda t: _rotation(_Z, t)),
    "u1": (1, 1, lambda lam: np.diag([1, np.exp(1j * lam)])),
    "p": (1, 1, lambda lam: np.diag([1, np.exp(1j * lam)])),
    "u2": (2, 1, lambda phi, lam: _u3(math.pi / 2, phi, lam)),
    "u3": (3, 1, _u3), "u": (3, 1, _u3), "U": (3, 1, _u3),
    "cx": (0, 2, lambda: _controlled(_X)), "CX": (0, 2, lambda: _controlled(_X)),
    "cy": (0, 2, lambda: _controlled(_Y)), "cz": (0, 2, lambda: _controlled(_Z)),
    "ch": (0, 2, lambda: _controlled(_H)), "csx": (0, 2, lambda: _controlled(_SX)),
    "swap": (0, 2, lambda: _SWAP),
    "crx": (1, 2, lambda t: _controlled(_rotation(_X, t))),
    "cry": (1, 2, lambda t: _controlled(_rotation(_Y, t))),
    "crz": (1, 2, lambda t: _controlled(_rotation(_Z, t))),
    "cu1": (1, 2, lambda lam: _controlled(np.diag([1, np.exp(1j * lam)]))),
    "cp": (1, 2, lambda lam: _controlled(np.diag([1, np.exp(1j * lam)]))),
    "cu3": (3, 2, lambda *angles: _controlled(_u3(*angles))),
    "rxx": (1, 2, lambda t: _rotation(np.kron(_X, _X), t)),
    "ryy": (1, 2, lambda t: _rotation(np.kron(_Y, _Y), t)),
    "rzz": (1, 2, lambda t: _rotation(np.kron(_Z, _Z), t)),
    "ccx": (0, 3, lambda: _controlled(_controlled(_X))),
    "cswap": (0, 3, lambda: _controlled(_SWAP)),
}


def gate_matrix(name: str, params: tuple[float, ...] = ()) -> np.ndarray:
    """The (2^k, 2^k) complex128 matrix of a qelib1.inc gate (first qubit most significant).

    Example:
        >>> gate_matrix("cx").real.astype(int).tolist()[2:]
        [[0, 0, 0, 1], [0, 0, 1, 0]]
    """
    if name not in GATES:
        raise QtomoError(f"unsupported gate {name!r}; expected one of {', '.join(GATES)}")
    n_params, _, build = GATES[name]
    if len(params) != n_params:
        raise QtomoError(f"gate {name} takes {n_params} parameter(s); got {len(params)}")
    return np.asarray(build(*params), dtype=np.complex128)


# --- OpenQASM 2 ---------------------------------------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_FUNCTIONS = {"sin": math.sin, "cos": math.cos, "tan": math.tan, "exp": math.exp,
              "ln": math.log, "sqrt": math.sqrt}


def _evaluate(text: str, line: int, variables: dict[str, float] | None = None) -> float:
    """A QASM parameter expression (numbers, pi, + − * / ^, sin cos tan exp ln sqrt, and the
    parameters of a gate definition given in ``variables``)."""
    variables = {"pi": math.pi, **(variables or {})}

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id in variables:
            return variables[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS and len(node.args) == 1):
            return _FUNCTIONS[node.func.id](value(node.args[0]))
        raise ValueError

    try:
        result = value(ast.parse(text.strip().replace("^", "**"), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        raise QtomoError(f"line {line}: cannot read the gate parameter {text.strip()!r}; "
                         f"expected numbers, pi, + - * / ^ and sin cos tan exp ln sqrt") from None
    if not math.isfinite(result):
        raise QtomoError(f"line {line}: the gate parameter {text.strip()!r} is not finite")
    return result


_STATEMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*(.*)$", re.S)
_ARGUMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*(\d+)\s*\])?$")
_REFUSED = {"reset": "a reset", "if": "classical control (if)", "opaque": "an opaque gate"}
_DEFINITION = re.compile(
    r"gate\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*([^{]*)\{(.*)\}$", re.S)


def _statements(text: str):
    """(line number, statement) for each ';'-terminated statement or ``gate … { … }``
    definition, comments removed."""
    text = re.sub(r"//[^\n]*", "", text)
    position, line = 0, 1
    while text[position:].strip():
        start = position + len(text[position:]) - len(text[position:].lstrip())
        line += text.count("\n", position, start)
        semicolon, brace = text.find(";", start), text.find("{", start)
        if re.match(r"gate\b", text[start:]) and brace != -1 and not -1 < semicolon < brace:
            end = text.find("}", brace) + 1
            if end == 0:
                raise QtomoError(f"line {line}: gate definition without a closing '}}'")
            position = end
        elif semicolon == -1:
            raise QtomoError(f"line {line}: statement without a closing ';': "
                             f"{text[start:].strip()[:40]!r}")
        else:
            end, position = semicolon, semicolon + 1
        if text[start:end].strip():
            yield line, text[start:end].strip()
        line += text.count("\n", start, position)


def parse_qasm(text: str) -> tuple[int, list[Gate]]:
    """Read an OpenQASM 2 program of qelib1.inc gates: (number of qubits, gates in order).

    ``gate`` definitions (of qelib1.inc gates and earlier definitions) are expanded into one
    unitary per application; ``barrier`` and ``creg`` are ignored; ``measure`` is accepted
    only after the last gate (a final readout). Gates act on indexed qubits ``q[i]`` or
    broadcast over whole registers of one size.

    Raises:
        QtomoError: naming the line, for an unsupported gate, an opaque gate, a reset,
            classical control (``if``), a gate after a measurement, a qubit outside its
            register, a missing header or no ``qreg``.

    Example:
        >>> L, gates = parse_qasm('OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; h q[0];'
        ...                       ' cx q[0], q[1];')
        >>> L, [(gate.name, gate.qubits) for gate in gates]
        (2, [('h', (0,)), ('cx', (0, 1))])
    """
    registers: dict[str, tuple[int, int]] = {}  # name → (first site, size)
    definitions: dict[str, _Definition] = {}
    gates: list[Gate] = []
    measured_line = 0
    statements = _statements(text)  # lazily: a refused statement is named before later ones
    header = next(statements, (0, ""))[1]
    if not re.fullmatch(r"OPENQASM\s+2(\.0)?", header):
        raise QtomoError("the file must start with 'OPENQASM 2.0;'")
    for line, statement in statements:
        keyword = re.match(r"[A-Za-z_][A-Za-z0-9_]*", statement)
        word = keyword.group(0) if keyword else statement[:10]
        if word in _REFUSED:
            raise QtomoError(f"line {line}: {_REFUSED[word]} is not supported; expected "
                             f"qelib1.inc gates on |0…0⟩ and measurements at the end")
        if word in ("include", "barrier", "creg"):
            continue
        if word == "gate":
            definition = _definition(statement, line, definitions)
            definitions[definition.name] = definition
        elif word == "qreg":
            match = re.fullmatch(r"qreg\s+([A-Za-z_][A-Za-z0-9_]*)\s*\[\s*(\d+)\s*\]", statement)
            if match is None or int(match.group(2)) < 1:
                raise QtomoError(f"line {line}: cannot read the register {statement!r}")
            first = sum(size for _, size in registers.values())
            registers[match.group(1)] = (first, int(match.group(2)))
        elif word == "measure":
            measured_line = measured_line or line
        else:
            if measured_line:
                raise QtomoError(f"line {line}: a gate after the measurement on line "
                                 f"{measured_line} (mid-circuit measurement) is not supported")
            gates.extend(_gate_statement(statement, line, registers, definitions))
    if not registers:
        raise QtomoError("the program declares no qreg")
    return sum(size for _, size in registers.values()), gates


@dataclass(frozen=True)
class _Definition:
    """``gate name(params) qubits { body }``: body statements on the formal qubit names."""

    name: str
    params: tuple[str, ...]
    qubits: tuple[str, ...]
    body: tuple[str, ...]


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def _definition(statement: str, line: int, definitions: dict) -> _Definition:
    match = _DEFINITION.match(statement)
    if match is None or not _names(match.group(3)):
        raise QtomoError(f"line {line}: cannot read the gate definition {statement[:40]!r}")
    name = match.group(1)
    if name in GATES or name in definitions:
        raise QtomoError(f"line {line}: gate {name} is already defined")
    body = tuple(part.strip() for part in match.group(4).split(";") if part.strip()
                 and not part.strip().startswith("barrier"))
    return _Definition(name, _names(match.group(2)), _names(match.group(3)), body)


def _application(statement: str, line: int, definitions: dict,
                 variables: dict[str, float] | None = None) -> tuple[str, np.ndarray, list[str]]:
    """(name, matrix, argument texts) of one gate application ``name(params) arg, …``."""
    match = _STATEMENT.match(statement)
    name = match.group(1) if match else statement.split()[0]
    if name not in GATES and name not in definitions:
        raise QtomoError(f"line {line}: unsupported gate {name!r}; expected a qelib1.inc gate "
                         f"({', '.join(GATES)}) or one defined with 'gate'")
    params = tuple(_evaluate(text, line, variables) for text in match.group(2).split(",")) \
        if match.group(2) is not None and match.group(2).strip() else ()
    n_params, n_qubits = (GATES[name][:2] if name in GATES else
                          (len(definitions[name].params), len(definitions[name].qubits)))
    if len(params) != n_params:
        raise QtomoError(f"line {line}: gate {name} takes {n_params} parameter(s); "
                         f"got {len(params)}")
    arguments = [text.strip() for text in match.group(3).split(",")]
    if len(arguments) != n_qubits:
        raise QtomoError(f"line {line}: gate {name} acts on {n_qubits} qubit(s); "
                         f"got {len(arguments)}")
    if name in GATES:
        return name, gate_matrix(name, params), arguments
    return name, _defined_matrix(definitions[name], params, line, definitions), arguments


def _defined_matrix(definition: _Definition, values: tuple[float, ...], line: int,
                    definitions: dict) -> np.ndarray:
    """The (2^k, 2^k) unitary of a defined gate: its body applied to the columns of 1."""
    k = len(definition.qubits)
    columns = np.eye(2**k, dtype=np.complex128).reshape((2,) * k + (2**k,))
    variables = dict(zip(definition.params, values, strict=True))
    for statement in definition.body:
        name, matrix, arguments = _application(statement, line, definitions, variables)
        if any(argument not in definition.qubits for argument in arguments):
            raise QtomoError(f"line {line}: gate {definition.name} applies {name} to "
                             f"{', '.join(arguments)}; expected its qubits "
                             f"{', '.join(definition.qubits)}")
        axes = [definition.qubits.index(argument) for argument in arguments]
        n = len(axes)
        tensor = matrix.reshape((2,) * (2 * n))
        columns = np.moveaxis(np.tensordot(tensor, columns, axes=(list(range(n, 2 * n)), axes)),
                              list(range(n)), axes)
    return columns.reshape(2**k, 2**k)


def _gate_statement(statement: str, line: int, registers: dict,
                    definitions: dict) -> list[Gate]:
    """The gates of one application ``name(params) arg, arg, …`` (broadcast over registers)."""
    name, matrix, texts = _application(statement, line, definitions)
    arguments = [_sites(text, line, registers) for text in texts]
    width = max(len(sites) for sites in arguments)
    if any(len(sites) not in (1, width) for sites in arguments):
        raise QtomoError(f"line {line}: registers of different sizes in one gate")
    out = []
    for k in range(width):
        qubits = tuple(sites[k if len(sites) > 1 else 0] for sites in arguments)
        if len(set(qubits)) != len(qubits):
            raise QtomoError(f"line {line}: gate {name} names qubit {qubits} twice")
        out.append(Gate(name, matrix, qubits, line))
    return out


def _sites(text: str, line: int, registers: dict) -> list[int]:
    match = _ARGUMENT.match(text)
    if match is None or match.group(1) not in registers:
        raise QtomoError(f"line {line}: unknown qubit {text!r}; declared registers: "
                         f"{', '.join(registers) or 'none'}")
    first, size = registers[match.group(1)]
    if match.group(2) is None:
        return list(range(first, first + size))
    index = int(match.group(2))
    if index >= size:
        raise QtomoError(f"line {line}: qubit {text} is outside {match.group(1)}[{size}]")
    return [first + index]


# --- qiskit and random circuits -----------------------------------------------------------

def qiskit_gates(circuit) -> tuple[int, list[Gate]]:
    """(number of qubits, gates) of a qiskit ``QuantumCircuit``; ``circuit.qubits[i]`` is site i.

    Each instruction's ``to_matrix()`` (qiskit: the first qubit least significant) is turned
    into qtomo's order by reversing its qubit axes. Barriers are skipped; measurements are
    accepted after the last gate only.

    Raises:
        QtomoError: for a reset, classical control (control-flow operations), a gate after a
            measurement or an instruction without a unitary matrix.
    """
    from qiskit.circuit import ControlFlowOp
    from qiskit.circuit.exceptions import CircuitError

    gates: list[Gate] = []
    measured = False
    for position, instruction in enumerate(circuit.data):
        operation = instruction.operation
        name = operation.name
        if name == "barrier":
            continue
        if name == "measure":
            measured = True
            continue
        if isinstance(operation, ControlFlowOp) or name == "reset":
            what = "a reset" if name == "reset" else f"classical control ({name})"
            raise QtomoError(f"instruction {position}: {what} is not supported; expected "
                             f"gates, barriers and final measurements")
        if measured:
            raise QtomoError(f"instruction {position} ({name}): a gate after a measurement "
                             f"(mid-circuit measurement) is not supported")
        try:
            matrix = np.asarray(operation.to_matrix(), dtype=np.complex128)
        except CircuitError as error:
            raise QtomoError(f"instruction {position} ({name}) has no unitary matrix "
                             f"({error}); expected gates, barriers and final measurements"
                             ) from None
        k = len(instruction.qubits)
        reversed_axes = list(range(k - 1, -1, -1))
        tensor = matrix.reshape((2,) * (2 * k))
        matrix = tensor.transpose(reversed_axes + [k + axis for axis in reversed_axes])
        qubits = tuple(circuit.find_bit(qubit).index for qubit in instruction.qubits)
        gates.append(Gate(name, matrix.reshape(2**k, 2**k), qubits))
    return circuit.num_qubits, gates


def random_brickwork(L: int, depth: int, seed: int = 0) -> list[Gate]:
    """A brickwork of Haar-random two-qubit gates: layer t acts on (i, i+1) with i ≡ t (mod 2).

    Gates are Haar distributed (QR of a complex Ginibre matrix with the phases of R's diagonal
    divided out, Mezzadri 2007), drawn from ``numpy.random.default_rng(seed)`` layer by layer,
    left to right.

    Example:
        >>> gates = random_brickwork(5, 2)
        >>> [gate.qubits for gate in gates]
        [(0, 1), (2, 3), (1, 2), (3, 4)]
    """
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise QtomoError(f"the circuit depth must be a positive integer; got {depth!r}")
    if isinstance(L, bool) or not isinstance(L, int | np.integer) or L < 2:
        raise QtomoError(f"a random circuit needs an integer L >= 2; got L = {L!r}")
    rng = np.random.default_rng(seed)
    gates = []
    for layer in range(depth):
        for i in range(layer % 2, L - 1, 2):
            ginibre = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
            q, r = np.linalg.qr(ginibre)
            diagonal = np.diag(r)
            gates.append(Gate("haar", q * (diagonal / abs(diagonal)), (i, i + 1)))
    return gates


# --- MPS simulation -----------------------------------------------------------------------

class CircuitMPS:
    """An MPS of L qubits in mixed canonical form that gates act on (module docstring).

    Args:
        L: qubits, starting in |0…0⟩.
        chi_max: bond-dimension cap.
        svd_min: relative Schmidt weight dropped per SVD below the cap.

    Attributes:
        tensors: (χ_i, 2, χ_{i+1}) complex128, left-canonical left of ``center``,
            right-canonical right of it.
        discarded: summed discarded weight so far.
        max_bond: the largest bond dimension reached.
    """

    def __init__(self, L: int, chi_max: int = CHI_MAX, svd_min: float = SVD_MIN) -> None:
        zero = np.zeros((1, 2, 1), dtype=np.complex128)
        zero[0, 0, 0] = 1.0
        self.tensors = [zero.copy() for _ in range(L)]
        self.center = 0
        self.chi_max, self.svd_min = chi_max, svd_min
        self.discarded = 0.0
        self.max_bond = 1

    def apply(self, gate: Gate) -> None:
        """Apply a gate on any qubits: SWAPs bring them next to the first, then back."""
        order = sorted(gate.qubits)
        swaps = []
        for k, site in enumerate(order[1:], start=1):
            for position in range(site - 1, order[0] + k - 1, -1):
                swaps.append(position)
                self._apply_contiguous(_SWAP, position, 2)
        # the gate's qubits now sit at order[0], order[0]+1, … in increasing original order
        k = len(gate.qubits)
        rank = [order.index(qubit) for qubit in gate.qubits]
        axes = [rank.index(j) for j in range(k)]
        matrix = gate.matrix.reshape((2,) * (2 * k)).transpose(axes + [k + a for a in axes])
        self._apply_contiguous(matrix.reshape(2**k, 2**k), order[0], k)
        for position in reversed(swaps):
            self._apply_contiguous(_SWAP, position, 2)

    def _move_center(self, site: int) -> None:
        while self.center < site:
            B = self.tensors[self.center]
            q, r = np.linalg.qr(B.reshape(-1, B.shape[2]))
            self.tensors[self.center] = q.reshape(B.shape[0], 2, -1)
            self.center += 1
            self.tensors[self.center] = np.tensordot(r, self.tensors[self.center], axes=1)
        while self.center > site:
            B = self.tensors[self.center]
            q, r = np.linalg.qr(B.reshape(B.shape[0], -1).T)
            self.tensors[self.center] = q.T.reshape(-1, 2, B.shape[2])
            self.center -= 1
            self.tensors[self.center] = np.tensordot(self.tensors[self.center], r.T, axes=1)

    def _apply_contiguous(self, matrix: np.ndarray, first: int, k: int) -> None:
        """θ = B_first ⋯ B_{first+k−1} (χ_l, 2^k, χ_r); θ ← U θ; split by SVDs from the left."""
        self._move_center(first)
        theta = self.tensors[first]
        for site in range(first + 1, first + k):
            theta = np.tensordot(theta, self.tensors[site], axes=1)
        chi_l, chi_r = theta.shape[0], theta.shape[-1]
        theta = np.einsum("ts,asb->atb", matrix, theta.reshape(chi_l, 2**k, chi_r))
        for site in range(first, first + k - 1):
            rest = theta.reshape(theta.shape[0] * 2, -1)
            u, s, vh = np.linalg.svd(rest, full_matrices=False)
            weights = s**2 / np.sum(s**2)
            tail = np.cumsum(weights[::-1])[::-1]  # tail[j] = weight of values j, j+1, …
            keep = min(self.chi_max, max(1, int(np.sum(tail > self.svd_min))))
            self.discarded += float(weights[keep:].sum())
            self.max_bond = max(self.max_bond, keep)
            self.tensors[site] = u[:, :keep].reshape(theta.shape[0], 2, keep)
            theta = (s[:keep, None] * vh[:keep]) / math.sqrt(np.sum(s[:keep] ** 2))
        self.tensors[first + k - 1] = theta.reshape(theta.shape[0], 2, chi_r)
        self.center = first + k - 1

    def right_canonical_tensors(self) -> list[np.ndarray]:
        """The state as right-canonical tensors (normalised)."""
        return right_canonical(self.tensors)


def circuit_state(gates: list[Gate], L: int, attrs: dict, chi_max: int = CHI_MAX,
                  max_discarded: float = MAX_DISCARDED) -> MPSState:
    """The state the gates prepare from |0…0⟩, as a right-canonical MPS.

    Args:
        gates: in order of application, on sites 0 … L−1.
        L: qubits.
        attrs: provenance (``state`` and its parameters); ``chi_max`` and
            ``truncation_error`` (the summed discarded weight) are added.
        chi_max: bond-dimension cap, at least 1.
        max_discarded: the largest summed discarded weight accepted.

    Raises:
        QtomoError: for a gate outside the register, or when the cap discards more than
            ``max_discarded`` (the message names the gate, its line and the cap).

    Example (a Bell pair):
        >>> state = circuit_state([Gate("h", gate_matrix("h"), (0,)),
        ...                        Gate("cx", gate_matrix("cx"), (0, 1))], 2, {"state": "demo"})
        >>> round(float(state.references()["ZZ"][0, 1]), 12), state.bond_dimensions
        (1.0, [2])
    """
    if isinstance(chi_max, bool) or not isinstance(chi_max, int | np.integer) or chi_max < 1:
        raise QtomoError(f"--chi-max must be an integer >= 1; got {chi_max!r}")
    mps = CircuitMPS(L, int(chi_max))
    for gate in gates:
        if max(gate.qubits) >= L or min(gate.qubits) < 0:
            raise QtomoError(f"gate {gate.name} on qubits {gate.qubits} is outside the "
                             f"register of L = {L} qubits")
        mps.apply(gate)
        if mps.discarded > max_discarded:
            where = f" on line {gate.line}" if gate.line else ""
            raise QtomoError(
                f"the circuit needs a bond dimension above the cap chi_max = {chi_max}: "
                f"discarded weight {mps.discarded:.1e} > {max_discarded:.0e} after gate "
                f"{gate.name}{where}; raise --chi-max")
    full = {**attrs, "chi_max": int(chi_max), "truncation_error": float(mps.discarded)}
    return MPSState(tuple(mps.right_canonical_tensors()), full)


def read_qasm_file(path: str | Path) -> tuple[int, list[Gate]]:
    """:func:`parse_qasm` of a file; the message of a bad file names it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise QtomoError(f"cannot read the circuit file {path}: {error}") from None
    try:
        return parse_qasm(text)
    except QtomoError as error:
        raise QtomoError(f"{path}: {error}") from None


def circuit_gates(circuit) -> tuple[int, list[Gate], str]:
    """(number of qubits, gates, label) of an OpenQASM 2 file or a qiskit ``QuantumCircuit``.

    Args:
        circuit: a path (str or os.PathLike) of a ``.qasm`` file, or a ``QuantumCircuit``.

    Returns:
        The register size, the gates, and a label for the dataset's ``circuit`` attribute:
        the file name, or ``qiskit:<circuit name>``.

    Raises:
        QtomoError: for an unreadable or unsupported circuit, or another kind of object.
    """
    if isinstance(circuit, str | os.PathLike):
        L, gates = read_qasm_file(circuit)
        return L, gates, Path(circuit).name
    try:
        from qiskit import QuantumCircuit
    except ImportError:
        raise QtomoError(f"a circuit must be a .qasm file path or a qiskit QuantumCircuit "
                         f"(qiskit is not installed: pip install 'qtomo[circuits]'); got "
                         f"{type(circuit).__name__}") from None
    if not isinstance(circuit, QuantumCircuit):
        raise QtomoError(f"a circuit must be a .qasm file path or a qiskit QuantumCircuit; got "
                         f"{type(circuit).__name__}")
    L, gates = qiskit_gates(circuit)
    return L, gates, f"qiskit:{circuit.name}"
