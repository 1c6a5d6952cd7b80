"""qtomo: neural-network quantum state tomography from informationally complete POVM data.

The pipeline is simulate (``qtomo.simulate``) → fit (``qtomo.train``) → evaluate
(``qtomo.metrics``, ``qtomo.reconstruct``); the conventions are written once in
:mod:`qtomo.povm` and :mod:`qtomo.states`.
"""

__version__ = "0.1.0"
