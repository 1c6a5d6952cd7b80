"""``qtomo.report.compare`` / ``qtomo.plots.plot_comparison`` and ``qtomo compare``: several
models on the same test records, and the recorded training time; two outputs on one path or one
model given twice are refused."""

import json

import numpy as np
import pytest
import torch

from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate
from qtomo.models import build, load_checkpoint, save_checkpoint
from qtomo.plots import plot_comparison
from qtomo.povm import get_povm
from qtomo.reconstruct import uhlmann_fidelity
from qtomo.report import compare, training_time
from qtomo.simulate import simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.train import TrainOptions, fit, run_paths
from tests.commands import refused
from tests.test_mps_model import dense_rho, randomised

L, N = 4, 3000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return read_dataset(simulate("tfim", L, h=1.0, samples=N, seed=5, device="cpu",
                                 out=folder / "tfim.h5", quiet=True))


@pytest.fixture(scope="module")
def evaluations(dataset):
    truth = tfim_ground_state(L, h=1.0).distribution(get_povm("pauli4"))
    model = randomised("mps", L, seed=3, chi=2)
    return [evaluate(truth, dataset), evaluate(model, dataset)]


def cells(table: str, label: str) -> list[str]:
    """The cells of the row that starts with ``label`` (columns split on 2+ spaces)."""
    import re

    row = next(line for line in table.splitlines() if line.startswith(label))
    return re.split(r"\s{2,}", row.strip())


def test_table_has_a_column_per_model_beside_data_and_exact(evaluations):
    truth, model = evaluations
    table = compare(evaluations, ["truth", "mps"])
    assert table.splitlines()[0].split() == ["quantity", "truth", "mps", "data", "only", "exact"]
    fidelity = cells(table, "quantum fidelity")
    assert fidelity[1] == "1 (exact)" and fidelity[2] == f"{model.fidelity.value:.6g} (exact)"
    assert cells(table, "  closest physical state")[2] == f"{model.fidelity.projected:.6g}"
    energy = cells(table, "energy <H>")
    reference = float(truth.observables.reference["energy"])
    assert energy[1] == f"{reference:.6g} (exact)"  # the truth reproduces the exact value
    assert energy[2] == f"{model.observables.model.energy.value:.6g} (exact)"
    data = truth.observables.data.energy
    assert energy[3] == f"{data.value:.6g} ± {data.stderr:.2g}" and energy[4] == f"{reference:.6g}"
    assert abs(data.value - reference) < 4 * data.stderr  # model-free estimate within 4σ
    corner = cells(table, f"<Z_0 Z_{L - 1}>")
    assert corner[4] == f"{truth.observables.reference['ZZ'][0, L - 1]:.6g}"
    kl = cells(table, "KL(P||Q)")
    assert kl[1].startswith("0 ") and kl[2] == f"{model.classical.kl.value:.6g} ± " \
                                                f"{model.classical.kl.stderr:.2g}"
    assert cells(table, "training time")[1:3] == ["—", "—"]  # neither was trained here


def test_physical_blocks_are_exact_at_small_L(dataset, evaluations):
    """At enumerable L a physical model's blocks come from its exact table: F(ρ_A, σ_A) of the
    dense reduced states, with no sampling error."""
    model = randomised("mps", L, seed=3, chi=2)
    rho = dense_rho(model.tensors())
    psi = dataset.reference["psi"]
    sigma = np.outer(psi, psi.conj())
    for state in evaluations[1].reduced_states:
        assert state.model.samples is None and state.exact_samples is None
        keep = list(state.sites)
        traced = [i for i in range(L) if i not in keep]

        def reduce(matrix, keep=keep, traced=traced):
            tensor = matrix.reshape([2] * (2 * L)).transpose(
                keep + traced + [L + i for i in keep] + [L + i for i in traced])
            d, e = 2 ** len(keep), 2 ** len(traced)
            return np.einsum("aibi->ab", tensor.reshape(d, e, d, e))

        expected = uhlmann_fidelity(reduce(rho), reduce(sigma))
        assert abs(state.model.fidelity.value - expected) < 1e-8
        assert state.model.fidelity.stderr == 0


def test_bad_comparisons_are_refused(dataset, evaluations):
    with pytest.raises(QtomoError, match="two or more"):
        compare(evaluations[:1], ["a"])
    with pytest.raises(QtomoError, match="one label each"):
        compare(evaluations, ["a"])
    with pytest.raises(QtomoError, match="must differ"):
        compare(evaluations, ["a", "a"])
    other = evaluate(randomised("mps", L, seed=3, chi=2), dataset, rows=(0, 1000))
    with pytest.raises(QtomoError, match="same test records"):
        compare([evaluations[0], other], ["a", "b"])


