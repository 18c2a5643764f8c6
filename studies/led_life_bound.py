"""The field B10's lower confidence bound, for studies/led_reliability_design.yaml (the ``python`` evaluator).

Engelmaier, calibrated to the lot's Weibull, carries the test life to each design's field conditions by an
acceleration factor AF: the design's B10 is AF x the lot's test B10 (``b10_cycles``, from ``engelmaier`` with
the lot's Weibull shape). The lot's test B10 is only known to lie above its lower confidence bound (the life
stage's ``b10_cycles_lower``); carried by the same factor, the design's B10 lies above
AF x test_b10_cycles_lower = b10_cycles x test_b10_cycles_lower / test_b10_cycles at the same confidence. The
uncertainty this bounds is the test fit's (how many LEDs failed, and when); the Engelmaier transfer is taken as
exact.
"""

from __future__ import annotations


def field_b10_lower(b10_cycles: float, test_b10_cycles: float, test_b10_cycles_lower: float) -> dict[str, float]:
    if not 0 < test_b10_cycles_lower <= test_b10_cycles:
        raise ValueError(f"the test B10's lower bound must lie in (0, B10 = {test_b10_cycles:g}], got "
                         f"{test_b10_cycles_lower:g}")
    return {"b10_cycles_lower": b10_cycles * test_b10_cycles_lower / test_b10_cycles}
