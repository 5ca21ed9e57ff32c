"""Profiling: measure a network (:mod:`archbench.measure`), evaluate it
(:mod:`archbench.evaluate`) and write the figures into its run directory.

- :mod:`.config`: :class:`ProfileConfig`, what to measure and how.
- :mod:`.model`: :func:`profile_model`, every figure of one model and the files beside them.
- :mod:`.targets`: :func:`profile_run` (a trained run's ``best.pt``) and
  :func:`profile_untrained` (a fresh network).
- :mod:`.summary`: :func:`print_summary`, the terminal view of ``profile.json``.
"""

from .config import ProfileConfig
from .model import profile_model
from .summary import print_summary
from .targets import profile_run, profile_untrained

__all__ = ["ProfileConfig", "print_summary", "profile_model", "profile_run", "profile_untrained"]
