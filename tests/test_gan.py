"""The gan family: no likelihood, the straight-through sample, which network each update moves."""


import pytest
import torch

from qtomo.errors import QtomoError
from qtomo.models import build


def test_gan_has_no_likelihood_and_samples_straight_through():
    torch.manual_seed(0)
    model = build("gan", L=3, K=4, hidden=16)
    assert not model.has_log_prob and not model.exact_log_prob
    with pytest.raises(QtomoError, match=r"^gan has no log_prob \(an implicit model"):
        model.log_prob(torch.zeros(2, 3, dtype=torch.long))
    a, x = model.generate(64, torch.Generator().manual_seed(1))
    assert torch.equal(x.detach().view(64, 3, 4), torch.nn.functional.one_hot(a, 4).float())
    x.square().sum().backward()  # the relaxed gradient reaches the generator
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())
    again = model.sample(64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, again)


def test_each_adversarial_update_moves_only_its_network():
    torch.manual_seed(0)
    model = build("gan", L=3, K=4, hidden=16, critic_steps=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = torch.randint(4, (32, 3))

    def snapshot(network):
        return [p.detach().clone() for p in network.parameters()]

    moved = []
    for _ in range(2):
        generator, critic = snapshot(model.generator), snapshot(model.critic)
        loss = model.train_step(data, optimizer, clip=1.0)
        moved.append((any(not torch.equal(a, b) for a, b in zip(generator, snapshot(
            model.generator), strict=True)), any(not torch.equal(a, b) for a, b in zip(
                critic, snapshot(model.critic), strict=True))))
        assert loss.ndim == 0 and torch.isfinite(loss)
    assert moved == [(False, True), (True, True)]  # the generator every 2nd step


def test_gan_validation_criterion_prefers_its_own_distribution():
    """v = MMD² − E_P k: lowest when the records come from Q itself (MMD² ≈ 0)."""
    torch.manual_seed(0)
    model = build("gan", L=4, K=4, hidden=16).eval()
    with torch.no_grad():
        generator = model.generator[-1]
        generator.weight.mul_(10.0)  # far from uniform
    own = model.sample(4096, generator=torch.Generator().manual_seed(9))
    uniform = torch.randint(4, (4096, 4), generator=torch.Generator().manual_seed(9))
    assert model.training_nll(own).mean() < model.training_nll(uniform).mean() - 0.01
    assert torch.equal(model.training_nll(own), model.training_nll(own))  # deterministic
