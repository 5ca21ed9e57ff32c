"""Is the head slower than the base? Per benchmark, from interleaved rounds of both.

The decision follows asv's ``continuous``: a benchmark is *slower* only when the ratio (head /
base) is beyond the threshold **and** a test says the difference is real (p below ``alpha``).
The threshold alone would flag noise; the test alone would flag a real but irrelevant 1% change.

The statistics are **paired**: round ``r`` of the base and round ``r`` of the head ran back to
back, so a busy phase of the machine slows both. The ratio is the median of the per-round
ratios, the p-value a Wilcoxon signed-rank test on their logarithms, and the 95% interval a
bootstrap over the rounds. Comparing the two sets of rounds unpaired (medians, Mann-Whitney U)
lets load that changes between rounds into the comparison: on a loaded 2-core machine it missed
a 15% slowdown in 2 of 10 runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import wilcoxon

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
    log_ratios: np.ndarray, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median per-round ratio, rounds resampled as pairs."""
    rng = np.random.default_rng(seed)
    resampled = rng.choice(log_ratios, (BOOTSTRAP_RESAMPLES, log_ratios.size))
    medians = np.median(resampled, axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.exp(np.percentile(medians, [tail, 100 - tail]))
    return float(low), float(high)


def compare(
    name: str, base_ns: list[float], head_ns: list[float], threshold: float, alpha: float
) -> Comparison:
    """Compare the paired rounds of one benchmark. ``threshold`` is a fraction (0.10 for 10%)."""
    base, head = np.asarray(base_ns, dtype=float), np.asarray(head_ns, dtype=float)
    if base.size != head.size:
        raise ValueError(f"{name}: {base.size} base rounds but {head.size} head rounds")
    if base.size < 2:
        raise ValueError(f"{name}: at least 2 rounds per side are needed")
    log_ratios = np.log(head / base)
    ratio = float(np.exp(np.median(log_ratios)))
    if np.all(log_ratios == 0):
        p_value = 1.0  # identical rounds: nothing to test (wilcoxon refuses all-zero input)
    else:
        p_value = float(wilcoxon(log_ratios, alternative="two-sided").pvalue)
    low, high = median_ratio_interval(log_ratios)
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
