"""Atomic output files: write to a temporary name in the target folder, rename when complete.

A crash or an error therefore never leaves a file that looks valid at the target path. The
temporary file is called ``.<name>.qtomo-partial-<pid>-<random>`` beside the target, so that a
leftover of a killed process (``kill -9``, a power cut) is recognisable: :func:`describe_leftover`
says what it is (``qtomo info`` prints that), and the next write to the same target warns about
it. The finished file gets the permissions a plainly created file would get (0666 less the
umask), or keeps those of the file it replaces.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from qtomo.errors import QtomoError

__all__ = ["atomic_output", "check_distinct", "check_outputs", "check_space", "check_writable",
           "describe_leftover", "leftovers", "same_file"]

_TAG = ".qtomo-partial-"
_LEFTOVER = re.compile(r"^\.(?P<target>.+)" + re.escape(_TAG) + r"(?P<pid>\d+)-[^/]+$")
# h5py and torch report a failed write(2) as RuntimeError with the errno inside the message
_ERRNO = re.compile(r"errno = (\d+)")


def check_writable(path: str | os.PathLike) -> Path:
    """Raise QtomoError now, before any work, if ``path`` cannot become an output file
    (:func:`check_outputs` also refuses an output that is an input or another output).

    When the folder exists, a temporary file is created in it and removed at once; otherwise the
    nearest existing ancestor must be a folder this process may write to. Nothing is left
    behind, and a folder at ``path``, a file where a folder is expected, a read-only folder or a
    missing permission is one line before hours of simulation or training, not a traceback after.

    Returns:
        ``path`` as a Path.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> check_writable(folder / "sub" / "out.h5").name, list(folder.iterdir())
        ('out.h5', [])
        >>> check_writable(folder)
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: cannot write ...: it is a folder; give a file path
    """
    target = Path(path)
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if target.parent.is_dir() or target.is_dir():
        handle, temporary = _create_temporary(target)
        os.close(handle)
        temporary.unlink()
    elif not existing.is_dir():
        raise QtomoError(f"cannot write {target}: {existing} is not a folder")
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise QtomoError(f"cannot write {target}: no permission to create folders in {existing}")
    return target


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same path once symbolic links, ``..`` and the
    working folder are resolved (``os.path.realpath``), or, for two existing files, the same
    inode (a hard link)."""
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False


def check_distinct(paths: Sequence[str | os.PathLike], what: str) -> None:
    """Raise QtomoError if two of ``paths`` name one file (:func:`same_file`); ``what`` names
    them in the message ("--model checkpoints", "outputs").

    Example:
        >>> check_distinct(["a.pt", "./a.pt"], "--model checkpoints")
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: --model checkpoints: a.pt and ./a.pt are the same file; give ...
    """
    for index, first in enumerate(paths):
        for second in paths[index + 1:]:
            if same_file(first, second):
                raise QtomoError(f"{what}: {first} and {second} are the same file; give each "
                                 f"its own path")


def check_outputs(outputs: Sequence[str | os.PathLike | None],
                  inputs: Sequence[str | os.PathLike | None] = ()) -> list[Path]:
    """Raise QtomoError now, before any work, if an output of a command names one of its
    ``inputs`` or another of its ``outputs`` (:func:`same_file`: links and relative paths
    resolved), or cannot be written (:func:`check_writable`). None entries (an option not
    given) and ``"-"`` (standard output) are skipped.

    Returns:
        The outputs checked, as Paths.

    Example:
        >>> check_outputs(["data/x.h5"], inputs=["./data/../data/x.h5"])
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: cannot write data/x.h5: it is an input of this command ...
    """
    outputs = [Path(path) for path in outputs if path is not None and str(path) != "-"]
    inputs = [Path(path) for path in inputs if path is not None]
    for output in outputs:
        for source in inputs:
            if same_file(output, source):
                raise QtomoError(f"cannot write {output}: it is an input of this command "
                                 f"({source}); give another output path")
    check_distinct(outputs, "outputs")
    return [check_writable(output) for output in outputs]


def check_space(path: str | os.PathLike, needed: int, what: str) -> None:
    """Raise QtomoError if the disk holding ``path`` (or its nearest existing folder) has fewer
    than ``needed`` bytes free: a write that must fail is refused before the work.

    Example:
        >>> check_space("out.h5", 2**80, "the ln P column")
        Traceback (most recent call last):
        ...
        qtomo.errors.QtomoError: cannot write out.h5: the ln P column needs ... GiB; the disk ...
    """
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise QtomoError(f"cannot write {path}: {what} needs {needed / 2**30:.3g} GiB; the disk "
                         f"has {free / 2**30:.3g} GiB free")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it.

    Raises:
        QtomoError: if the folder cannot be created or written, ``path`` is a folder, or the
            writing fails with an operating-system error (a full disk, a lost mount, …): one
            line naming the file and the reason; no file and no temporary file are left.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_output(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    handle, temporary = _create_temporary(target)
    os.close(handle)
    for leftover in leftovers(target):
        warnings.warn(f"{leftover}: {describe_leftover(leftover)}", stacklevel=3)
    try:
        yield temporary
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except (OSError, RuntimeError) as error:
        system_error = _system_error(error)
        if system_error is None:
            raise
        raise QtomoError(f"cannot write {target}: {system_error}") from None
    finally:
        temporary.unlink(missing_ok=True)


def leftovers(target: str | os.PathLike) -> list[Path]:
    """Temporary files of earlier writes to ``target`` whose process no longer runs."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    found = []
    for candidate in target.parent.glob(f".{glob.escape(target.name)}{_TAG}*"):
        match = _LEFTOVER.match(candidate.name)
        if match and match["target"] == target.name and not _running(int(match["pid"])):
            found.append(candidate)
    return sorted(found)


def describe_leftover(path: str | os.PathLike) -> str | None:
    """What a temporary file of :func:`atomic_output` is, or None for any other name.

    Example:
        >>> text = describe_leftover("data/.tfim.h5.qtomo-partial-999999999-x1y2")
        >>> print(text)  # doctest: +NORMALIZE_WHITESPACE
        an unfinished temporary file that qtomo process 999999999 (no longer running) left while
        writing data/tfim.h5; it is incomplete: delete it
        >>> describe_leftover("data/tfim.h5") is None
        True
    """
    path = Path(path)
    match = _LEFTOVER.match(path.name)
    if match is None:
        return None
    pid, target = int(match["pid"]), path.with_name(match["target"])
    if _running(pid):
        return f"a temporary file that qtomo process {pid} is writing now for {target}"
    return (f"an unfinished temporary file that qtomo process {pid} (no longer running) left "
            f"while writing {target}; it is incomplete: delete it")


def _create_temporary(target: Path) -> tuple[int, Path]:
    """(open descriptor, path) of a new empty temporary file beside ``target``."""
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "it is a folder; give a file path")
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent,
                                        prefix=f".{target.name}{_TAG}{os.getpid()}-")
    except OSError as error:
        raise QtomoError(f"cannot write {target}: {error.strerror or error}") from None
    return handle, Path(name)


def _mode_for(target: Path) -> int:
    """Permission bits of the file being replaced, else 0666 less the process umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _system_error(error: BaseException) -> str | None:
    """The operating-system reason of a failed write, or None if ``error`` is something else."""
    if isinstance(error, OSError):
        code = error.errno
        if code is None:
            found = _ERRNO.search(str(error))
            code = int(found[1]) if found else None
        return os.strerror(code) if code else str(error).strip().splitlines()[0]
    found = _ERRNO.search(str(error))
    return os.strerror(int(found[1])) if found else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True
