"""Edge inputs that once crashed or passed silently (issue 14), one test per defect group.

Numbers: CLI counts. Folders as outputs. Full disks (monkeypatched writes, and a real 256 KiB
tmpfs where this process may mount one). Crafted checkpoints. Dataset attributes and references.
Resume options. Replaced dataset files. Python API checks. File modes and leftovers. Degenerate
TFIM points.
"""

import errno
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import qtomo.train
from qtomo.atomic import atomic_output, describe_leftover, leftovers
from qtomo.cli import main
from qtomo.data import read_dataset, write_dataset
from qtomo.errors import CheckpointError, DataFormatError, QtomoError
from qtomo.models import build, load_checkpoint
from qtomo.povm import get_povm
from qtomo.simulate import SimulationWarning, simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.states.mps import ghz_mps, tfim_mps
from qtomo.train import TrainOptions, fit
from tests.files import copy_and_edit, replace_item

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "2", "--batch-size", "128", "--hidden", "8", "--layers", "1",
        "--device", "cpu", "--quiet"]


def one_line_error(capsys, *fragments):
    """The CLI's stderr is one line ``qtomo: error: …`` containing every fragment."""
    err = capsys.readouterr().err
    assert err.startswith("qtomo: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """3 000 pauli4 records of the exact L = 3 TFIM at h = 0.8."""
    path = tmp_path_factory.mktemp("small") / "tfim3.h5"
    return simulate("tfim", 3, h=0.8, samples=3000, seed=1, out=path, quiet=True)


@pytest.fixture(scope="module")
def run(small, tmp_path_factory):
    """A finished one-epoch GRU run on ``small``: (best checkpoint, .last.pt)."""
    out = tmp_path_factory.mktemp("run") / "m.pt"
    torch.manual_seed(0)
    result = fit(build("gru", L=3, K=4, hidden=8, layers=1), read_dataset(small),
                 TrainOptions(epochs=1, batch_size=256), out=out, device="cpu", quiet=True)
    return result.checkpoint, result.last


# --- 1. numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["simulate", "--samples", "1e400"], "--samples"),
    (["simulate", "--samples", "1.5e0"], "--samples"),
    (["simulate", "--samples", "1.5"], "--samples"),
    (["simulate", "--samples", "nan"], "--samples"),
    (["simulate", "--samples", "inf"], "--samples"),
    (["simulate", "--samples", "1e19"], "--samples"),
    (["simulate", "--samples", "0x10"], "--samples"),
    (["simulate", "--L", "1e400"], "--L"),
    (["simulate", "--L", "2.5"], "--L"),
    (["simulate", "--chi-max", "1.5"], "--chi-max"),
    (["simulate", "--seed", "1e400"], "--seed"),
    (["simulate", "--seed", "-1"], "--seed"),
    (["fit", "--epochs", "1e400"], "--epochs"),
    (["fit", "--epochs", "2.5"], "--epochs"),
    (["fit", "--batch-size", "1.5e0"], "--batch-size"),
    (["fit", "--warmup", "1e400"], "--warmup"),
    (["fit", "--patience", "0.5"], "--patience"),
    (["fit", "--hidden", "1e400"], "--hidden"),
    (["fit", "--seed", "1e30"], "--seed"),
    (["evaluate", "--model", "m.pt", "--samples", "1e400"], "--samples"),
    (["evaluate", "--model", "m.pt", "--samples", "2.5"], "--samples"),
])
def test_cli_counts_are_integers_or_one_line_errors(argv, flag, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_line_error(capsys, f"argument {flag}: expected ")
    assert list(tmp_path.iterdir()) == []


def test_cli_count_in_exact_scientific_notation(tmp_path):
    out = tmp_path / "d.h5"
    assert main(["simulate", "--L", "2", "--samples", "1e2", "--out", str(out), "--quiet"]) == 0
    assert read_dataset(out).n_records == 100


# --- 2. outputs that are folders -----------------------------------------------------------

def test_simulate_into_a_folder_fails_before_the_work(tmp_path, monkeypatch, capsys):
    def no_work(*args):
        raise AssertionError("the state was built before the output was checked")

    monkeypatch.setattr(qtomo.simulate, "_build_state", no_work)
    assert main(["simulate", "--L", "3", "--samples", "10", "--out", str(tmp_path),
                 "--quiet"]) == 2
    one_line_error(capsys, "it is a folder")
    assert list(tmp_path.iterdir()) == []


def test_fit_into_a_folder_fails_before_the_work_and_leaves_nothing(small, tmp_path, capsys):
    out = tmp_path / "m.pt"
    out.mkdir()
    assert main(["fit", "--data", str(small), "--out", str(out), *TINY]) == 2
    one_line_error(capsys, "it is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("model", [TINY, ["--model", "mps", "--epochs", "1", "--quiet"]])
def test_fit_onto_its_own_data_fails_and_leaves_the_data(small, capsys, model):
    """A plain fit and a size search (which copies its kept run to --out) both refuse."""
    before = small.read_bytes()
    assert main(["fit", "--data", str(small), "--out", str(small), *model]) == 2
    one_line_error(capsys, "it is an input of this command")
    assert small.read_bytes() == before


@pytest.mark.parametrize("option, name", [("--json", "eval.json"), ("--plot", "eval.png")])
def test_evaluate_into_a_folder_fails_before_the_work(run, small, tmp_path, monkeypatch, capsys,
                                                      option, name):
    (tmp_path / name).mkdir()

    def no_work(*args, **kwargs):
        raise AssertionError("evaluated before the output was checked")

    monkeypatch.setattr(qtomo.evaluate, "evaluate", no_work)
    assert main(["evaluate", "--model", str(run[0]), "--data", str(small), option,
                 str(tmp_path / name), "--quiet"]) == 2
    one_line_error(capsys, "it is a folder")
    assert list((tmp_path / name).iterdir()) == []


def test_atomic_output_turns_every_os_error_into_one_line(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(QtomoError, match=r"out.txt: No space left on device$"):
        with atomic_output(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(QtomoError, match=r"out.txt: Is a directory"):
        with atomic_output(target) as tmp:
            tmp.write_text("complete")
            target.mkdir()  # the rename fails
    target.rmdir()
    with pytest.raises(QtomoError, match="Read-only file system"):  # h5py's form: errno in text
        with atomic_output(target):
            raise RuntimeError("Can't close dataset (file write failed: errno = 30, error "
                               "message = 'Read-only file system')")
    with pytest.raises(ValueError, match="a bug"):  # anything else is not a user error
        with atomic_output(target):
            raise ValueError("a bug")
    assert list(tmp_path.iterdir()) == []


# --- 3. full disk ----------------------------------------------------------------------------

def test_full_disk_simulate_and_fit_monkeypatched(small, tmp_path, monkeypatch, capsys):
    """The writes raise ENOSPC as h5py (errno only in the text) and Python file writes do."""
    def h5py_full(self, key, value):
        raise OSError("Can't synchronously write data (file write failed: time = now, errno = "
                      "28, error message = 'No space left on device')")

    with monkeypatch.context() as patch:
        patch.setattr(h5py.Dataset, "__setitem__", h5py_full)
        assert main(["simulate", "--L", "3", "--samples", "100", "--out",
                     str(tmp_path / "d.h5"), "--quiet"]) == 2
    one_line_error(capsys, "d.h5: No space left on device")
    assert list(tmp_path.iterdir()) == []

    def file_full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_bytes", file_full)
        assert main(["fit", "--data", str(small), "--out", str(tmp_path / "m.pt"), *TINY]) == 2
    one_line_error(capsys, "m.last.pt: No space left on device")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 256 KiB tmpfs (needs the right to mount; skipped otherwise)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                                           str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_on_a_real_tmpfs(small, tiny_tmpfs):
    """In child processes, so that a crash at exit (h5py's, before) shows as its status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    commands = [["simulate", "--L", "8", "--samples", "30000", "--out",  # ln P alone fits
                 str(tiny_tmpfs / "d.h5"), "--quiet"],
                ["fit", "--data", str(small), "--out", str(tiny_tmpfs / "m.pt"), "--epochs", "1",
                 "--hidden", "200", "--device", "cpu", "--quiet"]]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "qtomo.cli", *command], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr
        assert list(tiny_tmpfs.iterdir()) == []


