"""``python -m attnkit.bench engines|decoding|ring|mla|sparse|serving``: the benchmarks, one home.

Every number about speed or memory in the book comes from here (never from a
timed test). The package:

* :mod:`~attnkit.bench.cli` - the one command line (``engines`` is the default);
* :mod:`~attnkit.bench.cpu`, :mod:`~attnkit.bench.gpu` - the engines side by side
  (the CPU engines come from the engines' declarations);
  :mod:`~attnkit.bench.decoding` - split-KV decoding; :mod:`~attnkit.bench.ring` -
  ring attention on local processes; :mod:`~attnkit.bench.mla`,
  :mod:`~attnkit.bench.sparse` - chapter 13's latent and top-k attention;
  :mod:`~attnkit.bench.serving` - static against continuous batching (each
  imported when its command runs);
* :mod:`~attnkit.bench.measure` - the one timer and the one peak-memory helper;
* :mod:`~attnkit.bench.machine` - the one machine record;
* :mod:`~attnkit.bench.report` - the one results writer (JSON and Markdown, one schema);
* :mod:`~attnkit.bench.results` - loading the files back, fitted slopes, plots.

Importing this package imports neither torch nor Triton.
"""

from __future__ import annotations

from .cli import main
from .measure import peak_memory
from .results import fitted_slope, load_results, results_folder

__all__ = ["fitted_slope", "load_results", "main", "peak_memory", "results_folder"]
