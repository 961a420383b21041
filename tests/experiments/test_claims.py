"""The claims helper every experiment reports through: intervals and verdicts."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
from _claims import FAILS, HOLDS, NOISE, claim_row, mean_ci, verdict  # noqa: E402


def test_interval_is_student_t() -> None:
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027; sd 1; n 3
    assert m == 2.0
    assert hi - m == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert m - lo == pytest.approx(hi - m)


def test_verdicts() -> None:
    assert verdict(0.1, 0.3) == HOLDS
    assert verdict(-0.3, -0.1) == FAILS
    assert verdict(-0.1, 0.2) == NOISE
    assert verdict(math.nan, math.nan) == NOISE
    assert claim_row("x", [5.0])["verdict"] == NOISE  # one seed proves nothing
    assert claim_row("x", [1.0, 1.1, 0.9])["verdict"] == HOLDS