def test_figure_is_written(evaluations, tmp_path):
    history = tmp_path / "h.json"
    history.write_text(json.dumps({"epochs": [{"epoch": e, "train_nll": 7 - e / 10,
                                               "val_nll": 7 - e / 20, "lr": 1e-3, "time_s": 1}
                                              for e in (1, 2)]}))
    path = plot_comparison(evaluations, ["truth", "mps"], tmp_path / "c.png",
                           histories=[None, history])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(QtomoError, match="suffix"):
        plot_comparison(evaluations, ["truth", "mps"], tmp_path / "c.xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "h.json"]


def test_training_time_is_the_sum_of_epoch_times(dataset, tmp_path):
    torch.manual_seed(0)
    result = fit(build("gru", L=L, K=4, hidden=8), dataset, TrainOptions(epochs=2),
                 out=tmp_path / "m.pt", device="cpu", quiet=True)
    config = load_checkpoint(result.checkpoint).config
    assert config["training"]["time_s"] == pytest.approx(sum(r["time_s"] for r in result.history))
    evaluation = evaluate(load_checkpoint(result.checkpoint), dataset)
    assert training_time(evaluation) == config["training"]["time_s"] > 0


def test_cli_compare_writes_both_json_files_and_the_figure(dataset, tmp_path, capsys):
    paths = []
    for name, hp in (("gru", dict(hidden=8, layers=1)), ("mps", dict(chi=2))):
        torch.manual_seed(0)
        model = build(name, L=L, K=4, povm="pauli4", **hp)
        data = {"path": str(dataset.path), "n_records": N, "attrs": dataset.attrs,
                "train_rows": [0, 2500], "val_rows": [2500, N]}
        training = {"epochs_run": 3, "best_epoch": 2, "time_s": 12.25}
        paths.append(save_checkpoint(tmp_path / f"{name}.pt", model, povm="pauli4", data=data,
                                     training=training))
    run_paths(paths[1])[2].write_text(json.dumps({"epochs": [
        {"epoch": 1, "train_nll": 6.0, "val_nll": 5.9, "lr": 0.03, "time_s": 6.1}]}))
    argv = ["compare", "--model", str(paths[0]), "--model", str(paths[1]), "--device", "cpu",
            "--json", str(tmp_path / "g.json"), "--json", str(tmp_path / "m.json"),
            "--plot", str(tmp_path / "c.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["quantity", "gru", "mps"]
    assert cells(out, "training time")[1:3] == ["12.2 s", "12.2 s"]
    assert cells(out, "epochs (best)")[1] == "3 (2)"
    for name, family in (("g.json", "gru"), ("m.json", "mps")):
        report = json.loads((tmp_path / name).read_text())
        assert report["model"]["family"] == family and report["test_rows"] == [2500, N]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, message", [
    ([], "two or more"),
    (["--model", "{1}", "--json", "x.json"], "give --json once per --model"),
    (["--model", "{1}", "--label", "a", "--label", "a"], "must differ"),
    (["--model", "{1}", "--plot", "x.xyz"], "suffix"),
])
def test_cli_compare_bad_options_exit_2(dataset, tmp_path, capsys, extra, message):
    path = save_checkpoint(tmp_path / "m.pt", build("mps", L=L, K=4, povm="pauli4", chi=2),
                           povm="pauli4")
    other = tmp_path / "n.pt"  # the same model under a second name (one file twice: refused)
    other.write_bytes(path.read_bytes())
    argv = ["compare", "--model", str(path), "--data", str(dataset.path), "--device", "cpu",
            *[arg.replace("{1}", str(other)) for arg in extra]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_two_outputs_on_one_path_and_duplicate_models_are_refused(ghz3_records, ghz3_gru, capsys):
    folder = ghz3_records.parent
    copy = folder / "n.pt"
    copy.write_bytes(ghz3_gru.read_bytes())
    json = str(folder / "a.json")
    refused(capsys, folder, ["compare", "--model", str(ghz3_gru), "--model", str(copy), "--json",
                              json, "--json", json, "--quiet"], "same file")
    refused(capsys, folder, ["compare", "--model", str(ghz3_gru), "--model",
                              str(folder / "." / "m.pt"), "--quiet"], "same file")
    refused(capsys, folder, ["evaluate", "--model", str(ghz3_gru), str(ghz3_gru), "--quiet"],
             "same file")
    # variant: --json and --plot on one file
    image = folder / "a.png"
    refused(capsys, folder, ["evaluate", "--model", str(ghz3_gru), "--json", str(image), "--plot",
                              str(folder / "." / "a.png"), "--quiet"], "same file")
    copy.unlink()
