"""The ``qtomo`` command line (README "The pipeline"): parse, call the Python API, print.

Every subcommand takes ``--quiet``, ``--seed`` and ``--device``. Bad input raises a
:class:`qtomo.errors.QtomoError`, printed as one line ``qtomo: error: …`` with exit status 2;
any other exception is an internal failure (traceback, exit status 1).
"""

from __future__ import annotations

import argparse
import decimal
import math
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtomo import __version__
from qtomo.errors import QtomoError

if TYPE_CHECKING:
    from qtomo.data import Dataset
    from qtomo.train import TrainResult

# Only the chosen subcommand's arguments are built, and every heavy module (torch, numpy, h5py,
# the models) is imported inside the function that needs it: `qtomo --help` and `qtomo
# --version` answer without them.


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in qtomo's one-line form (exit 2) and shows every
    option's default in its help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        # a word such as -5, -1e5, -.5 or -inf after an option is its value (which the option's
        # type then refuses with the expected form), not an unknown option; argparse's own
        # pattern misses the last three
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> None:
        raise QtomoError(message)


_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


class _HelpFormatter(argparse.HelpFormatter):
    """Appends "(default X)", or "(default none)" for an option that is off unless given, to
    an option's help, unless the help already names its default; flags, required options and
    positional arguments are left as they are."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.required or action.default is argparse.SUPPRESS):
            return text
        if action.default is None or action.default == []:
            return text + " (default none)"
        return text + " (default %(default)s)"


def _common_options(parser: argparse.ArgumentParser, resumable: bool = False) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars or chatter")
    parser.add_argument("--seed", type=_integer(0, _SEED_MAX), default=None if resumable else 0,
                        help="random seed (default 0" + ("; with --resume, the run's)"
                                                         if resumable else ")"))
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


def _readout_option(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument("--readout-error", nargs="+", default=None, metavar=("E0|FILE", "E1"),
                        help=purpose + ": P(read 1 | 0) = E0 and P(read 0 | 1) = E1 on every "
                             "qubit, each in [0, 0.5), or a FILE with one row 'E0 E1' per qubit "
                             "(text, .json or .npy); the file stores the POVM actually measured")


def _readout_inputs(values: list[str] | None) -> list[Path]:
    """The file that --readout-error FILE reads (an input of the command), if one is given."""
    return [Path(values[0])] if values is not None and len(values) == 1 else []


def _readout_errors(values: list[str] | None) -> list[float] | list[list[float]] | None:
    """--readout-error E0 E1 as two numbers, --readout-error FILE as its (L, 2) table."""
    if values is None:
        return None
    if len(values) == 1:
        from qtomo.readout import read_readout_errors

        return read_readout_errors(values[0]).tolist()
    if len(values) != 2:
        raise QtomoError(f"--readout-error takes E0 E1 or one FILE; got {len(values)} values")
    try:
        return [_finite_float(value) for value in values]
    except argparse.ArgumentTypeError as error:
        raise QtomoError(f"--readout-error: {error}") from None


_SEED_MAX = 2**63 - 1
_COUNT_MAX = 2**62


def _integer(low: int, high: int = _COUNT_MAX) -> Callable[[str], int]:
    """An argparse type for an integer in low..high, written as digits or in exact scientific
    notation (``100000``, ``1e5``; not ``1.5``, ``1e400``, ``nan``)."""
    limit = "2^62" if high == _COUNT_MAX else "2^63-1" if high == _SEED_MAX else str(high)
    expected = {1: "a positive integer", 0: "an integer >= 0"}.get(low, f"an integer >= {low}")
    expected = f"{expected} (at most {limit})"

    def parse(text: str) -> int:
        try:
            number = decimal.Decimal(text.strip().replace("_", ""))
        except decimal.InvalidOperation:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        # compare as Decimals: int() of 1e400000000 would take minutes
        if not number.is_finite() or number != number.to_integral_value() or not (
                low <= number <= high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return int(number)

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


_positive_int = _integer(1)


# --- simulate -------------------------------------------------------------------------------

def _add_simulate_parser(subparsers) -> None:
    from qtomo.povm import POVM_NAMES
    from qtomo.simulate import DEFAULT_SAMPLES, METHODS, STATES

    parser = subparsers.add_parser(
        "simulate", help=SUMMARIES["simulate"],
        description="Sample informationally complete POVM measurements of a state and write "
                    "them, with exact ln P of every record and reference values, to HDF5.")
    parser.add_argument("--state", choices=STATES, default="tfim",
                        help="state (default tfim; circuit with --circuit)")
    parser.add_argument("--L", type=_positive_int, default=None,
                        help="qubits (default 50; with --circuit the register size)")
    parser.add_argument("--J", type=_finite_float, default=1.0,
                        help="TFIM or XXZ coupling (default 1)")
    parser.add_argument("--delta", type=_finite_float, default=1.0,
                        help="XXZ anisotropy Δ: H = J Σ (XX + YY + Δ ZZ) (default 1)")
    parser.add_argument("--depth", type=_positive_int, default=None,
                        help="layers of --state random-circuit (Haar brickwork, drawn from --seed)")
    parser.add_argument("--circuit", type=Path, default=None, metavar="FILE.qasm",
                        help="an OpenQASM 2 circuit on |0…0⟩; q[i] is site i "
                             "(docs/states-and-circuits.md)")
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
    parser.add_argument("--chi-max", type=_positive_int, default=None,
                        help="MPS bond-dimension cap for DMRG (default 64, XXZ 256) and "
                             "circuits (default 256)")
    parser.add_argument("--svd-min", type=_finite_float, default=None,
                        help="discarded weight allowed per DMRG truncation; sets the accuracy of "
                             "the stored ln P (default 1e-14, XXZ 1e-16; README's MPS section)")
    parser.add_argument("--dmrg-seconds", type=_finite_float, default=None,
                        help="wall-clock budget of the DMRG sweeps (default 1800)")
    _readout_option(parser, "with --povm pauli6: flip read bits")
    parser.add_argument("--out", type=Path, default=None,
                        help="output file (default data/<state>_L<L>[_h<h>][_delta<Δ>|_d<depth>]"
                             "_<povm>.h5)")
    noise = parser.add_argument_group(
        "noise", "a channel on every qubit after the state is prepared, in the order amplitude "
                 "damping, dephasing, depolarizing (docs/simulate.md \"Noisy states\")")
    noise.add_argument("--depolarizing", type=float, default=0.0, metavar="p",
                       help="ρ → (1 − p) ρ + p Tr_i(ρ) ⊗ 1/2 (default 0)")
    noise.add_argument("--dephasing", type=float, default=0.0, metavar="q",
                       help="Z with probability q (default 0)")
    noise.add_argument("--amplitude-damping", type=float, default=0.0, metavar="γ",
                       help="decay |1⟩ → |0⟩ with probability γ (default 0)")
    _common_options(parser)


def _run_simulate(args: argparse.Namespace) -> int:
    from qtomo.atomic import check_outputs
    from qtomo.data import read_dataset
    from qtomo.simulate import default_output, simulate

    check_outputs([args.out or default_output(args.state, args.L, args.h, args.povm)],
                  inputs=_readout_inputs(args.readout_error))
    path = simulate(
        args.state, args.L, J=args.J, h=args.h, delta=args.delta, depth=args.depth,
        circuit=args.circuit, boundary=args.boundary,
        product_state=args.product_state, povm=args.povm, samples=args.samples,
        method=args.method, chi_max=args.chi_max, svd_min=args.svd_min,
        dmrg_seconds=args.dmrg_seconds,
        depolarizing=args.depolarizing, dephasing=args.dephasing,
        amplitude_damping=args.amplitude_damping,
        readout_error=_readout_errors(args.readout_error),
        seed=args.seed, device=args.device, out=args.out, quiet=args.quiet,
    )
    if not args.quiet:
        print(f"wrote {path}")
        _print_dataset(read_dataset(path))
    return 0


# --- info -----------------------------------------------------------------------------------

def _add_info_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help=SUMMARIES["info"],
                                   description="Describe what a dataset or checkpoint holds.")
    parser.add_argument("path", type=Path, help="dataset (.h5) or checkpoint file")
    parser.add_argument("--json", action="store_true",
                        help="print the description as one JSON object instead")
    _common_options(parser)


def _run_info(args: argparse.Namespace) -> int:
    import h5py

    from qtomo.atomic import describe_leftover
    from qtomo.data import read_dataset
    from qtomo.jsontext import json_text

    if not args.path.is_file():
        raise QtomoError(f"{args.path}: {'a folder' if args.path.is_dir() else 'no such file'}")
    if describe_leftover(args.path) is not None:
        raise QtomoError(f"{args.path}: {describe_leftover(args.path)}")
    if h5py.is_hdf5(args.path):
        dataset = read_dataset(args.path)
        if not args.json:
            _print_dataset(dataset)
            return 0
        summary = dataset_summary(dataset)
    elif zipfile.is_zipfile(args.path):  # torch.save writes a zip archive
        from qtomo.models.checkpoint import checkpoint_summary, describe, load_checkpoint

        checkpoint = load_checkpoint(args.path)
        if not args.json:
            print(describe(checkpoint))
            return 0
        summary = checkpoint_summary(checkpoint)
    else:
        raise QtomoError(f"{args.path}: neither a qtomo dataset (HDF5) nor a qtomo checkpoint")
    print(json_text(summary))
    return 0


_PARAMETERS = ("J", "h", "delta", "boundary", "product_state", "circuit", "depth", "chi_max",
               "truncation_error")


def dataset_summary(dataset) -> dict:
    """What ``qtomo info`` says about a dataset, as plain JSON-ready values: ``kind``
    (``"dataset"``), ``path``, ``format``, ``version``, ``qtomo_version``, ``source``, ``state``,
    ``parameters``, ``L``, ``method``, ``seed``, ``povm``, ``K``, ``noise`` (the channel's three
    parameters, or None), ``readout_error``, ``n_records``, ``log_prob`` (exact ln P stored),
    ``entropy`` (H(P) ≈ mean −ln P over up to 10^6 records: ``value``, ``stderr``, ``records``;
    None without ln P), ``reference`` (``purity``, ``energy``, ``X`` and ``Z`` as ``mean``,
    ``min``, ``max``, ``bond_entropy`` as ``max``, ``middle``, ``mps_max_bond``: each only where
    the file has it) and ``warning``."""
    import numpy as np

    from qtomo.jsontext import plain

    attrs = dataset.attrs
    entropy = None
    if dataset.has_log_prob:
        log_prob = dataset.log_prob(0, min(dataset.n_records, 10**6))
        entropy = {"value": float(-log_prob.mean()), "records": int(log_prob.size),
                   "stderr": float(log_prob.std(ddof=1) / np.sqrt(log_prob.size))
                   if log_prob.size > 1 else math.inf}  # as evaluate: no spread from one
    reference, described = dataset.reference, {}
    for name in ("purity", "energy"):
        if name in reference:
            described[name] = float(reference[name])
    for name in ("X", "Z"):
        if name in reference:
            values = np.asarray(reference[name], dtype=float)
            described[name] = {"mean": float(values.mean()), "min": float(values.min()),
                               "max": float(values.max())}
    if "entropy" in reference and dataset.L > 1:
        described["bond_entropy"] = {"max": float(reference["entropy"].max()), "middle": float(
            reference["entropy"][(dataset.L - 1) // 2])}
    if "mps" in reference:
        described["mps_max_bond"] = int(max(t.shape[2] for t in reference["mps"]))
    noise = dataset.noise
    return plain({
        "kind": "dataset", "path": str(dataset.path), "format": attrs["format"],
        "version": attrs["version"], "qtomo_version": attrs.get("qtomo_version"),
        "source": attrs["source"], "state": attrs.get("state"),
        "parameters": {key: attrs[key] for key in _PARAMETERS if key in attrs},
        "L": dataset.L, "method": attrs.get("method"), "seed": attrs.get("seed"),
        "povm": dataset.povm.name, "K": dataset.K,
        "noise": noise.attrs if noise.active else None,
        "readout_error": attrs.get("readout_error"), "n_records": dataset.n_records,
        "log_prob": bool(dataset.has_log_prob), "entropy": entropy, "reference": described,
        "warning": attrs.get("warning") or None})


def _print_dataset(dataset) -> None:
    summary = dataset_summary(dataset)
    parameters = ", ".join(f"{key}={value}" for key, value in summary["parameters"].items())
    print(f"dataset   {summary['path']}")
    print(f"format    {summary['format']} v{summary['version']} "
          f"(qtomo {summary['qtomo_version']})")
    print(f"source    {summary['source']}")
    if summary["state"] is not None:
        print(f"state     {summary['state']}" + (f" ({parameters})" if parameters else ""))
    print(f"qubits    L = {summary['L']}" + "".join(
        f", {key} {summary[key]}" for key in ("method", "seed") if summary[key] is not None))
    print(f"POVM      {summary['povm']} (K = {summary['K']})")
    if summary["noise"] is not None:
        print(f"noise     {dataset.noise} on every qubit")
    if summary["readout_error"] is not None:
        errors = summary["readout_error"]
        if isinstance(errors[0], list):  # one (e0, e1) per qubit
            e0, e1 = ([row[column] for row in errors] for column in (0, 1))
            print(f"readout   per qubit: P(read 1|0) in [{min(e0):.4g}, {max(e0):.4g}], "
                  f"P(read 0|1) in [{min(e1):.4g}, {max(e1):.4g}] (in the POVM)")
        else:
            print(f"readout   P(read 1|0), P(read 0|1) = {errors} (in the POVM)")
    print(f"records   N = {summary['n_records']}")
    entropy = summary["entropy"]
    if entropy is None:
        print("ln P      none (measured data): no KL or classical fidelity can be computed")
    else:
        print(f"entropy   H(P) ≈ {entropy['value']:.6f} ± {entropy['stderr']:.6f} nats (mean "
              f"−ln P over {entropy['records']} records)")
    reference = summary["reference"]
    if "purity" in reference:
        print(f"purity    Tr ρ² = {reference['purity']:.10f}")
    if "energy" in reference:
        print(f"energy    E = {reference['energy']:.10f} "
              f"(E/L = {reference['energy'] / summary['L']:.10f})")
    for name in ("X", "Z"):
        if name in reference:
            values = reference[name]
            print(f"<{name}_i>     mean {values['mean']:+.6f}, "
                  f"range [{values['min']:+.6f}, {values['max']:+.6f}]")
    if "bond_entropy" in reference:
        print(f"S_bond    max {reference['bond_entropy']['max']:.6f} nats (middle bond "
              f"{reference['bond_entropy']['middle']:.6f})")
    if "mps_max_bond" in reference:
        print(f"MPS       max bond dimension {reference['mps_max_bond']}")
    if summary["warning"]:
        print(f"warning   {summary['warning']}")


# --- fit ------------------------------------------------------------------------------------

def _add_fit_parser(subparsers) -> None:
    from qtomo.models import FAMILIES, hyperparameter_defaults, hyperparameter_types
    from qtomo.options import SCHEDULES, TrainOptions

    defaults = TrainOptions()
    parser = subparsers.add_parser(
        "fit", help=SUMMARIES["fit"],
        description="Train a model on POVM records (mean NLL, AdamW). Holds out the last "
                    "--val-fraction of rows, keeps the best checkpoint by validation NLL, writes "
                    "<out>.last.pt (resumable) and <out>.history.json beside it. The physical "
                    "families mps and lpdo default to --epochs 0 --sweeps 8 (--full-batch 500 "
                    "--refine 500 with --positive 1), and choose --chi (and --kraus) from the "
                    "records unless given.")
    parser.add_argument("--model", choices=tuple(FAMILIES), default=None,
                        help="model family (default: chosen by the records: mps for incomplete or "
                             "biased bases or fewer than 10^4 records, else gru; with "
                             "--resume, the checkpoint's)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset (default: the newest data/*.h5; with --resume, the "
                             "resumed run's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="best checkpoint (default runs/<data stem>_<model>.pt; with "
                             "--resume, the resumed run's)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="continue an interrupted run from its checkpoint (.pt or .last.pt)")
    model_options = parser.add_argument_group(
        "model hyperparameters", "each applies to the families named; defaults per family. "
        "Several values separated by commas (--chi 2,4,8) train one model each and keep the "
        "lowest validation NLL; mps and lpdo select --real 1,0 unless --real is given (complex "
        "tensors only where they gain more than 1.5 standard errors), "
        "and grow --chi (and --kraus) while the held-out NLL improves, unless given")
    parse = {int: (_integer(0), "N"), float: (_finite_float, "X"), str: (str, "NAME")}
    types = hyperparameter_types()
    for name, per_family in hyperparameter_defaults().items():
        families = ", ".join(f"{family} {default}" for family, default in per_family.items())
        kind, metavar = parse[types[name]]
        model_options.add_argument(f"--{name.replace('_', '-')}", dest=f"hp_{name}",
                                   type=_comma_list(kind), default=None, metavar=metavar,
                                   help=f"(default: {families})")
    train_options = parser.add_argument_group("training options")
    for flag, kind, help_text in (
        ("--epochs", _integer(0), "maximum epochs (0: none, only the stages after them)"),
        ("--batch-size", _positive_int, "records per step (global under torchrun)"),
        ("--lr", _finite_float, "peak learning rate of AdamW"),
        ("--weight-decay", _finite_float, "AdamW weight decay"),
        ("--warmup", _integer(0), "linear warm-up steps"),
        ("--clip", _finite_float, "gradient-norm clip (0 = off)"),
        ("--val-fraction", _finite_float, "share of rows (the last ones) held out"),
        ("--patience", _integer(0), "stop after this many epochs without improvement (0 = never)"),
        ("--ema", _finite_float, "decay of a moving average of the weights, validated and "
                                 "saved (0 = off)"),
        ("--full-batch", _integer(0), "after the epochs, at most this many full-batch Adam "
                                      "steps over all training rows (0 = none)"),
        ("--sweeps", _integer(0), "after the epochs, at most this many local maximum-likelihood "
                                  "sweeps over the sites of mps/lpdo (0 = none)"),
        ("--refine", _integer(0), "after the epochs and sweeps, at most this many full-batch "
                                  "L-BFGS iterations towards the maximum likelihood (0 = none)"),
    ):
        name = flag[2:].replace("-", "_")
        train_options.add_argument(flag, type=kind, default=None,
                                   help=f"{help_text} (default {getattr(defaults, name)})")
    train_options.add_argument("--restarts", type=_positive_int, default=None, metavar="N",
                               help="train N models from seeds seed .. seed+N-1 (for each "
                                    "hyperparameter value) and keep the lowest validation NLL "
                                    "(default 1; 2 for the first size of an lpdo size search)")
    ensemble = parser.add_argument_group(
        "ensembles", "several models of the same records, for error bars that include the "
                     "finite data (see qtomo evaluate)")
    ensemble.add_argument("--ensemble", type=_positive_int, default=None, metavar="M",
                          help="train M >= 2 models into the folder --out (default "
                               "runs/<data stem>_<model>_ensemble), seeds seed .. seed+M-1")
    ensemble.add_argument("--bootstrap", action="store_true", default=None,
                          help="each model trains on a bootstrap resample of the training rows")
    train_options.add_argument("--schedule", choices=SCHEDULES, default=None,
                               help=f"learning-rate schedule (default {defaults.schedule})")
    train_options.add_argument("--no-amp", dest="amp", action="store_false", default=None,
                               help="no bf16 autocast on CUDA")
    train_options.add_argument("--compile", action="store_true", default=None,
                               help="wrap the objective in torch.compile")
    _common_options(parser, resumable=True)


def _comma_list(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An option type for one value, or several separated by commas (a list of them)."""
    def values(text: str) -> Any:
        items = [parse(item) for item in text.split(",")]
        return items if len(items) > 1 else items[0]

    return values


