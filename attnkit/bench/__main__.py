"""``python -m attnkit.bench``: see :mod:`attnkit.bench.cli`."""

import sys

from .cli import main

sys.exit(main())
