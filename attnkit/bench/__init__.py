"""``python -m attnkit.bench``: the engines side by side, time and peak memory.

Every number about speed or memory in the book comes from here (never from a
timed test). The package:

* :mod:`~attnkit.bench.measure` - the one peak-memory helper, timing, the machine
  (CPU model, family and vector ISA) and the child-process runner;
* :mod:`~attnkit.bench.cpu` and :mod:`~attnkit.bench.gpu` - the two runners (the
  CPU engines come from the engines' declarations);
* :mod:`~attnkit.bench.report` - the results files (JSON and Markdown);
* :mod:`~attnkit.bench.results` - loading them back, fitted slopes, plots;
* :mod:`~attnkit.bench.cli` - the command line.
"""

from __future__ import annotations

from .cli import main
from .measure import peak_memory
from .results import fitted_slope, load_results, results_folder

__all__ = ["fitted_slope", "load_results", "main", "peak_memory", "results_folder"]