def _newest_dataset() -> Path:
    found = sorted(Path("data").glob("*.h5"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise QtomoError("no --data given and no dataset in data/; run qtomo simulate first")
    return found[-1]


def _run_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from qtomo.data import read_dataset
    from qtomo.models.checkpoint import training_data_path
    from qtomo.pauli_records import dataset_warnings
    from qtomo.train import TrainOptions, load_resume

    given = {key[3:]: value for key, value in vars(args).items()
             if key.startswith("hp_") and value is not None}
    several = [name for name, value in given.items() if isinstance(value, list)]
    restarted = args.restarts is not None and args.restarts > 1
    if (several or restarted) and (args.ensemble is not None or args.resume is not None):
        what = ", ".join([f"several values of --{name.replace('_', '-')}" for name in several]
                         + (["--restarts"] if restarted else []))
        raise QtomoError(f"{what} select one model by validation NLL; they cannot be combined "
                         f"with --ensemble or --resume")
    given_options = {field.name: getattr(args, field.name)
                     for field in dataclasses.fields(TrainOptions)
                     if getattr(args, field.name, None) is not None}
    data, resumed = args.data, None
    if args.ensemble is not None and args.resume is not None:
        raise QtomoError("--ensemble trains new models; it cannot be combined with --resume")
    if args.bootstrap and args.ensemble is None:
        raise QtomoError("--bootstrap resamples the rows of each ensemble member; give --ensemble")
    if args.resume is not None:
        resumed = load_resume(args.resume)
        data = data or training_data_path(resumed)
    elif data is None:
        data = _newest_dataset()
        if not args.quiet:
            print(f"using the newest dataset {data}")
    dataset = read_dataset(data)
    for line in dataset_warnings(dataset):  # also in the history JSON and the checkpoint
        _show_warning(line, UserWarning, __file__, 0)
    if resumed is not None:
        return _fit_resumed(args, dataset, resumed, given, given_options)
    family = args.model or _default_family(dataset, given, args.quiet)
    if args.ensemble is not None:
        return _fit_ensemble(args, dataset, family, given, given_options)
    return _fit_plain(args, dataset, family, given, given_options)


def _default_family(dataset: Dataset, given: dict, quiet: bool) -> str:
    """The recipe's family for ``dataset`` and the hyperparameters ``given``
    (:func:`qtomo.recipe.default_family`), said."""
    from qtomo.recipe import default_family

    family, reason = default_family(dataset, given)
    if not quiet:
        print(f"model {family}: {reason}")
    return family


def _fit_resumed(args: argparse.Namespace, dataset: Dataset, resumed: Any, given: dict,
                 given_options: dict) -> int:
    """Continue the run of ``--resume`` on ``dataset``."""
    from qtomo.models import build
    from qtomo.train import TrainOptions, fit, run_output

    config = resumed.config
    if given or args.model not in (None, config["family"]):
        raise QtomoError(f"--resume continues the {config['family']} model of "
                         f"{resumed.path}; drop --model and the hyperparameter options")
    options = TrainOptions(**{**config["training"]["options"], **given_options})
    # built for the data given, so that fit names what differs from the resumed run
    model = build(config["family"], L=dataset.L, K=dataset.K, povm=dataset.povm,
                  **config["hyperparameters"])
    result = fit(model, dataset, options, out=args.out or run_output(resumed.path),
                 resume=args.resume, device=args.device, quiet=args.quiet)
    return _said_fit(result, args.quiet)


def _fit_ensemble(args: argparse.Namespace, dataset: Dataset, family: str, given: dict,
                  given_options: dict) -> int:
    """Train ``--ensemble`` members of ``family`` into one folder."""
    from qtomo.recipe import fit_recipe_ensemble

    folder = args.out or Path("runs") / f"{dataset.path.stem}_{family}_ensemble"
    results = fit_recipe_ensemble(family, dataset, given_options, given, members=args.ensemble,
                                  out=folder, device=args.device, quiet=args.quiet)
    if not args.quiet:
        nll = ", ".join(f"{result.best_val_nll:.6f}" for result in results)
        print(f"best validation NLL of the {len(results)} members: {nll}")
        print(f"wrote {folder}/ (evaluate it with qtomo evaluate --model {folder})")
    return 0


def _fit_plain(args: argparse.Namespace, dataset: Dataset, family: str, given: dict,
               given_options: dict) -> int:
    """Fit ``family`` by its recipe (a size search or selection where it has one)."""
    from qtomo.recipe import fit_recipe
    from qtomo.train import candidate_label

    out = args.out or Path("runs") / f"{dataset.path.stem}_{family}.pt"
    selection = fit_recipe(family, dataset, given_options, given, restarts=args.restarts,
                           out=out, device=args.device, quiet=args.quiet)
    if not args.quiet and len(selection.candidates) > 1:
        for values, seed, nll in selection.candidates:
            print(f"candidate {candidate_label(values, seed)}: best validation NLL {nll:.6f}")
        print(f"kept {candidate_label(selection.hyperparameters, selection.seed)} "
              f"({selection.rule}); the candidates' runs are beside it")
    return _said_fit(selection.best, args.quiet)


def _said_fit(result: TrainResult, quiet: bool) -> int:
    """Print where the fit's files went; the command's exit status."""
    if not quiet:
        print(f"best validation NLL {result.best_val_nll:.6f} at epoch {result.best_epoch}")
        print(f"wrote {result.checkpoint}, {result.last}, {result.history_path}")
    return 0


# --- evaluate -------------------------------------------------------------------------------

def _evaluation_options(parser: argparse.ArgumentParser) -> None:
    """--data, --target, --samples, --method, --pauli, --blocks: shared by evaluate and
    compare."""
    from qtomo.evaluate import DEFAULT_SAMPLES, METHODS

    parser.add_argument("--data", type=Path, default=None,
                        help="dataset (default: the one the (first) checkpoint was trained on)")
    parser.add_argument("--target", default=None, metavar="SPEC",
                        help="the state the fidelities refer to: ghz, w, cluster, "
                             "product:<0 1 + - +i -i per site>, tfim:h=H, xxz:delta=D, or a "
                             "file (.npy ψ or ρ, QuCumber psi text, .npz MPS, dataset .h5); "
                             "default the dataset's reference (docs/targets-and-baselines.md)")
    parser.add_argument("--samples", type=_positive_int, default=DEFAULT_SAMPLES,
                        help=f"model samples for Monte Carlo estimates (default {DEFAULT_SAMPLES})")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="exact sums over all K^L records, monte-carlo, or auto = exact for "
                             "small L (default auto)")
    parser.add_argument("--pauli", action="append", default=[], metavar="STRING",
                        help="extra Pauli string to estimate, e.g. 'X0 Z3 Z4' (repeatable)")
    parser.add_argument("--blocks", default=None, metavar="SIZES",
                        help="sizes of the contiguous blocks whose reduced states are compared, "
                             "comma-separated, or 'none' (default 2,3, those that fit L)")


def _add_evaluate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help=SUMMARIES["evaluate"],
        description="NLL, and where the records carry exact ln P also KL(P||Q) and the "
                    "classical fidelity, on the rows the model was not trained on; quantum "
                    "fidelity (given a reference state) and observables (X, Z, ZZ, XX, energy) "
                    "from the model and from the data alone, with their z-scores, beside the "
                    "dataset's reference values.")
    parser.add_argument("--model", type=Path, required=True, nargs="+", metavar="PATH",
                        help="checkpoint (.pt); several checkpoints, or the folder of "
                             "qtomo fit --ensemble, are evaluated as an ensemble")
    _evaluation_options(parser)
    parser.add_argument("--json", type=Path, default=None,
                        help="write the figures as JSON here ('-': standard output, no table)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="write the correlation / training figure here (.png, .pdf, .svg)")
    _common_options(parser)


def _run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from qtomo.atomic import check_outputs
    from qtomo.blocks import parse_block_sizes
    from qtomo.data import read_dataset
    from qtomo.device import resolve_device
    from qtomo.ensemble import ensemble_checkpoints, evaluate_ensemble
    from qtomo.evaluate import evaluate
    from qtomo.models import load_checkpoint
    from qtomo.models.checkpoint import training_data_path
    from qtomo.plots import check_plot_path, plot_evaluation
    from qtomo.report import (
        format_ensemble_report,
        format_report,
        write_json,
    )
    from qtomo.train import run_paths

    to_stdout = args.json is not None and str(args.json) == "-"  # then the JSON is the output
    if args.plot is not None:
        check_plot_path(args.plot)
    torch.manual_seed(args.seed)  # flows draw their importance samples from the global RNG
    paths = ensemble_checkpoints(args.model)
    checkpoints = [load_checkpoint(path, map_location=resolve_device(args.device))
                   for path in paths]
    data = args.data
    if data is None:
        data = training_data_path(checkpoints[0])
        if data is None:
            raise QtomoError(f"{paths[0]} records no training dataset; give --data")
        if not (args.quiet or to_stdout):
            print(f"using the training dataset {data}")
    check_outputs([args.json, args.plot], inputs=[*_run_files(paths), data])
    dataset = read_dataset(data)
    options = {"samples": args.samples, "method": args.method, "pauli_strings": args.pauli,
               "seed": args.seed, "quiet": args.quiet,
               "blocks": parse_block_sizes(args.blocks, dataset.L),
               "target": _target(args.target, dataset.L)}
    if len(checkpoints) > 1:
        ensemble = evaluate_ensemble(checkpoints, dataset, **options)
        evaluation, table, history = ensemble, format_ensemble_report(ensemble), None
        figure = ensemble.combined()
    else:
        evaluation = figure = evaluate(checkpoints[0], dataset, **options)
        table, history = format_report(evaluation), run_paths(paths[0])[2]
    written = []
    if args.json is not None:
        written.append(write_json(evaluation, args.json))
    if args.plot is not None:
        written.append(plot_evaluation(figure, args.plot, history=history))
    if not (args.quiet or to_stdout):
        _print_table_and_files(table, written)
    return 0


def _target(spec: str | None, L: int):
    """The parsed ``--target`` (once, before any model is evaluated), or None."""
    from qtomo.targets import parse_target

    return None if spec is None else parse_target(spec, L)
def _run_files(checkpoints: Sequence[Path]) -> list[Path]:
    """The checkpoints and the other files of their runs (.last.pt, the history that --plot
    reads): evaluate and compare never write over them."""
    from qtomo.train import run_output, run_paths

    return [file for path in checkpoints for file in (path, *run_paths(run_output(path)))]


def _print_table_and_files(table: str, written: list) -> None:
    """What evaluate and compare print: the table, then each file written."""
    print(table)
    for path in written:
        print(f"wrote {path}")


# --- compare --------------------------------------------------------------------------------

def _add_compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help=SUMMARIES["compare"],
        description="Evaluate each model (as qtomo evaluate does) on the same dataset and test "
                    "records and print one table with a column per model beside the data-only "
                    "estimate and the exact value; optionally write each evaluation's JSON and "
                    "one comparison figure (README 'Comparing models').")
    parser.add_argument("--model", type=Path, action="append", required=True, metavar="PATH",
                        help="checkpoint (.pt); give --model once per model, two or more")
    parser.add_argument("--label", action="append", default=None, metavar="NAME",
                        help="column title per --model, in order (default: the family names, "
                             "or the checkpoint names when families repeat)")
    _evaluation_options(parser)
    parser.add_argument("--json", type=Path, action="append", default=None, metavar="PATH",
                        help="write each model's evaluation JSON: one --json per --model, in "
                             "order (default none)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="write the comparison figure here (.png, .pdf, .svg; default none)")
    _common_options(parser)


def _run_compare(args: argparse.Namespace) -> int:
    import torch

    from qtomo.atomic import check_distinct, check_outputs
    from qtomo.blocks import parse_block_sizes
    from qtomo.data import read_dataset
    from qtomo.device import resolve_device
    from qtomo.evaluate import evaluate
    from qtomo.models import load_checkpoint
    from qtomo.models.checkpoint import training_data_path
    from qtomo.plots import check_plot_path, plot_comparison
    from qtomo.report import compare, write_json
    from qtomo.train import run_paths

    paths = args.model
    if len(paths) < 2:
        raise QtomoError("qtomo compare needs two or more --model checkpoints (one model: "
                         "qtomo evaluate)")
    for option, given in (("--label", args.label), ("--json", args.json)):
        if given is not None and len(given) != len(paths):
            raise QtomoError(f"give {option} once per --model: {len(paths)} models, "
                             f"{len(given)} {option}")
    if args.plot is not None:
        check_plot_path(args.plot)
    check_distinct(paths, "--model checkpoints")
    checkpoints = [load_checkpoint(path, map_location=resolve_device(args.device))
                   for path in paths]
    labels = args.label
    if labels is None:
        labels = [checkpoint.config["family"] for checkpoint in checkpoints]
        if len(set(labels)) < len(labels):
            labels = [path.stem for path in paths]
    data = args.data
    if data is None:
        data = training_data_path(checkpoints[0])
        if data is None:
            raise QtomoError(f"{paths[0]} records no training dataset; give --data")
        if not args.quiet:
            print(f"using the training dataset {data}")
    check_outputs([*(args.json or []), args.plot], inputs=[*_run_files(paths), data])
    dataset = read_dataset(data)
    options = {"samples": args.samples, "method": args.method, "pauli_strings": args.pauli,
               "quiet": args.quiet, "blocks": parse_block_sizes(args.blocks, dataset.L),
               "target": _target(args.target, dataset.L)}
    evaluations = []
    for checkpoint in checkpoints:
        torch.manual_seed(args.seed)  # flows draw their importance samples from the global RNG
        evaluations.append(evaluate(checkpoint, dataset, seed=args.seed, **options))
    table = compare(evaluations, labels)  # checks the test records agree before writing
    written = [write_json(evaluation, path)
               for evaluation, path in zip(evaluations, args.json or [], strict=False)]
    if args.plot is not None:
        written.append(plot_comparison(evaluations, labels, args.plot,
                                       histories=[run_paths(path)[2] for path in paths]))
    if not args.quiet:
        _print_table_and_files(table, written)
    return 0


# --- import / export ------------------------------------------------------------------------

def _add_import_parser(subparsers) -> None:
    from qtomo.formats import FORMATS, GENMODEL_POVMS

    parser = subparsers.add_parser(
        "import", help=SUMMARIES["import"],
        description="Read Pauli-basis shots (or genmodel POVM records) written by another tool "
                    "and write them as pauli6 records, without exact ln P (README 'Measured "
                    "data'). Formats: " + ", ".join(FORMATS) + ".")
    parser.add_argument("format", help="input format: " + ", ".join(FORMATS))
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="input file(s): qucumber SAMPLES BASES; genmodel DATA [INDEX "
                             "TENSOR]; the others one file")
    parser.add_argument("--out", type=Path, required=True, help="dataset to write (.h5)")
    parser.add_argument("--povm", default=None, help="genmodel only: their POVM name, one of "
                        + ", ".join(GENMODEL_POVMS))
    _readout_option(parser, "the records' readout errors, undone by the inversion")
    parser.add_argument("--allow-biased-bases", action="store_true",
                        help="keep bases that fail the uniform-bases test (a warning is stored)")
    parser.add_argument("--tfim-sign-map", action="store_true",
                        help="genmodel only: map their +ZZ+X TFIM state and Pauli records to "
                             "our -ZZ-X convention")
    parser.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                        help="keep the files' row order (default: rows permuted with --seed)")
    _common_options(parser)


