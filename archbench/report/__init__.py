"""Reports over run directories, in the shape of the study's tables 6-9.

- :mod:`.collect`: :func:`collect_runs` reads what the trainer and profiler left in each run.
- :mod:`.tables`: :func:`run_table` flattens complete runs into one numeric DataFrame (the data
  ``--format csv|json`` emits); the relative, GPU-against-CPU and roofline tables derive from it.
- :mod:`.aggregate`: runs that differ only in seed as one row (mean ± std, n, t-interval).
- :mod:`.study`: a published study's figures next to ours; :mod:`.study_targets`: the
  reproduction's targets met or not, and training cost per network.
- :mod:`.figures`: training curves and accuracy against cost with the Pareto front, drawn by
  :mod:`.cost_figures` (plain log ticks, labels that never overlap, ± std over seeds, one latency
  panel per CPU backend).
- :mod:`.markdown`: :func:`write_report`, the page with every table and figure.
- :mod:`.render`: any DataFrame as a rich table, markdown, CSV or JSON (``archbench list``).
"""

from .collect import RunRecord, collect_runs, find_run_dirs
from .figures import pareto_front, write_figures
from .markdown import REPORT_FORMATS, render_markdown, study_shaped_table, write_report
from .study import STUDIES, load_study, study_comparison, study_latency_ratios
from .tables import (
    efficiency_table,
    faster_pct,
    gpu_speedup_table,
    relative_table,
    run_table,
    table_data,
)

__all__ = [
    "REPORT_FORMATS",
    "STUDIES",
    "RunRecord",
    "collect_runs",
    "efficiency_table",
    "faster_pct",
    "find_run_dirs",
    "gpu_speedup_table",
    "load_study",
    "pareto_front",
    "relative_table",
    "render_markdown",
    "run_table",
    "study_comparison",
    "study_latency_ratios",
    "study_shaped_table",
    "table_data",
    "write_figures",
    "write_report",
]
