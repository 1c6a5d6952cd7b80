"""The ``qtomo`` command line: a thin layer that parses, calls the Python API and prints (SPEC §4).

Every subcommand takes ``--quiet``, ``--seed`` and ``--device``. Bad input raises a
:class:`qtomo.errors.QtomoError`, printed as one line ``qtomo: error: …`` with exit status 2;
any other exception is an internal failure (traceback, exit status 1).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from qtomo import __version__
from qtomo.errors import QtomoError
from qtomo.povm import POVM_NAMES


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in qtomo's one-line form (exit 2)."""

    def error(self, message: str) -> None:
        raise QtomoError(message)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars or chatter")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# --- simulate -------------------------------------------------------------------------------

def _add_simulate_parser(subparsers) -> None:
    from qtomo.simulate import DEFAULT_SAMPLES, METHODS, STATES

    parser = subparsers.add_parser(
        "simulate", help="sample POVM records of a quantum state into an HDF5 dataset",
        description="Sample informationally complete POVM measurements of a state and write "
                    "them, with exact ln P of every record and reference values, to HDF5.")
    parser.add_argument("--state", choices=STATES, default="tfim", help="state (default tfim)")
    parser.add_argument("--L", type=_positive_int, default=50, help="qubits (default 50)")
    parser.add_argument("--J", type=_finite_float, default=1.0, help="TFIM coupling (default 1)")
    parser.add_argument("--h", type=_finite_float, default=1.0, help="TFIM field (default 1)")
    parser.add_argument("--boundary", choices=("open", "periodic"), default="open",
                        help="TFIM boundary conditions (default open)")
    parser.add_argument("--product-state", default="+",
                        help="single-qubit state of --state product: 0, 1, +, -, +i, -i")
    parser.add_argument("--povm", choices=POVM_NAMES, default="pauli4",
                        help="POVM (default pauli4)")
    parser.add_argument("--samples", type=_positive_int, default=DEFAULT_SAMPLES,
                        help=f"number of records N (default {DEFAULT_SAMPLES})")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="exact, mps, or auto = exact up to the exact limit (default auto)")
    parser.add_argument("--chi-max", type=int, default=None,
                        help="MPS bond-dimension cap for DMRG")
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default data/<state>_L<L>[_h<h>]_<povm>.h5)")
    _common_options(parser)


def _run_simulate(args: argparse.Namespace) -> int:
    from qtomo.data import read_dataset
    from qtomo.simulate import simulate

    path = simulate(
        args.state, args.L, J=args.J, h=args.h, boundary=args.boundary,
        product_state=args.product_state, povm=args.povm, samples=args.samples,
        method=args.method, chi_max=args.chi_max, seed=args.seed, device=args.device,
        out=args.out, quiet=args.quiet,
    )
    if not args.quiet:
        print(f"wrote {path}")
        _print_dataset(read_dataset(path))
    return 0


# --- info -----------------------------------------------------------------------------------

def _add_info_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="describe a dataset or a checkpoint",
                                   description="Describe what a dataset or checkpoint holds.")
    parser.add_argument("path", type=Path, help="dataset (.h5) or checkpoint file")
    _common_options(parser)


def _run_info(args: argparse.Namespace) -> int:
    from qtomo.data import read_dataset

    if not args.path.is_file():
        raise QtomoError(f"{args.path}: no such file")
    if h5py.is_hdf5(args.path):
        _print_dataset(read_dataset(args.path))
        return 0
    raise QtomoError(f"{args.path}: neither a qtomo dataset (HDF5) nor a qtomo checkpoint")


def _print_dataset(dataset) -> None:
    attrs = dataset.attrs
    parameters = ", ".join(f"{key}={attrs[key]}" for key in
                           ("J", "h", "boundary", "product_state", "chi_max",
                            "truncation_error") if key in attrs)
    print(f"dataset   {dataset.path}")
    print(f"format    {attrs['format']} v{attrs['version']} (qtomo {attrs.get('qtomo_version')})")
    print(f"state     {attrs['state']}" + (f" ({parameters})" if parameters else ""))
    print(f"qubits    L = {dataset.L}, method {attrs['method']}, seed {attrs['seed']}")
    print(f"POVM      {dataset.povm.name} (K = {dataset.K})")
    print(f"records   N = {dataset.n_records}")
    if dataset.has_log_prob:
        log_prob = dataset.log_prob(0, min(dataset.n_records, 10**6))
        entropy = -log_prob.mean()
        error = log_prob.std(ddof=1) / np.sqrt(log_prob.size) if log_prob.size > 1 else 0.0
        print(f"entropy   H(P) ≈ {entropy:.6f} ± {error:.6f} nats (mean −ln P over "
              f"{log_prob.size} records)")
    reference = dataset.reference
    if "energy" in reference:
        print(f"energy    E = {float(reference['energy']):.10f} "
              f"(E/L = {float(reference['energy']) / dataset.L:.10f})")
    for name in ("X", "Z"):
        if name in reference:
            print(f"<{name}_i>     mean {reference[name].mean():+.6f}, "
                  f"range [{reference[name].min():+.6f}, {reference[name].max():+.6f}]")
    if "entropy" in reference and dataset.L > 1:
        print(f"S_bond    max {reference['entropy'].max():.6f} nats (middle bond "
              f"{reference['entropy'][(dataset.L - 1) // 2]:.6f})")
    if "mps" in reference:
        print(f"MPS       max bond dimension {max(t.shape[2] for t in reference['mps'])}")
    if attrs.get("warning"):
        print(f"warning   {attrs['warning']}")


# --- main -----------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[Callable, Callable[[argparse.Namespace], int]]] = {
    "simulate": (_add_simulate_parser, _run_simulate),
    "info": (_add_info_parser, _run_info),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qtomo", description="Neural-network quantum state tomography.")
    parser.add_argument("--version", action="version", version=f"qtomo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add_parser, _ in COMMANDS.values():
        add_parser(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"qtomo: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qtomo`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _show_warning
            return COMMANDS[args.command][1](args)
    except QtomoError as error:
        print(f"qtomo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qtomo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
