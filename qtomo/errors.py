"""User-facing errors.

Every exception a user can provoke with bad input derives from :class:`QtomoError`. Its message
is one line that names the offending value and what was expected; the CLI prints it as
``qtomo: error: <message>`` and exits with status 2. Anything else that escapes is an internal
failure (exit status 1).
"""

from __future__ import annotations


class QtomoError(Exception):
    """Bad input: a one-line message naming the value and the expectation."""


class DataFormatError(QtomoError):
    """A dataset file that is missing, corrupt, foreign, or unlike docs/conventions.md "The dataset
    file"."""


class CheckpointError(QtomoError):
    """A checkpoint that is not a qtomo checkpoint or does not match its model, data or POVM."""


class ConvergenceError(QtomoError):
    """An iterative method (DMRG, training) that failed: NaN loss, no convergence."""
