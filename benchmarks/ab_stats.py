"""Is the head slower than the base? Per benchmark, from interleaved rounds of both.

The decision follows asv's ``continuous``: a benchmark is *slower* only when the ratio of medians
(head / base) is beyond the threshold **and** a Mann-Whitney U test says the two sets of rounds
differ (p below ``alpha``). The threshold alone would flag noise; the test alone would flag a real
but irrelevant 1% change. The 95% interval of the ratio is a bootstrap over the rounds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import mannwhitneyu

SLOWER, FASTER, SAME, UNSURE = "slower", "faster", "same", "unsure"
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Comparison:
    name: str
    base_median_ms: float
    head_median_ms: float
    ratio: float  # head median / base median: above 1 is slower
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str  # slower | faster | same | unsure (beyond the threshold, not significant)

    def as_dict(self) -> dict:
        return asdict(self)


def median_ratio_interval(
    base: np.ndarray, head: np.ndarray, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(head) / median(base), rounds resampled per side."""
    rng = np.random.default_rng(seed)
    base_medians = np.median(rng.choice(base, (BOOTSTRAP_RESAMPLES, base.size)), axis=1)
    head_medians = np.median(rng.choice(head, (BOOTSTRAP_RESAMPLES, head.size)), axis=1)
    ratios = head_medians / base_medians
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)


def compare(
    name: str, base_ns: list[float], head_ns: list[float], threshold: float, alpha: float
) -> Comparison:
    """Compare the rounds of one benchmark. ``threshold`` is a fraction (0.10 for 10%)."""
    base, head = np.asarray(base_ns, dtype=float), np.asarray(head_ns, dtype=float)
    if base.size < 2 or head.size < 2:
        raise ValueError(f"{name}: at least 2 rounds per side are needed")
    ratio = float(np.median(head) / np.median(base))
    p_value = float(mannwhitneyu(head, base, alternative="two-sided").pvalue)
    low, high = median_ratio_interval(base, head)
    # Symmetric in log space, as asv: 10% slower is ratio > 1.10, 10% faster is ratio < 1/1.10.
    beyond = ratio > 1 + threshold or ratio < 1 / (1 + threshold)
    if not beyond:
        verdict = SAME
    elif p_value >= alpha:
        verdict = UNSURE
    else:
        verdict = SLOWER if ratio > 1 else FASTER
    return Comparison(
        name=name,
        base_median_ms=float(np.median(base)) / 1e6,
        head_median_ms=float(np.median(head)) / 1e6,
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        verdict=verdict,
    )


def format_table(rows: list[Comparison]) -> str:
    """A fixed-width table: benchmark, base and head medians, ratio, 95% CI, p, verdict."""
    header = ("benchmark", "base ms", "head ms", "ratio", "95% CI", "p", "verdict")
    cells = [
        (
            r.name,
            f"{r.base_median_ms:.3f}",
            f"{r.head_median_ms:.3f}",
            f"{r.ratio:.3f}",
            f"{r.ci_low:.3f}-{r.ci_high:.3f}",
            f"{r.p_value:.1e}",
            r.verdict.upper() if r.verdict == SLOWER else r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = []
    for row in [header, *cells]:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
