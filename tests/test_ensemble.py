"""``qtomo.ensemble``: an ensemble refuses one member given twice."""

import pytest

from qtomo.ensemble import evaluate_ensemble
from qtomo.errors import QtomoError
from qtomo.models import load_checkpoint


def test_api_ensemble_refuses_one_member_twice(ghz3_records, ghz3_gru):
    first, second = load_checkpoint(ghz3_gru), load_checkpoint(ghz3_gru)
    with pytest.raises(QtomoError, match="ensemble members: .*m.pt and .*m.pt are the same"):
        evaluate_ensemble([first, second], ghz3_records, blocks=())
    with pytest.raises(QtomoError, match="are the same file"):  # variant: one object twice
        evaluate_ensemble([first, first], ghz3_records, blocks=())