# --- 4. crafted checkpoints -------------------------------------------------------------------

def _nan_weights(payload):
    first = next(iter(payload["state_dict"]))
    payload["state_dict"][first][0] = float("nan")


def _nan_average(payload):
    payload["trainer"]["average"] = {k: v.clone() for k, v in payload["state_dict"].items()}
    first = next(iter(payload["trainer"]["average"]))
    payload["trainer"]["average"][first].fill_(float("inf"))


CRAFTED = {
    "hyperparameters not a mapping": (
        lambda p: p["config"].__setitem__("hyperparameters", [8, 1]),
        "config.hyperparameters must be a mapping"),
    "data without train_rows": (
        lambda p: p["config"]["data"].pop("train_rows"),
        "config.data lacks the field 'train_rows'"),
    "reversed rows": (
        lambda p: p["config"]["data"].__setitem__("val_rows", [3000, 2700]),
        "config.data.val_rows must be a row range"),
    "string best_val_nll": (
        lambda p: p["config"]["training"].__setitem__("best_val_nll", "low"),
        "config.training.best_val_nll must be a number; got 'low'"),
    "NaN best_val_nll": (
        lambda p: p["config"]["training"].__setitem__("best_val_nll", float("nan")),
        "config.training.best_val_nll is NaN"),
    "unknown training option": (
        lambda p: p["config"]["training"]["options"].__setitem__("turbo", True),
        "unknown option(s) turbo"),
    "string training option": (
        lambda p: p["config"]["training"]["options"].__setitem__("lr", "fast"),
        "training option lr must be of type float"),
    "string L": (lambda p: p["config"].__setitem__("L", "3"), "config.L must be an integer"),
    "trainer epoch a string": (
        lambda p: p["trainer"].__setitem__("epoch", "1"), "trainer.epoch must be an integer"),
    "trainer without optimizer": (
        lambda p: p["trainer"].pop("optimizer"), "trainer lacks the field 'optimizer'"),
    "trainer a list": (lambda p: p.__setitem__("trainer", [1]), "trainer must be a mapping"),
    "history entry without val_nll": (
        lambda p: p["trainer"]["history"][0].pop("val_nll"),
        "trainer.history[0] lacks the field 'val_nll'"),
    "rng not a tensor": (
        lambda p: p["trainer"]["rng"].__setitem__("cpu", [1, 2]),
        "trainer.rng.cpu must be a tensor"),
    "NaN weights": (_nan_weights, "holds non-finite weights"),
    "infinite average": (_nan_average, "trainer.average.* holds non-finite weights"),
    "state dict a list": (lambda p: p.__setitem__("state_dict", [1]),
                          "state_dict must be a mapping"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_checkpoints_are_one_line(run, tmp_path, capsys, case):
    edit, message = CRAFTED[case]
    payload = torch.load(run[1], weights_only=True)
    edit(payload)
    path = tmp_path / "crafted.last.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert any(part in str(info.value) for part in message.split("*")), str(info.value)
    assert main(["info", str(path)]) == 2
    one_line_error(capsys)


def test_nan_weights_stop_evaluate_before_any_work(run, small, tmp_path, capsys):
    payload = torch.load(run[0], weights_only=True)
    _nan_weights(payload)
    torch.save(payload, tmp_path / "nan.pt")
    assert main(["evaluate", "--model", str(tmp_path / "nan.pt"), "--data", str(small),
                 "--quiet"]) == 2
    one_line_error(capsys, "non-finite weights")


def test_resume_from_an_optimizer_state_of_the_wrong_shape_is_one_line(run, small, tmp_path,
                                                                       capsys):
    payload = torch.load(run[1], weights_only=True)
    state = payload["trainer"]["optimizer"]["state"]
    state[0]["exp_avg"] = torch.zeros(5)
    torch.save(payload, tmp_path / "m.last.pt")
    assert main(["fit", "--resume", str(tmp_path / "m.last.pt"), "--data", str(small),
                 "--epochs", "2", "--quiet", "--device", "cpu"]) == 2
    one_line_error(capsys, "trainer state does not fit the model", "exp_avg")


# --- 5. dataset attributes and references -----------------------------------------------------





def _set(name, value):
    return lambda file: file.attrs.__setitem__(name, value)


BAD_FILES = {
    "TFIM without J": (lambda f: f.attrs.__delitem__("J"), "needs the attribute(s) J"),
    "h a string": (_set("h", "strong"), "attribute h must be a finite number; got 'strong'"),
    "h NaN": (_set("h", np.nan), "attribute h must be a finite number"),
    "boundary unknown": (_set("boundary", "twisted"), "attribute boundary must be one of"),
    "L a float": (_set("L", 4.7), "attribute L must be a positive integer; got 4.7"),
    "L an array": (_set("L", np.array([3, 3])), "attribute L must be a positive integer"),
    "seed a string": (_set("seed", "x"), "attribute seed must be an integer"),
    "method unknown": (_set("method", "dmrg"), "attribute method must be 'exact' or 'mps'"),
    "chi_max zero": (_set("chi_max", 0), "attribute chi_max must be an integer >= 1"),
    "energy a string": (replace_item("reference/energy", "low"),
                        "/reference/energy must hold real"),
    "energy complex": (replace_item("reference/energy", 1j), "/reference/energy must hold real"),
    "psi not normalised": (replace_item("reference/psi", np.full(8, 1.0 + 0j)),
                           "/reference/psi must have norm 1; got 2.82843"),
    "psi NaN": (replace_item("reference/psi", np.full(8, np.nan + 0j)), "non-finite"),
    "psi of the wrong length": (replace_item("reference/psi", np.ones(4) / 2),
                                "/reference/psi must have shape (8,)"),
    "ZZ above one": (replace_item("reference/ZZ", np.full((3, 3), 3.0)), "outside [-1, 1]: 3"),
    "X infinite": (replace_item("reference/X", np.full(3, np.inf)), "non-finite"),
    "entropy negative": (replace_item("reference/entropy", -np.ones(2)), "must be >= 0"),
    "reference not a group": (replace_item("reference", np.zeros(3)), "/reference is not an HDF5"),
    "energy a group": (lambda f: (f.__delitem__("reference/energy"),
                                  f.create_group("reference/energy")),
                       "/reference/energy must have shape (); got a group"),
    "outcomes a group": (lambda f: (f.__delitem__("outcomes"), f.create_group("outcomes")),
                         "/outcomes is not an HDF5 dataset"),
    "ln P positive": (lambda f: f["log_prob"].__setitem__(17, 0.5),
                      "ln P must be finite and <= 0 (0 < P <= 1); got 0.5 in row 17"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_dataset_attributes_and_references_are_checked(small, tmp_path, case):
    edit, message = BAD_FILES[case]
    bad = copy_and_edit(small, tmp_path / "bad.h5", edit)
    with pytest.raises(DataFormatError) as info:
        read_dataset(bad)
    assert message in str(info.value) and str(bad) in str(info.value)
    assert "\n" not in str(info.value)


def test_absent_optional_items_are_fine(small, tmp_path):
    bare = copy_and_edit(small, tmp_path / "bare.h5",
                   lambda f: (f.__delitem__("reference"), f.__delitem__("log_prob")))
    dataset = read_dataset(bare)
    assert dataset.reference == {} and not dataset.has_log_prob


def test_mps_reference_must_be_normalised(tmp_path):
    path = simulate("ghz", 4, povm="pauli6", samples=10, out=tmp_path / "ghz.h5", quiet=True)
    scaled = 2 * read_dataset(path).reference["mps"][0]
    bad = copy_and_edit(path, tmp_path / "bad.h5", replace_item("reference/mps/B_0", scaled))
    with pytest.raises(DataFormatError, match="/reference/mps: MPS tensor 0 is not right-canon"):
        read_dataset(bad)


# --- 6. resume --------------------------------------------------------------------------------

def _interrupted(interrupt_after, argv, after=1):
    """Run ``qtomo fit argv`` and kill it (KeyboardInterrupt) once ``after`` epochs are saved."""
    with interrupt_after(after):
        assert main(["fit", *argv]) == 130


def test_resume_without_seed_keeps_the_seed_and_equals_the_uninterrupted_run(
        small, tmp_path, interrupt_after):
    common = ["--data", str(small), *TINY, "--seed", "7"]
    assert main(["fit", *common, "--out", str(tmp_path / "whole.pt")]) == 0
    _interrupted(interrupt_after, [*common, "--out", str(tmp_path / "cut.pt")])
    torch.manual_seed(123)  # another global state: the resumed run must not depend on it
    assert main(["fit", "--resume", str(tmp_path / "cut.pt"), "--quiet", "--device", "cpu"]) == 0
    whole, cut = (load_checkpoint(tmp_path / name) for name in ("whole.last.pt", "cut.last.pt"))
    assert cut.config["training"]["options"]["seed"] == 7
    assert ([{k: v for k, v in row.items() if k != "time_s"} for row in cut.trainer["history"]]
            == [{k: v for k, v in row.items() if k != "time_s"}
                for row in whole.trainer["history"]])
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, cut.model.state_dict()[key]), key


def test_options_given_on_resume_are_applied(small, tmp_path, interrupt_after):
    argv = ["--data", str(small), *TINY, "--schedule", "constant", "--warmup", "0",
            "--lr", "3e-3", "--weight-decay", "0", "--out", str(tmp_path / "m.pt")]
    _interrupted(interrupt_after, argv)
    assert main(["fit", "--resume", str(tmp_path / "m.pt"), "--lr", "1e-3", "--weight-decay",
                 "0.01", "--epochs", "3", "--quiet", "--device", "cpu"]) == 0
    last = load_checkpoint(tmp_path / "m.last.pt")
    assert [row["lr"] for row in last.trainer["history"]] == [3e-3, 1e-3, 1e-3]
    group = last.trainer["optimizer"]["param_groups"][0]
    assert (group["lr"], group["initial_lr"], group["weight_decay"]) == (1e-3, 1e-3, 0.01)
    options = last.config["training"]["options"]
    assert (options["lr"], options["epochs"], options["schedule"]) == (1e-3, 3, "constant")


def test_resume_with_another_weight_average_is_refused(small, tmp_path, interrupt_after,
                                                       capsys):
    _interrupted(interrupt_after, ["--data", str(small), *TINY, "--out", str(tmp_path / "m.pt")])
    capsys.readouterr()
    assert main(["fit", "--resume", str(tmp_path / "m.pt"), "--ema", "0.9", "--quiet"]) == 2
    one_line_error(capsys, "was trained with ema = 0.0; resume it with that ema (got 0.9)")


# --- 7. a checked dataset keeps its file ------------------------------------------------------

def test_replacing_the_file_after_reading_cannot_feed_other_rows(small, tmp_path):
    path = tmp_path / "d.h5"
    path.write_bytes(small.read_bytes())
    dataset = read_dataset(path)
    before = dataset.outcomes()
    simulate("tfim", 5, samples=4000, povm="pauli6", out=path, quiet=True)  # replaces path
    assert read_dataset(path).L == 5
    assert np.array_equal(dataset.outcomes(), before) and dataset.outcomes().shape[1] == 3
    assert np.array_equal(np.concatenate([c for c, _ in dataset.iter_chunks(700)]), before)
    dataset.close()


# --- 8. Python API checks ---------------------------------------------------------------------

ATTRS = {"state": "product", "L": 2, "seed": 0, "method": "exact"}


@pytest.mark.parametrize("attrs, chunk, reference, message", [
    (ATTRS, (np.array([[0.0, 1.7]]), [-1.0]), {}, "integer array of shape (B, 2); got float64"),
    (ATTRS, (np.array([[0, np.nan]]), [-1.0]), {}, "integer array"),
    (ATTRS, (np.array([[0, -1]]), [-1.0]), {}, "must lie in 0..3 for POVM 'pauli4'; got -1 in "
                                               "row 0"),
    (ATTRS, (np.array([[0, 1]]), [0.3]), {}, "ln P must be finite and <= 0"),
    (ATTRS, (np.array([[0, 1]]), [np.nan]), {}, "got nan in row 0"),
    (ATTRS, (np.array([["a", "b"]]), [-1.0]), {}, "integer array"),
    (ATTRS, (np.array([[0, 1]]), ["x"]), {}, "real log_prob"),
    ({"state": "product", "seed": 0, "method": "exact"}, (np.array([[0, 1]]), [-1.0]), {},
     "missing root attribute(s) L"),
    ({**ATTRS, "L": 4.7}, (np.array([[0, 1]]), [-1.0]), {}, "attribute L must be a positive "
                                                             "integer; got 4.7"),
    ({**ATTRS, "state": "tfim"}, (np.array([[0, 1]]), [-1.0]), {}, "needs the attribute(s) J"),
    (ATTRS, (np.array([[0, 1]]), [-1.0]), {"psi": np.ones(3) / math.sqrt(3)},
     "/reference/psi must have shape (4,)"),
    (ATTRS, (np.array([[0, 1]]), [-1.0]), {"energy": "low"}, "must hold real numbers"),
    (ATTRS, (np.array([[0, 1]]), [-1.0]), {"mps": ghz_mps(3).mps}, "must hold L = 2 tensors"),
])
def test_write_dataset_checks_its_inputs(tmp_path, attrs, chunk, reference, message):
    with pytest.raises(QtomoError) as info:
        write_dataset(tmp_path / "d.h5", povm=get_povm("pauli4"), attrs=attrs, n_records=1,
                      chunks=[(chunk[0], np.asarray(chunk[1]))], reference=reference)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_truth_distributions_share_the_record_check():
    pauli4 = get_povm("pauli4")
    for truth in (tfim_ground_state(3).distribution(pauli4), ghz_mps(3).distribution(pauli4)):
        with pytest.raises(QtomoError, match="must lie in 0..3 for POVM 'pauli4'; got 9 in row"):
            truth.log_prob(torch.tensor([[0, 9, 0]]))
        with pytest.raises(QtomoError, match="shape"):
            truth.log_prob(torch.zeros(1, 4, dtype=torch.long))


# --- 9. files: umask and leftovers ------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = simulate("product", 2, samples=10, out=tmp_path / "d.h5", quiet=True)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = simulate("product", 2, samples=10, out=tmp_path / "d.h5", quiet=True)
    path.chmod(0o640)
    simulate("product", 2, samples=20, out=path, quiet=True)
    assert path.stat().st_mode & 0o777 == 0o640 and read_dataset(path).n_records == 20


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_are_named_described_and_reported(tmp_path, capsys):
    leftover = tmp_path / f".d.h5.qtomo-partial-{_dead_pid()}-ab12cd34"
    leftover.write_bytes(b"")
    assert leftovers(tmp_path / "d.h5") == [leftover] and leftovers(tmp_path / "e.h5") == []
    for content in (b"\x89HDF\r\n\x1a\n half a file", b"PK\x03\x04 half a checkpoint", b""):
        leftover.write_bytes(content)
        assert main(["info", str(leftover)]) == 2
        one_line_error(capsys, "an unfinished temporary file that qtomo process",
                       "(no longer running) left while writing",
                       "d.h5; it is incomplete: delete it")
    assert main(["simulate", "--state", "product", "--L", "2", "--samples", "5", "--out",
                 str(tmp_path / "d.h5"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("qtomo: warning: ") and "unfinished temporary file" in err
    assert read_dataset(tmp_path / "d.h5").n_records == 5


def test_kill_9_leaves_a_recognisable_leftover(tmp_path):
    # the child dies by SIGKILL inside atomic_output, halfway through an HDF5 file: no timing
    script = ("import os, signal, sys, h5py; from qtomo.atomic import atomic_output\n"
              "with atomic_output(sys.argv[1]) as temporary:\n"
              "    with h5py.File(temporary, 'w') as file:\n"
              "        file.create_dataset('outcomes', data=[0] * 1000)\n"
              "        file.flush()\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", script, str(tmp_path / "big.h5")], env=env)
    assert child.returncode == -signal.SIGKILL
    (found,) = list(tmp_path.iterdir())
    assert found.name.startswith(".big.h5.qtomo-partial-")
    pid = found.name.split("-")[2]
    assert describe_leftover(found).startswith(
        f"an unfinished temporary file that qtomo process {pid} (no longer running)")
    with pytest.raises(DataFormatError, match="it is incomplete: delete it"):
        read_dataset(found)


# --- 10. degenerate TFIM points ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["exact", "mps"])
def test_classical_ising_point_warns_on_both_paths(tmp_path, method):
    with pytest.warns(SimulationWarning, match=r"parity gap 0.0e\+00 is below .* selected by "
                                               r"symmetry"):
        path = simulate("tfim", 6, h=0.0, samples=100, method=method, out=tmp_path / "d.h5",
                        quiet=True)
    assert "selected by symmetry" in read_dataset(path).attrs["warning"]


@pytest.mark.parametrize("method", ["exact", "mps"])
def test_zero_hamiltonian_is_one_line_on_both_paths(tmp_path, capsys, method):
    assert main(["simulate", "--L", "6", "--J", "0", "--h", "0", "--method", method,
                 "--samples", "10", "--out", str(tmp_path / "d.h5"), "--quiet"]) == 2
    one_line_error(capsys, "J = h = 0 makes H = 0")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(QtomoError, match="J = h = 0"):
        tfim_mps(6, J=0.0, h=0.0)


def test_field_free_of_coupling_is_unique_and_silent():
    state = tfim_ground_state(5, J=0.0, h=1.0)
    assert "warning" not in state.attrs
    assert np.allclose(state.references()["X"], 1.0)


# --- 11. MPS log-probabilities ----------------------------------------------------------------

def test_default_mps_log_probabilities_meet_1e_5_against_the_dense_state():
    """The default truncation keeps every stored ln P within 1e-5 of the exact ground state's
    (L = 10, h = 0.9: 7·10⁻⁵ at the former svd_min = 1e-10)."""
    pauli4 = get_povm("pauli4")
    truth = tfim_ground_state(10, h=0.9).distribution(pauli4)
    mps = tfim_mps(10, h=0.9).distribution(pauli4)
    a, log_p = mps.sample_with_log_prob(2000, torch.Generator().manual_seed(0))
    assert float((log_p - truth.log_prob(a)).abs().max()) < 1e-5


@pytest.mark.slow
def test_default_mps_log_probabilities_meet_1e_5_at_L37():
    """The issue's case: L = 37, h = 0.9, against an independent DMRG without cutoff."""
    pauli4 = get_povm("pauli4")
    reference = tfim_mps(37, h=0.9, chi_max=256, svd_min=0.0, energy_tol=1e-13)
    mps = tfim_mps(37, h=0.9).distribution(pauli4)
    a, log_p = mps.sample_with_log_prob(1000, torch.Generator().manual_seed(0))
    assert float((log_p - reference.distribution(pauli4).log_prob(a)).abs().max()) < 1e-5


def test_a_dataset_larger_than_the_free_disk_is_refused_before_the_work(tmp_path, capsys):
    assert main(["simulate", "--L", "3", "--samples", str(2**61), "--out",
                 str(tmp_path / "huge.h5"), "--quiet"]) == 2
    one_line_error(capsys, "the ln P column alone (8 bytes per record) needs", "GiB free")
    assert list(tmp_path.iterdir()) == []