def _run_import(args: argparse.Namespace) -> int:
    from qtomo.atomic import check_outputs
    from qtomo.data import read_dataset
    from qtomo.formats import import_records

    check_outputs([args.out], inputs=_readout_inputs(args.readout_error))
    path = import_records(args.format, args.files, args.out, povm=args.povm,
                          readout_error=_readout_errors(args.readout_error),
                          allow_biased_bases=args.allow_biased_bases,
                          tfim_sign_map=args.tfim_sign_map, shuffle=args.shuffle, seed=args.seed,
                          quiet=args.quiet)
    if not args.quiet:
        print(f"wrote {path}")
        _print_dataset(read_dataset(path))
    return 0


def _add_export_parser(subparsers) -> None:
    from qtomo.formats import EXPORT_FORMATS

    parser = subparsers.add_parser(
        "export", help=SUMMARIES["export"],
        description="Write the records of a pauli6 dataset as Pauli-basis shots in another "
                    "tool's format (the exact inverse of qtomo import). Formats: "
                    + ", ".join(EXPORT_FORMATS) + ".")
    parser.add_argument("format", help="output format: " + ", ".join(EXPORT_FORMATS))
    parser.add_argument("dataset", type=Path, help="qtomo dataset (.h5) of pauli6 records")
    parser.add_argument("--out", type=Path, required=True,
                        help="output file (qucumber: the samples; the bases go to "
                             "<stem>_bases<suffix> beside it)")
    _common_options(parser)


