"""``qtomo.atomic``: outputs written whole or not at all. OS errors (full disks, monkeypatched
and on a real tmpfs) become one line and leave nothing; outputs honour the umask and keep the mode
of the file they replace; the leftovers of a killed writer are named and described."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from qtomo.atomic import atomic_output, describe_leftover, leftovers
from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import DataFormatError, QtomoError
from qtomo.simulate import simulate
from tests.commands import one_line_error, tiny_fit

ROOT = Path(__file__).resolve().parents[1]


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


def test_full_disk_simulate_and_fit_monkeypatched(tfim3_records, tmp_path, monkeypatch, capsys):
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
        assert main(["fit", "--data", str(tfim3_records), "--out", str(tmp_path / "m.pt"),
                     *tiny_fit(2)]) == 2
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


def test_full_disk_on_a_real_tmpfs(tfim3_records, tiny_tmpfs):
    """In child processes, so that a crash at exit (h5py's, before) shows as its status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    commands = [["simulate", "--L", "8", "--samples", "30000", "--out",  # ln P alone fits
                 str(tiny_tmpfs / "d.h5"), "--quiet"],
                ["fit", "--data", str(tfim3_records), "--out", str(tiny_tmpfs / "m.pt"),
                 "--epochs", "1", "--hidden", "200", "--device", "cpu", "--quiet"]]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "qtomo.cli", *command], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "No space left on device" in done.stderr
        assert list(tiny_tmpfs.iterdir()) == []


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
