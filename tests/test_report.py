"""``qtomo.report``: the text report flags an unphysical Renyi-2 estimate and prints no -0."""

from qtomo.evaluate import evaluate
from qtomo.report import format_report


def test_negative_renyi2_is_flagged_and_the_reference_has_no_minus_zero(ghz3_records,
                                                                         ghz3_gru):
    evaluation = evaluate(ghz3_gru, ghz3_records, blocks=(3,), seed=0)
    rows = [line for line in format_report(evaluation).splitlines() if "Renyi-2" in line]
    state = evaluation.reduced_states[0]
    # 2000 GHZ records: ρ_A from the data alone is unphysical, the model's is not
    assert state.model.renyi2.value > 0 and state.data.renyi2.value < 0
    assert rows[0].count("UNPHYSICAL (Tr rho_A^2 > 1)") == 1  # the data column only
    assert rows[0].split()[-1] == "0" and "-0" not in rows[0].split()[-1]
