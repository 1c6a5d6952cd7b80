"""The training recipe of a plain ``qtomo fit`` (qtomo/recipe.py): which family the records
choose without ``--model``."""

import numpy as np
import pytest

from qtomo.data import read_dataset
from qtomo.formats import import_records
from qtomo.recipe import NETWORK_MIN_RECORDS, default_family
from qtomo.simulate import simulate


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """Exact `pauli4` records of the L = 3 TFIM: the smallest file the network gets, and one
    record fewer."""
    folder = tmp_path_factory.mktemp("recipe")
    return [read_dataset(simulate("tfim", 3, samples=n, method="exact", out=folder / f"{n}.h5",
                                  quiet=True))
            for n in (NETWORK_MIN_RECORDS, NETWORK_MIN_RECORDS - 1)]


def test_complete_records_choose_by_their_number(complete):
    enough, few = complete
    assert default_family(enough) == (
        "gru", f"{NETWORK_MIN_RECORDS} records of complete, uniform tomography (give --model "
               f"mps for a physical state)")
    family, reason = default_family(few)
    assert family == "mps" and f"{NETWORK_MIN_RECORDS - 1} records, fewer than" in reason


def test_hyperparameters_given_choose_the_family_that_takes_them(complete):
    few = complete[1]
    assert default_family(few, ["hidden"]) == ("gru", "hidden given, which the gru takes")
    assert default_family(few, ["chi", "real"])[0] == "mps"
    assert default_family(few, ["heads"])[0] == "mps"  # neither takes it: build names it


def test_many_z_only_records_choose_the_physical_family(tmp_path):
    """2·10^4 Z-basis shots are many, but fix no phase: a network's ρ of them is no state."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(2 * NETWORK_MIN_RECORDS, 3))
    np.savetxt(tmp_path / "samples.txt", bits.astype(float))
    np.savetxt(tmp_path / "bases.txt", np.full(bits.shape, "Z"), fmt="%s")
    with pytest.warns(UserWarning):
        data = import_records("qucumber", [tmp_path / "samples.txt", tmp_path / "bases.txt"],
                              tmp_path / "z.h5", allow_biased_bases=True)
    family, reason = default_family(read_dataset(data))
    assert family == "mps" and reason.startswith("the bases of the records are biased")
