"""``qtomo.observables``: records must be whole numbers, for the Pauli estimates and the
histogram fidelity alike."""

import numpy as np
import pytest

from qtomo.errors import QtomoError
from qtomo.metrics import histogram_classical_fidelity
from qtomo.observables import estimate_observables
from qtomo.povm import get_povm


def test_records_must_be_whole_numbers():
    whole = np.zeros((10, 2))
    assert np.allclose(estimate_observables(whole, get_povm("pauli6")).Z.value,
                       estimate_observables(whole.astype(int), get_povm("pauli6")).Z.value)
    with pytest.raises(QtomoError, match="records must be whole numbers; got 0.5"):
        estimate_observables(whole + 0.5, get_povm("pauli6"))
    with pytest.raises(QtomoError, match="test records must be whole numbers"):
        histogram_classical_fidelity(whole.astype(int), whole + 0.25, np.log(np.full(10, 0.5)), 6)