def _run_export(args: argparse.Namespace) -> int:
    from qtomo.formats import export_records

    written = export_records(args.format, args.dataset, args.out)
    if not args.quiet:
        print("wrote " + ", ".join(map(str, written)))
    return 0


# --- main -----------------------------------------------------------------------------------

SUMMARIES = {
    "simulate": "sample POVM records of a quantum state into an HDF5 dataset",
    "info": "describe a dataset or a checkpoint",
    "fit": "train a model on a dataset by maximum likelihood",
    "evaluate": "compare a trained model with the measured state",
    "compare": "evaluate several models on the same records, side by side",
    "import": "bring another tool's measurement files into a qtomo dataset",
    "export": "write a pauli6 dataset's records in another tool's format",
}

COMMANDS: dict[str, tuple[Callable, Callable[[argparse.Namespace], int]]] = {
    "simulate": (_add_simulate_parser, _run_simulate),
    "info": (_add_info_parser, _run_info),
    "fit": (_add_fit_parser, _run_fit),
    "evaluate": (_add_evaluate_parser, _run_evaluate),
    "compare": (_add_compare_parser, _run_compare),
    "import": (_add_import_parser, _run_import),
    "export": (_add_export_parser, _run_export),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``qtomo`` parser. With ``argv``, only the subcommand it names (its first word that
    is one) gets its arguments, and the others only their one-line summary, so that nothing
    heavy is imported to parse it; without, every subcommand is built in full."""
    parser = _Parser(prog="qtomo", description="Neural-network quantum state tomography.")
    parser.add_argument("--version", action="version", version=f"qtomo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                       metavar="{" + ",".join(COMMANDS) + "}")
    chosen = None if argv is None else next(
        (word for word in argv if not word.startswith("-")), "")
    for name, (add_parser, _) in COMMANDS.items():
        if chosen is None or name == chosen:
            add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=SUMMARIES[name])
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"qtomo: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qtomo`` console script; returns the exit status."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(argv).parse_args(argv)
        with warnings.catch_warnings():
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = _show_warning
            status = COMMANDS[args.command][1](args)
        sys.stdout.flush()  # a closed pipe is found here, not in the interpreter's exit
        return status
    except QtomoError as error:
        print(f"qtomo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qtomo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output (qtomo info x | head) has gone
        _silence_stdout()
        return _BROKEN_PIPE


_BROKEN_PIPE = 141  # 128 + SIGPIPE, the status of a Unix tool whose reader went away


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's final flush of the text
    still buffered for the closed pipe does not print a second BrokenPipeError at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
