"""First contact: training in memory (no files), and the CLI's help and version."""

import pytest
import torch

from qtomo.data import read_dataset
from qtomo.errors import QtomoError
from qtomo.evaluate import evaluate
from qtomo.models import build
from qtomo.simulate import simulate
from qtomo.train import TrainOptions, fit

L, N = 3, 2000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("first") / "tfim.h5"
    return read_dataset(simulate("tfim", L, samples=N, seed=2, out=path, quiet=True))


def test_fit_in_memory_writes_nothing_and_matches_a_saved_run(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = TrainOptions(epochs=3, batch_size=128)
    torch.manual_seed(0)
    memory = fit(build("gru", L=L, K=4, hidden=8), dataset, options, device="cpu", quiet=True)
    assert list(tmp_path.iterdir()) == []
    assert memory.checkpoint is memory.last is memory.history_path is None
    assert memory.val_rows == (N - N // 10, N)
    torch.manual_seed(0)
    saved = fit(build("gru", L=L, K=4, hidden=8), dataset, options, out=tmp_path / "m.pt",
                device="cpu", quiet=True)
    assert saved.checkpoint.is_file() and saved.val_rows == memory.val_rows
    assert [row["val_nll"] for row in memory.history] == [row["val_nll"] for row in saved.history]
    evaluation = evaluate(memory.model, dataset, rows=memory.val_rows, blocks=())
    assert evaluation.classical.n_test == N // 10
    assert evaluation.classical.nll.value == pytest.approx(memory.best_val_nll, rel=1e-5)
    with pytest.raises(QtomoError, match="resuming needs the run's files"):
        fit(build("gru", L=L, K=4, hidden=8), dataset, options, resume=saved.last,
            device="cpu", quiet=True)
