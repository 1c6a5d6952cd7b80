"""The cnn family: causal dilated convolutions whose receptive field covers every earlier site."""


import pytest
import torch

from qtomo.models import build


@pytest.mark.parametrize("L, kernel", [(1, 2), (2, 2), (6, 2), (9, 2), (10, 3), (50, 2)])
def test_cnn_receptive_field_covers_every_earlier_site(L, kernel):
    """k^m ≥ L, and the last site's conditional depends on the first outcome."""
    torch.manual_seed(0)
    model = build("cnn", L=L, K=4, channels=8, kernel=kernel, blocks=1).eval()
    assert model.receptive_field >= L and model.dilations[-1] < max(L, 2)
    if L > 1:
        a = torch.randint(4, (8, L), generator=torch.Generator().manual_seed(1))
        b = a.clone()
        b[:, 0] = (b[:, 0] + 1) % 4
        with torch.no_grad():
            assert not torch.allclose(model.conditionals(a)[:, -1], model.conditionals(b)[:, -1])
