"""The trainer: quality against the exact TFIM distribution, resume, errors, streaming, DDP."""

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import qtomo.train
from qtomo.cli import main
from qtomo.data import read_dataset
from qtomo.errors import CheckpointError, ConvergenceError, QtomoError
from qtomo.evaluate import evaluate
from qtomo.models import build, load_checkpoint
from qtomo.povm import enumerate_outcomes, get_povm
from qtomo.simulate import simulate
from qtomo.states.exact import tfim_ground_state
from qtomo.train import TrainOptions, _Average, _Rows, fit
from tests.commands import one_line_error, refused, tiny_fit
from tests.files import digests
from tests.physics import exact_kl

FAST = dict(epochs=3, batch_size=128, warmup=20)



@pytest.fixture(scope="module")
def tfim4(tmp_path_factory):
    """2·10^4 pauli4 records of the exact L = 4 TFIM ground state at h = 1."""
    path = tmp_path_factory.mktemp("data") / "tfim4.h5"
    return read_dataset(simulate("tfim", 4, samples=20_000, out=path, seed=1, quiet=True))


def exact_kl_and_fidelity(model, L: int) -> tuple[float, float]:
    """KL(P‖Q) and F_c = (Σ √(PQ))² summed over all 4^L records of the exact TFIM state."""
    P = tfim_ground_state(L).distribution(get_povm("pauli4")).probabilities
    with torch.no_grad():
        log_q = model.log_prob(torch.from_numpy(enumerate_outcomes(L, 4))).double().numpy()
    return exact_kl(P, log_q), float(np.sum(np.sqrt(P * np.exp(log_q))) ** 2)


def train(name, dataset, out, **options):
    torch.manual_seed(0)
    model = build(name, L=dataset.L, K=dataset.K)
    return fit(model, dataset, TrainOptions(**options), out=out, device="cpu", quiet=True)


@pytest.mark.parametrize("name", ["gru", "lstm", "transformer"])
def test_learns_small_tfim(tfim4, tmp_path, name):
    result = train(name, tfim4, tmp_path / "m.pt", **FAST)
    kl, fidelity = exact_kl_and_fidelity(result.model, 4)
    assert fidelity >= 0.99 and kl <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gru", "lstm", "transformer"])
def test_quality_bar_tfim_L6(tmp_path, name):
    """Issue 4: exact L = 6 TFIM, 10^5 records, default hyperparameters."""
    dataset = read_dataset(simulate("tfim", 6, samples=100_000, out=tmp_path / "d.h5", seed=1,
                                    quiet=True))
    result = train(name, dataset, tmp_path / "m.pt", epochs=5)
    kl, fidelity = exact_kl_and_fidelity(result.model, 6)
    assert fidelity >= 0.99 and kl <= 0.02


def test_files_history_and_split(tfim4, tmp_path):
    result = train("gru", tfim4, tmp_path / "run.pt", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run.history.json", "run.last.pt", "run.pt"]
    history = json.loads(result.history_path.read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2, 3]
    assert set(history["epochs"][0]) == {"epoch", "train_nll", "val_nll", "lr", "time_s"}
    best = load_checkpoint(result.checkpoint)
    assert best.config["data"]["train_rows"] == [0, 18_000]
    assert best.config["data"]["val_rows"] == [18_000, 20_000]
    assert best.config["training"]["best_val_nll"] == min(r["val_nll"] for r in result.history)
    assert best.config["training"]["epochs_run"] == 3 and best.trainer is None
    assert load_checkpoint(result.last).trainer["epoch"] == 3
    a = torch.from_numpy(tfim4.outcomes(0, 100)).long()
    assert torch.equal(best.model.log_prob(a), result.model.log_prob(a))


@pytest.mark.parametrize("ema", [0.0, 0.99])
def test_resume_reproduces_the_uninterrupted_run(tfim4, tmp_path, interrupt_after, ema):
    options = dict(FAST, epochs=4, ema=ema)
    whole = train("gru", tfim4, tmp_path / "whole.pt", **options)

    with interrupt_after(2), pytest.raises(KeyboardInterrupt):
        train("gru", tfim4, tmp_path / "cut.pt", **options)
    torch.manual_seed(123)  # a different global state: resume must restore its own
    model = build("gru", L=4, K=4)
    resumed = fit(model, tfim4, TrainOptions(**options), out=tmp_path / "cut.pt",
                  resume=tmp_path / "cut.pt", device="cpu", quiet=True)
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in whole.history]
    assert [{k: v for k, v in row.items() if k != "time_s"} for row in resumed.history] == strip
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key])


