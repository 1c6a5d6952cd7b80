"""Targets (qtomo.targets): built-in states against explicit dense constructions, files, errors."""

from functools import reduce

import numpy as np
import pytest

from qtomo.errors import QtomoError
from qtomo.simulate import simulate
from qtomo.targets import parse_target
from tests.physics import X, Y, Z, dense_from_mps, dense_tfim, site_operator

L = 4


def basis(bits: str) -> np.ndarray:
    return reduce(np.kron, [np.eye(2)[int(b)] for b in bits]).astype(complex)


def same_state(psi: np.ndarray, phi: np.ndarray) -> bool:
    return abs(abs(np.vdot(psi, phi)) - 1) < 1e-10


def test_ghz_w_cluster_product_match_dense_constructions():
    ghz = (basis("0000") + basis("1111")) / np.sqrt(2)
    w = sum(basis("".join("1" if j == i else "0" for j in range(L))) for i in range(L)) / 2
    plus = reduce(np.kron, [np.array([1, 1]) / np.sqrt(2)] * L)
    cz = [np.diag([(-1) ** (int(f"{s:04b}"[i]) * int(f"{s:04b}"[i + 1])) for s in range(16)])
          for i in range(L - 1)]
    cluster = reduce(np.matmul, cz) @ plus
    phis = {"0": [1, 0], "1": [0, 1], "+": [1, 1], "-": [1, -1], "+i": [1, 1j], "-i": [1, -1j]}
    product = reduce(np.kron, [np.array(phis[s]) / np.linalg.norm(phis[s])
                               for s in ("+i", "-", "0", "-i")])
    for spec, psi in (("ghz", ghz), ("w", w), ("cluster", cluster), ("product:+i-0-i", product)):
        target = parse_target(spec, L)
        assert target.pure and same_state(target.vector(), psi), spec
        assert same_state(dense_from_mps(target.mps), psi), spec
    assert parse_target("ghz", L).is_ghz and not parse_target("w", L).is_ghz


def test_ground_states_match_dense_diagonalisation():
    energies, vectors = np.linalg.eigh(dense_tfim(L, 1.0, 0.7))
    assert same_state(parse_target("tfim:h=0.7", L).vector(), vectors[:, 0])
    heisenberg = sum(site_operator(P, i, L) @ site_operator(P, i + 1, L) * (0.5 if P is Z else 1)
                     for i in range(L - 1) for P in (X, Y, Z))
    energies, vectors = np.linalg.eigh(heisenberg)
    assert energies[1] - energies[0] > 1e-3
    assert same_state(parse_target("xxz:delta=0.5", L).vector(), vectors[:, 0])


def test_large_L_targets_are_mps():
    target = parse_target("tfim:h=1", 14)
    assert target.pure and max(B.shape[2] for B in target.mps) > 1
    assert parse_target("ghz", 40).is_ghz and not parse_target("cluster", 40).is_ghz


def test_files(tmp_path):
    rng = np.random.default_rng(3)
    psi = rng.normal(size=16) + 1j * rng.normal(size=16)
    psi /= np.linalg.norm(psi)
    np.save(tmp_path / "psi.npy", psi)
    np.savetxt(tmp_path / "psi.txt", np.column_stack([psi.real, psi.imag]))
    rho = np.outer(psi, psi.conj()) * 0.6 + np.eye(16) * 0.4 / 16
    np.save(tmp_path / "rho.npy", rho)
    ghz = parse_target("ghz", L)
    np.savez(tmp_path / "ghz.npz", *ghz.mps)
    for name in ("psi.npy", "psi.txt"):
        assert same_state(parse_target(str(tmp_path / name), L).vector(), psi)
    mixed = parse_target(str(tmp_path / "rho.npy"), L)
    assert not mixed.pure and np.allclose(mixed.dense(), rho)
    assert parse_target(str(tmp_path / "ghz.npz"), L).is_ghz
    data = simulate("tfim", L, samples=100, out=tmp_path / "t.h5", seed=1, quiet=True)
    assert same_state(parse_target(str(data), L).vector(), parse_target("tfim:h=1", L).vector())


@pytest.mark.parametrize("spec, message", [
    ("bell", "unknown target 'bell'"),
    ("product:+-", "names 2 sites; the data have L = 4"),
    ("product:+x", "written with 0 1"),
    ("tfim:g=1", "unknown parameter 'g'"),
    ("tfim:h=one", "is not a number"),
    ("ghz:h=1", "ghz takes no parameters"),
])
def test_bad_names(spec, message):
    with pytest.raises(QtomoError, match=message):
        parse_target(spec, L)


def test_bad_files(tmp_path):
    np.save(tmp_path / "long.npy", np.ones(32) / np.sqrt(32))
    np.save(tmp_path / "unnormalised.npy", np.ones(16))
    np.save(tmp_path / "negative.npy", np.diag([1.5, -0.5] + [0] * 14))
    np.save(tmp_path / "trace.npy", np.eye(16))
    cases = {"long.npy": "has L = 5 qubits; the data have L = 4",
             "unnormalised.npy": "is not normalised",
             "negative.npy": "is not positive", "trace.npy": "has trace 16"}
    for name, message in cases.items():
        with pytest.raises(QtomoError, match=message):
            parse_target(str(tmp_path / name), L)
    with pytest.raises(QtomoError, match="degenerate"):
        parse_target("xxz:delta=1", 3)


def test_xxz_target_beyond_exact_diagonalisation_is_the_dmrg_ground_state():
    """L = 14 (above the exact path): the MPS target's energy is the lowest eigenvalue of H in
    the Σ Z = 0 sector, from sparse diagonalisation of that sector."""
    import scipy.sparse.linalg as sla

    from qtomo.states.hamiltonians import XXZ
    from qtomo.states.mps import pauli_sum_expectation

    size, delta = 14, 0.5
    target = parse_target(f"xxz:delta={delta}", size)
    assert target.pure and target.L == size
    hamiltonian = XXZ(size, 1.0, delta)
    index = np.arange(2**size)
    sector = index[np.array([bin(value).count("1") for value in index]) == size // 2]
    block = hamiltonian.sparse_matrix()[sector][:, sector]
    lowest = sla.eigsh(block, k=1, which="SA", tol=1e-12)[0][0]
    energy = pauli_sum_expectation(list(target.mps), hamiltonian.terms())
    assert abs(energy - lowest) < 1e-7
