"""An autoregressive model whose conditionals are those of a given table P over all K^L records.

Independent of any network: ln q(k | a_<i) = ln P_{≤i}(a_<i, k) − ln P_{<i}(a_<i) from the
marginals of the table, so the model *is* the distribution (KL = 0) and everything derived from
its conditionals (masked sampling, the tree walk) can be checked against the table itself.
"""

import numpy as np
import torch

from qtomo.models.autoregressive import AutoregressiveModel


class TableModel(AutoregressiveModel):
    family = "table"

    def __init__(self, probabilities: np.ndarray, K: int) -> None:
        L = round(np.log(probabilities.size) / np.log(K))
        super().__init__(L, K)
        table = np.asarray(probabilities, dtype=np.float64).reshape((K,) * L)
        marginals = [table.sum(axis=tuple(range(i + 1, L))).reshape(-1) for i in range(L)]
        # ln of the marginal of every prefix of length i + 1; a tiny floor keeps impossible
        # prefixes finite (their children then get probability ~1e-300, never drawn)
        self.log_marginals = torch.nn.ParameterList(
            torch.nn.Parameter(torch.from_numpy(np.log(m + 1e-300)), requires_grad=False)
            for m in marginals)

    def logits(self, a: torch.Tensor) -> torch.Tensor:
        B, l = a.shape
        out = torch.empty((B, l, self.K), dtype=torch.float64, device=a.device)
        prefix = torch.zeros(B, dtype=torch.long, device=a.device)
        outcomes = torch.arange(self.K, device=a.device)
        for i in range(l):
            out[:, i] = self.log_marginals[i][prefix[:, None] * self.K + outcomes]
            prefix = prefix * self.K + a[:, i]
        return out
