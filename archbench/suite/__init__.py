"""Study suites: a grid of (architecture, dataset, settings) runs, resumable, local or on Ray.

- :mod:`.plan`: presets and suite files become a list of :class:`SuiteEntry`.
- :mod:`.state`: ``suite.json``, the plan and where each run stands.
- :mod:`.job`: :func:`run_entry`, one run brought to complete and profiled.
- :mod:`.backends`: jobs one after another here, or as Ray tasks.
- :mod:`.progress`: the live per-run view.
- :mod:`.run`: :func:`run_suite`, the whole suite, its summary and report.
"""

from .backends import BACKENDS
from .job import run_entry
from .plan import PRESETS, STUDY_ARCHS, SuiteEntry, parse_seeds, parse_set, plan
from .run import SuiteOutcome, run_suite
from .state import SUITE_FILE, EntryState, SuiteState

__all__ = [
    "BACKENDS",
    "PRESETS",
    "STUDY_ARCHS",
    "SUITE_FILE",
    "EntryState",
    "SuiteEntry",
    "SuiteOutcome",
    "SuiteState",
    "parse_seeds",
    "parse_set",
    "plan",
    "run_entry",
    "run_suite",
]