def test_fit_leaves_the_callers_random_state_alone(tfim4):
    model = build("gru", L=4, K=4, hidden=8)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    fit(model, tfim4, TrainOptions(**dict(FAST, epochs=1)), device="cpu", quiet=True)
    assert torch.equal(torch.get_rng_state(), before)


def test_weight_average_closed_form():
    """Constant weights c from θ_0: θ̄_t = c + (θ_0 − c) Π_{s ≤ t} min(decay, (1 + s)/(10 + s))."""
    torch.manual_seed(0)
    model = build("gru", L=3, K=4, hidden=4, layers=1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = _Average(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    for t in range(1, 41):
        average.update(model, t)
    kept = math.prod(min(0.9, (1 + t) / (10 + t)) for t in range(1, 41))
    for key, mean in average.model.state_dict().items():
        torch.testing.assert_close(mean, 0.5 + (start[key] - 0.5) * kept, rtol=0, atol=1e-6)


def test_weight_average_is_what_is_validated_and_kept(tfim4, tmp_path):
    result = train("gru", tfim4, tmp_path / "m.pt", **dict(FAST, ema=0.99))
    best, last = load_checkpoint(result.checkpoint), load_checkpoint(result.last)
    assert result.best_epoch == 3  # the average of a short run improves every epoch
    for key, value in best.model.state_dict().items():
        assert torch.equal(value, last.trainer["average"][key])
        assert not torch.equal(value, last.model.state_dict()[key])  # the raw weights
    a = torch.from_numpy(tfim4.outcomes(18_000, 20_000)).long()
    with torch.no_grad():
        val_nll = -best.model.log_prob(a).double().mean().item()
    assert val_nll == pytest.approx(result.best_val_nll, abs=1e-6)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tfim4, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build("gru", L=4, K=4)
    write_history = qtomo.train._write_history

    def poison_after_epoch_1(path, history, summary):
        write_history(path, history, summary)
        monkeypatch.setattr(model, "training_nll", lambda a: model.log_prob(a) * float("nan"))

    monkeypatch.setattr(qtomo.train, "_write_history", poison_after_epoch_1)
    message = "became nan .* in epoch 2; kept .*m.last.pt .epoch 1."
    with pytest.raises(ConvergenceError, match=message):
        fit(model, tfim4, TrainOptions(**FAST), out=tmp_path / "m.pt", device="cpu", quiet=True)
    assert load_checkpoint(tmp_path / "m.last.pt").trainer["epoch"] == 1
    assert load_checkpoint(tmp_path / "m.pt").config["training"]["epochs_run"] == 1


def test_bad_input(tfim4, tmp_path):
    with pytest.raises(QtomoError, match="has L = 4, K = 4; the gru model was built for L = 5"):
        fit(build("gru", L=5, K=4), tfim4, out=tmp_path / "m.pt", quiet=True)
    with pytest.raises(QtomoError, match="18000 for training; need at least one batch of 20000"):
        fit(build("gru", L=4, K=4), tfim4, TrainOptions(batch_size=20_000), out=tmp_path / "m.pt")
    with pytest.raises(QtomoError, match="training option val_fraction must be in"):
        TrainOptions(val_fraction=0.0)
    with pytest.raises(QtomoError, match="training option ema must be 0 or in"):
        TrainOptions(ema=1.0)
    assert list(tmp_path.iterdir()) == []  # nothing written
    other = read_dataset(simulate("tfim", 3, samples=2_000, out=tmp_path / "L3.h5", quiet=True))
    train("gru", other, tmp_path / "L3.pt", epochs=1)
    with pytest.raises(CheckpointError, match="has L = 4, povm pauli4, 20000 records; the run in"):
        fit(build("gru", L=4, K=4), tfim4, out=tmp_path / "x.pt", resume=tmp_path / "L3.pt")


@pytest.mark.parametrize("resident_bytes", [2**30, 0])
def test_batches_cover_every_row_once(tfim4, resident_bytes):
    options = TrainOptions(batch_size=100, resident_bytes=resident_bytes, chunk_records=1_000)
    rows = _Rows(tfim4, (500, 3_550), torch.device("cpu"), options)
    assert rows.resident == bool(resident_bytes)
    seen = torch.cat([torch.cat(list(rows.batches(100, torch.Generator().manual_seed(0),
                                                  rank=r, world=2))) for r in (0, 1)])
    expected = torch.from_numpy(tfim4.outcomes(500, 3_550)).long()
    assert seen.shape == expected.shape
    key = torch.tensor([64, 16, 4, 1])  # records as integers, compared as multisets
    assert torch.equal((seen @ key).sort().values, (expected @ key).sort().values)
    assert rows.n_batches(100) == 31


@pytest.mark.parametrize("resident_bytes", [2**30, 0])
def test_distinct_rows_with_their_counts_are_every_row(tfim4, resident_bytes):
    """Resident rows come once each with their counts (every rank's share together: each row
    as often as it occurs); rows read in chunks come as batches, each row once."""
    options = TrainOptions(batch_size=100, resident_bytes=resident_bytes, chunk_records=1_000)
    rows = _Rows(tfim4, (500, 3_550), torch.device("cpu"), options)
    shares = [list(rows.distinct(100, rank=r, world=2)) for r in (0, 1)]
    pairs = [pair for share in shares for pair in share]
    if resident_bytes:
        assert all(counts is not None for _, counts in pairs)
        seen = torch.cat([a.repeat_interleave(counts.long(), 0) for a, counts in pairs])
        assert sum(len(a) for a, _ in pairs) < 256  # 4^4 outcome strings at most
        single = _Rows(tfim4, (0, 1), torch.device("cpu"), options)  # no repeats: no counts
        assert [counts for _, counts in single.distinct(100)] == [None]
    else:
        assert all(counts is None for _, counts in pairs)
        seen = torch.cat([a for a, _ in pairs])
    expected = torch.from_numpy(tfim4.outcomes(500, 3_550)).long()
    key = torch.tensor([64, 16, 4, 1])  # records as integers, compared as multisets
    assert torch.equal((seen @ key).sort().values, (expected @ key).sort().values)


@pytest.mark.parametrize("L", [1, 7, 8, 9, 70])
@pytest.mark.parametrize("K", [2, 6])
def test_distinct_rows_are_torch_unique_or_none(L, K):
    """The hash's shortcut changes nothing: with repeats, the rows and counts of the exact
    torch.unique; without (rows that differ in one outcome anywhere), ()."""
    generator = torch.Generator().manual_seed(L * K)
    data = torch.randint(0, K, (300, L), generator=generator, dtype=torch.uint8)
    data = torch.cat([data, data[:50]])  # 50 repeats at least
    rows, counts = qtomo.train._distinct_rows(data)
    expected, expected_counts = torch.unique(data, dim=0, return_counts=True)
    assert torch.equal(rows, expected) and torch.equal(counts, expected_counts.double())
    once = torch.zeros((2 * L, L), dtype=torch.uint8)
    once[torch.arange(L), torch.arange(L)] = 1  # row i: outcome 1 at site i
    once[L + torch.arange(L), torch.arange(L)] = K - 1
    assert qtomo.train._distinct_rows(once[:L if K == 2 else 2 * L]) == ()


def _ddp_worker(rank, port, dataset_path, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build("gru", L=4, K=4, hidden=16)
    fit(model, read_dataset(dataset_path), TrainOptions(**FAST), out=out, device="cpu",
        quiet=True)


def test_ddp_with_two_gloo_processes_matches_one_process(tfim4, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tfim4.path), str(tmp_path / "ddp.pt")), nprocs=2)
    torch.manual_seed(0)
    single = fit(build("gru", L=4, K=4, hidden=16), tfim4, TrainOptions(**FAST),
                 out=tmp_path / "one.pt", device="cpu", quiet=True)
    ddp = load_checkpoint(tmp_path / "ddp.last.pt")
    assert ddp.config["training"]["world_size"] == 2
    for one, two in zip(single.history, ddp.trainer["history"], strict=True):
        assert abs(one["train_nll"] - two["train_nll"]) < 1e-4
        assert abs(one["val_nll"] - two["val_nll"]) < 1e-4


#: the full-batch stages under torchrun: (hyperparameters, training options, summary keys)
DDP_STAGES = [({"real": 0}, {"sweeps": 3}, ["sweeps"]),
              ({"positive": 1}, {"full_batch": 30, "refine": 20}, ["full_batch", "refine"])]


def _ddp_stage_worker(rank, port, dataset_path, out, hyperparameters, options):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dataset = read_dataset(dataset_path)
    torch.manual_seed(0)
    model = build("mps", L=4, K=4, povm=dataset.povm, chi=2, **hyperparameters)
    fit(model, dataset, TrainOptions(epochs=0, **options), out=out, device="cpu", quiet=True)


@pytest.mark.filterwarnings("ignore:the sweeps reached their cap")
@pytest.mark.filterwarnings("ignore:the full-batch Adam reached its cap")
@pytest.mark.filterwarnings("ignore:the L-BFGS refinement reached its cap")
@pytest.mark.parametrize("hyperparameters, options, stages", DDP_STAGES)
def test_full_batch_stages_under_two_gloo_processes_match_one_process(
        tfim4, tmp_path, hyperparameters, options, stages):
    """Each rank sweeps (or steps on, or refines with) its share of the rows; the summed
    objectives and gradients make both take the steps of one process on all rows."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_stage_worker, args=(port, str(tfim4.path), str(tmp_path / "ddp.pt"),
                                      hyperparameters, options), nprocs=2)
    torch.manual_seed(0)
    model = build("mps", L=4, K=4, povm=tfim4.povm, chi=2, **hyperparameters)
    single = fit(model, tfim4, TrainOptions(epochs=0, **options), out=tmp_path / "one.pt",
                 device="cpu", quiet=True)
    ddp = load_checkpoint(tmp_path / "ddp.pt").config["training"]
    one = load_checkpoint(single.checkpoint).config["training"]
    assert ddp["world_size"] == 2
    for stage in stages:
        for key in ("half_sweeps", "iterations"):
            assert ddp[stage].get(key) == one[stage].get(key)
        assert abs(ddp[stage]["train_nll"] - one[stage]["train_nll"]) < 1e-9
        assert abs(ddp[stage]["val_nll"] - one[stage]["val_nll"]) < 1e-9


def test_fewer_validation_rows_than_processes_is_refused(tfim4):
    """Each rank measures its share of the validation rows: with fewer rows than ranks the
    shares are empty, so the split refuses them instead of a non-finite validation NLL."""
    options = TrainOptions(val_fraction=1e-4, batch_size=64)  # 2 of 20 000 rows
    assert qtomo.train._split(tfim4, options, world=2)[1] == (19_998, 20_000)
    with pytest.raises(QtomoError, match="leaves 2 validation rows for 4 processes; need at "
                                         "least one per process"):
        qtomo.train._split(tfim4, options, world=4)


def test_resume_from_an_optimizer_state_of_the_wrong_shape_is_one_line(tfim3_gru, tfim3_records,
                                                                       tmp_path, capsys):
    payload = torch.load(tfim3_gru[1], weights_only=True)
    state = payload["trainer"]["optimizer"]["state"]
    state[0]["exp_avg"] = torch.zeros(5)
    torch.save(payload, tmp_path / "m.last.pt")
    assert main(["fit", "--resume", str(tmp_path / "m.last.pt"), "--data", str(tfim3_records),
                 "--epochs", "2", "--quiet", "--device", "cpu"]) == 2
    one_line_error(capsys, "trainer state does not fit the model", "exp_avg")


def _interrupted(interrupt_after, argv, after=1):
    """Run ``qtomo fit argv`` and kill it (KeyboardInterrupt) once ``after`` epochs are saved."""
    with interrupt_after(after):
        assert main(["fit", *argv]) == 130


def test_resume_without_seed_keeps_the_seed_and_equals_the_uninterrupted_run(
        tfim3_records, tmp_path, interrupt_after):
    common = ["--data", str(tfim3_records), *tiny_fit(2), "--seed", "7"]
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


def test_options_given_on_resume_are_applied(tfim3_records, tmp_path, interrupt_after):
    argv = ["--data", str(tfim3_records), *tiny_fit(2), "--schedule", "constant", "--warmup", "0",
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


def test_resume_with_another_weight_average_is_refused(tfim3_records, tmp_path, interrupt_after,
                                                       capsys):
    _interrupted(interrupt_after,
                 ["--data", str(tfim3_records), *tiny_fit(2), "--out", str(tmp_path / "m.pt")])
    capsys.readouterr()
    assert main(["fit", "--resume", str(tmp_path / "m.pt"), "--ema", "0.9", "--quiet"]) == 2
    one_line_error(capsys, "was trained with ema = 0.0; resume it with that ema (got 0.9)")


def test_resume_refuses_a_last_checkpoint_of_another_family(ghz3_records, ghz3_gru, capsys,
                                                            tmp_path):
    import shutil

    mine = tmp_path / "x.pt"
    shutil.copy(ghz3_gru, mine)
    other = tmp_path / "other.pt"
    assert main(["fit", "--data", str(ghz3_records), "--out", str(other), "--model", "mps", "--chi",
                 "2", "--real", "1", "--epochs", "1", "--refine", "0", "--batch-size", "128",
                 "--device", "cpu", "--quiet"]) == 0
    shutil.copy(tmp_path / "other.last.pt", tmp_path / "x.last.pt")  # the gru's .last.pt is an mps
    refused(capsys, tmp_path, ["fit", "--resume", str(mine), "--epochs", "2", "--quiet"],
             "x.last.pt is not the last state of the run of", "family 'mps'", "'gru'")
    # variant: the same family with other hyperparameters, through the API
    from qtomo.errors import CheckpointError
    from qtomo.train import load_resume

    assert main(["fit", "--data", str(ghz3_records), "--out", str(other), "--epochs", "1",
                 "--batch-size", "128", "--hidden", "5", "--layers", "1", "--device", "cpu",
                 "--quiet"]) == 0
    shutil.copy(tmp_path / "other.last.pt", tmp_path / "x.last.pt")
    with pytest.raises(CheckpointError, match="hyperparameters"):
        load_resume(mine)


def test_resume_on_another_dataset_names_the_dataset(ghz3_records, ghz3_gru, capsys, tmp_path):
    small = simulate("ghz", 3, povm="pauli6", samples=150, seed=4, out=tmp_path / "small.h5",
                     quiet=True)
    last = Path(str(ghz3_gru).replace("m.pt", "m.last.pt"))
    before = digests(ghz3_gru.parent)
    assert main(["fit", "--resume", str(last), "--data", str(small), "--epochs", "2",
                 "--quiet"]) == 2
    one_line_error(capsys, "small.h5", "150 records", "2000 records")
    assert digests(ghz3_gru.parent) == before


def test_fit_in_memory_writes_nothing_and_matches_a_saved_run(tfim3_dataset, tmp_path, monkeypatch):
    L, N = 3, 2000  # those of tfim3_dataset
    monkeypatch.chdir(tmp_path)
    options = TrainOptions(epochs=3, batch_size=128)
    torch.manual_seed(0)
    memory = fit(build("gru", L=L, K=4, hidden=8), tfim3_dataset, options, device="cpu", quiet=True)
    assert list(tmp_path.iterdir()) == []
    assert memory.checkpoint is memory.last is memory.history_path is None
    assert memory.val_rows == (N - N // 10, N)
    torch.manual_seed(0)
    saved = fit(build("gru", L=L, K=4, hidden=8), tfim3_dataset, options, out=tmp_path / "m.pt",
                device="cpu", quiet=True)
    assert saved.checkpoint.is_file() and saved.val_rows == memory.val_rows
    assert [row["val_nll"] for row in memory.history] == [row["val_nll"] for row in saved.history]
    evaluation = evaluate(memory.model, tfim3_dataset, rows=memory.val_rows, blocks=())
    assert evaluation.classical.n_test == N // 10
    assert evaluation.classical.nll.value == pytest.approx(memory.best_val_nll, rel=1e-5)
    with pytest.raises(QtomoError, match="resuming needs the run's files"):
        fit(build("gru", L=L, K=4, hidden=8), tfim3_dataset, options, resume=saved.last,
            device="cpu", quiet=True)
