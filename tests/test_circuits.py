"""Circuit states: QASM parsing, qubit order, MPS simulation against a dense simulator, qiskit,
the bond cap, and `qtomo simulate --circuit` end to end with its bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.states.circuit import (
    Gate,
    circuit_state,
    gate_matrix,
    parse_qasm,
    qiskit_gates,
    random_brickwork,
)
from qtomo.states.mps import mps_to_vector

from .physics import dense_born

HEADER = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'


def dense_run(gates, L):
    """An independent dense simulator: ψ as an (2,)*L tensor, axis i = qubit i (most
    significant first), each gate contracted on its listed axes in the listed order."""
    psi = np.zeros((2,) * L, dtype=complex)
    psi[(0,) * L] = 1
    for gate in gates:
        k = len(gate.qubits)
        U = gate.matrix.reshape((2,) * (2 * k))
        psi = np.tensordot(U, psi, axes=(list(range(k, 2 * k)), list(gate.qubits)))
        psi = np.moveaxis(psi, list(range(k)), list(gate.qubits))
    return psi.reshape(-1)


def overlap(a, b):
    return abs(np.vdot(a, b)) ** 2 / (np.vdot(a, a).real * np.vdot(b, b).real)


MIXED = HEADER + """qreg q[5];
creg c[5];
h q;                      // broadcast over the register
cx q[0], q[4];            // long range
ccx q[3], q[0], q[2];
u3(0.3, -pi/2, 2*pi/3) q[1];
crz(pi/5) q[4], q[1];
rzz(0.7) q[2], q[0];
cswap q[1], q[4], q[3];
sx q[2]; tdg q[3]; u2(0.1, 0.2) q[0]; ry(-1.1) q[4];
barrier q;
measure q -> c;
"""


def test_qasm_circuit_matches_dense_simulation():
    L, gates = parse_qasm(MIXED)
    assert L == 5 and len(gates) == 5 + 10
    psi = mps_to_vector(circuit_state(gates, L, {"state": "circuit"}).tensors)
    assert overlap(psi, dense_run(gates, L)) == pytest.approx(1.0, abs=1e-12)


def test_qubit_order_q0_is_the_first_column():
    """x q[0] on |000⟩ gives |100⟩: index 4 (q[0] most significant); records start with it."""
    L, gates = parse_qasm(HEADER + "qreg q[3]; x q[0];")
    psi = mps_to_vector(circuit_state(gates, L, {}).tensors)
    assert abs(psi[4]) == pytest.approx(1.0)
    # cx control is the first listed qubit
    L, gates = parse_qasm(HEADER + "qreg q[2]; x q[1]; cx q[1], q[0];")
    assert abs(mps_to_vector(circuit_state(gates, L, {}).tensors)[3]) == pytest.approx(1.0)


def test_gate_matrices_closed_forms():
    theta = 0.37
    assert np.allclose(gate_matrix("u3", (theta, -math.pi / 2, math.pi / 2)),
                       gate_matrix("rx", (theta,)))
    assert np.allclose(gate_matrix("u3", (theta, 0, 0)), gate_matrix("ry", (theta,)))
    rz = gate_matrix("rz", (theta,))
    assert np.allclose(rz, np.diag([np.exp(-0.5j * theta), np.exp(0.5j * theta)]))
    h, cz, cx = gate_matrix("h"), gate_matrix("cz"), gate_matrix("cx")
    assert np.allclose(np.kron(np.eye(2), h) @ cz @ np.kron(np.eye(2), h), cx)
    assert np.allclose(gate_matrix("sx") @ gate_matrix("sx"), gate_matrix("x"))
    assert np.allclose(gate_matrix("u1", (theta,)), gate_matrix("p", (theta,)))
    for name, params in (("ccx", ()), ("cswap", ()), ("cu3", (0.1, 0.2, 0.3)), ("rxx", (0.4,))):
        U = gate_matrix(name, params)
        assert np.allclose(U @ U.conj().T, np.eye(U.shape[0]))


def test_random_brickwork_haar_and_entanglement():
    """Each gate is unitary; |U_00|² of Haar U(4) has mean 1/4 (3000 gates: stderr 0.0035, so
    ±0.01 is about 3 stderr); a depth-d brickwork on L = 12 is simulated exactly (dense
    overlap 1) with χ ≤ 4^⌈d/2⌉ (each gate of a bond's light cone at most quadruples it)."""
    gates = random_brickwork(12, 600, seed=3)
    first = np.array([abs(gate.matrix[0, 0]) ** 2 for gate in gates])
    assert all(np.allclose(g.matrix @ g.matrix.conj().T, np.eye(4)) for g in gates[:50])
    assert abs(first.mean() - 0.25) < 0.01
    for depth in (2, 4, 6):
        gates = random_brickwork(12, depth, seed=depth)
        state = circuit_state(gates, 12, {})
        assert max(state.bond_dimensions) <= 4 ** math.ceil(depth / 2)
        assert overlap(mps_to_vector(state.tensors), dense_run(gates, 12)) == pytest.approx(
            1.0, abs=1e-10)
    assert random_brickwork(6, 3, seed=1)[0].matrix.tolist() == \
        random_brickwork(6, 3, seed=1)[0].matrix.tolist()


def test_bond_cap_refuses_with_the_cap_named():
    gates = random_brickwork(12, 10, seed=0)
    with pytest.raises(QtomoError, match="cap chi_max = 4: discarded weight"):
        circuit_state(gates, 12, {}, chi_max=4)


def test_truncation_error_within_cap_is_recorded():
    gates = random_brickwork(10, 4, seed=5)
    state = circuit_state(gates, 10, {}, chi_max=16)
    assert state.attrs["truncation_error"] < 1e-20 and state.attrs["chi_max"] == 16


@pytest.mark.parametrize("body, message", [
    ("qreg q[2]; h q[0]; foo q[1];", "line 3: unsupported gate 'foo'"),
    ("qreg q[2]; creg c[2]; measure q[0] -> c[0]; h q[1];", "line 3: a gate after the "
                                                            "measurement on line 3"),
    ("qreg q[2];\nreset q[0];", "line 4: a reset is not supported"),
    ("qreg q[2]; creg c[2];\nif(c==1) x q[0];", "line 4: classical control"),
    ("qreg q[2];\nopaque g a;", "line 4: an opaque gate"),
    ("gate g a { h a; foo a; }\nqreg q[1];\ng q[0];", "line 5: unsupported gate 'foo'"),
    ("qreg q[2]; h q[2];", "outside q[2]"),
    ("qreg q[2]; rx(foo) q[0];", "cannot read the gate parameter 'foo'"),
    ("qreg q[2]; rx q[0];", "takes 1 parameter"),
    ("qreg q[2]; cx q[0], q[0];", "twice"),
    ("h q[0];", "unknown qubit"),
])
def test_qasm_bad_input_names_the_line(body, message):
    with pytest.raises(QtomoError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_qasm(HEADER + body)


def test_qasm_gate_definitions_expand_to_their_body():
    """A defined gate (parameters, nested definitions, multi-line body) equals its body."""
    L, gates = parse_qasm(HEADER + """gate my_rzz(theta) a, b {
  cx a, b;
  rz(theta) b;   // a comment inside
  cx a, b;
}
gate twice(t) x, y { my_rzz(t/2) x, y; my_rzz(t/2) x, y; }
qreg q[3];
h q;
twice(0.8) q[2], q[0];
""")
    assert L == 3 and [gate.name for gate in gates] == ["h", "h", "h", "twice"]
    assert gates[-1].line == 11 and gates[-1].qubits == (2, 0)
    np.testing.assert_allclose(gates[-1].matrix, gate_matrix("rzz", (0.8,)), atol=1e-12)


def test_qasm_needs_the_header():
    with pytest.raises(QtomoError, match="OPENQASM 2.0"):
        parse_qasm("qreg q[2]; h q[0];")


def test_qiskit_circuit_matches_statevector_with_reversed_bits():
    qiskit = pytest.importorskip("qiskit")
    from qiskit.quantum_info import Statevector

    circuit = qiskit.QuantumCircuit(4)
    circuit.h(0)
    circuit.cx(0, 3)
    circuit.ry(0.4, 1)
    circuit.cp(0.9, 1, 2)
    circuit.ccx(2, 1, 0)
    circuit.append(qiskit.circuit.library.UnitaryGate(
        random_brickwork(2, 1, seed=2)[0].matrix), [3, 1])
    expected = Statevector(circuit).data  # qiskit: qubit 0 least significant
    expected = expected.reshape((2,) * 4).transpose(3, 2, 1, 0).reshape(-1)
    L, gates = qiskit_gates(circuit)
    psi = mps_to_vector(circuit_state(gates, L, {}).tensors)
    assert overlap(psi, expected) == pytest.approx(1.0, abs=1e-12)
    # the same circuit through OpenQASM 2 text (qiskit writes qelib1 gates or definitions)
    plain = circuit.copy()
    plain.data = plain.data[:-1]
    L, gates = parse_qasm(qiskit.qasm2.dumps(plain))
    expected = Statevector(plain).data.reshape((2,) * 4).transpose(3, 2, 1, 0).reshape(-1)
    assert overlap(mps_to_vector(circuit_state(gates, L, {}).tensors), expected) == \
        pytest.approx(1.0, abs=1e-12)


def test_qiskit_refuses_mid_circuit_measurement_and_reset():
    qiskit = pytest.importorskip("qiskit")
    circuit = qiskit.QuantumCircuit(2, 2)
    circuit.h(0)
    circuit.measure(0, 0)
    circuit.x(1)
    with pytest.raises(QtomoError, match="mid-circuit"):
        qiskit_gates(circuit)
    circuit = qiskit.QuantumCircuit(2)
    circuit.reset(0)
    with pytest.raises(QtomoError, match="a reset"):
        qiskit_gates(circuit)


def test_simulate_circuit_cli_records_match_dense_born(tmp_path):
    path = tmp_path / "mixed.qasm"
    path.write_text(MIXED)
    for method in ("exact", "mps"):
        out = tmp_path / f"{method}.h5"
        assert main(["simulate", "--circuit", str(path), "--povm", "pauli6", "--samples", "300",
                     "--method", method, "--out", str(out), "--quiet"]) == 0
        dataset = read_dataset(out)
        assert dataset.L == 5 and dataset.attrs["state"] == "circuit"
        psi = dense_run(parse_qasm(MIXED)[1], 5)
        rho = np.outer(psi, psi.conj())
        dense = dense_born(rho, dataset.povm.elements, dataset.outcomes()[:100])
        np.testing.assert_allclose(dataset.log_prob()[:100], np.log(dense), atol=1e-9)


@pytest.mark.parametrize("argv, message", [
    (["--circuit", "{bad}"], "line 4: unsupported gate 'foo'"),
    (["--circuit", "{good}", "--L", "3"], "register of 2 qubits; got L = 3"),
    (["--state", "random-circuit", "--L", "14", "--depth", "12", "--chi-max", "4"],
     "cap chi_max = 4"),
    (["--state", "random-circuit", "--L", "6"], "needs --depth"),
    (["--state", "xxz", "--L", "7"], "odd L"),
    (["--circuit", "{missing}"], "cannot read the circuit file"),
])
def test_simulate_circuit_bad_input_exits_2_without_output(argv, message, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = {"bad": HEADER + "qreg q[2];\nfoo q[1];\n", "good": HEADER + "qreg q[2]; h q[0];"}
    for name, text in files.items():
        (inputs / f"{name}.qasm").write_text(text)
    argv = [a.format(bad=inputs / "bad.qasm", good=inputs / "good.qasm",
                     missing=inputs / "none.qasm") for a in argv]
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    assert main(["simulate", *argv, "--samples", "10", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("qtomo: error:") and message in err and "\n" not in err
    assert list(out.parent.iterdir()) == []


def test_gate_outside_register_refused():
    with pytest.raises(QtomoError, match="outside the register"):
        circuit_state([Gate("x", gate_matrix("x"), (3,))], 2, {})
