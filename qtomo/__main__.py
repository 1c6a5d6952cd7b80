"""``python -m qtomo``: the ``qtomo`` command (README, "The pipeline")."""

import sys

from qtomo.cli import main

sys.exit(main())
