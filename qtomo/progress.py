"""Progress bars that stay silent with ``--quiet`` or when stderr is not a terminal."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int | None, desc: str, *, quiet: bool = False, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr, disabled when ``quiet`` or when stderr is not a TTY."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True,
                unit_scale=True, leave=False)
