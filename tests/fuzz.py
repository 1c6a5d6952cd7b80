"""Shared pieces of the hypothesis fuzz tests (issues 14 and 24): their settings, the one-line
contract of a refusal, and the values drawn for attributes and checkpoint fields.

The contract everywhere: bad input is a :class:`~qtomo.errors.QtomoError` with one line from the
API (a ``DataFormatError`` or ``CheckpointError`` naming the file for files), ``qtomo: error: …``
and exit status 2 from the CLI, and nothing is left behind; input that is accepted is
self-consistent. Derandomized with fixed example counts, so a run is the same every time.
"""

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from qtomo.errors import QtomoError

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=4),
    st.sampled_from(["tfim", "ghz", "exact", "mps", "open", "periodic", "pauli4", "tetra"]),
)


def one_line(error: BaseException) -> None:
    """A refusal's message is one non-empty line."""
    assert str(error) and "\n" not in str(error), repr(error)


def accepted_or_refused(call, valid: bool, label=()):
    """``call()``'s result where ``valid``; else it must raise a one-line QtomoError (None)."""
    try:
        result = call()
    except QtomoError as error:
        one_line(error)
        assert not valid, (*label, error)
        event("refused")
        return None
    event("accepted")
    assert valid, label
    return result


def read_or_refused(read, path, refusal: type[QtomoError]):
    """``read(path)``, or None where it raises ``refusal`` in one line naming the file."""
    try:
        return read(path)
    except refusal as error:
        one_line(error)
        assert str(path) in str(error)
        event("refused")
        return None
