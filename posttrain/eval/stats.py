"""Rates with 95% Wilson intervals, and the paired comparison of two models on the same items: McNemar's test.

The sets are small (tens of items), so every rate carries its Wilson score interval (`Rate`).

Each item gives a pair of binary outcomes (a_i, b_i). Only the discordant pairs carry information about a
difference: b01 items where A failed and B succeeded, b10 where A succeeded and B failed. Under the null hypothesis
(equal rates) each discordant pair is b01 or b10 with probability 1/2, so b01 ~ Binomial(b01 + b10, 1/2).

The exact two-sided p-value (the one to read on sets of tens of items) is
    p = min(1, 2 * sum_{i <= min(b01, b10)} C(n, i) / 2^n),   n = b01 + b10,
and 1 when there is no discordant pair. The chi-square statistic with Edwards' continuity correction,
(|b01 - b10| - 1)^2 / n on one degree of freedom, is given for reference; the correction is clipped at 0, so equal
counts give 0 (some texts leave it unclipped, which gives 1/n there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """k successes out of n, with a 95% Wilson score interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        """k / n."""
        return self.k / self.n if self.n else float("nan")

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The Wilson score interval."""
        if not self.n:
            return (float("nan"), float("nan"))
        p, n = self.value, self.n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))

    def as_dict(self) -> dict[str, float]:
        """For eval.json."""
        low, high = self.interval()
        return {"value": self.value, "k": self.k, "n": self.n, "ci95_low": low, "ci95_high": high}


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """McNemar's test of paired outcomes: discordant counts, exact two-sided p-value, corrected chi-square."""
    if len(a) != len(b):
        raise ValueError(f"McNemar needs paired outcomes; got {len(a)} and {len(b)}")
    b01 = sum(1 for x, y in zip(a, b, strict=True) if not x and y)
    b10 = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    n = b01 + b10
    tail = sum(math.comb(n, i) for i in range(min(b01, b10) + 1)) / 2**n  # exact integers, one rounding
    chi2 = max(0, abs(b01 - b10) - 1) ** 2 / n if n else 0.0
    return {
        "n": len(a),
        "b01": b01,  # A wrong, B right
        "b10": b10,  # A right, B wrong
        "p_value": min(1.0, 2 * tail),
        "chi2": chi2,
        "chi2_p_value": math.erfc(math.sqrt(chi2 / 2)),  # the chi-square(1) survival function
    }
