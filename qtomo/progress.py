"""Progress bars (``tqdm.auto``: a widget in notebooks, text on a terminal) that stay silent with
``--quiet`` and when output goes to a file or pipe."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int | None, desc: str, *, quiet: bool = False, unit: str = "it") -> tqdm:
    """A tqdm bar, disabled when ``quiet`` or when stderr is neither a TTY nor a notebook's."""
    disable = quiet or not (sys.stderr.isatty() or "ipykernel" in sys.modules)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                unit_scale=True, leave=False)
