"""Stop SAE training that has diverged instead of saving a useless SAE as finished.

A learning rate far too high does not always give NaN: with `lr=1e4` a TopK SAE ends with
every latent dead and FVU 5.8e10, and an unguarded run exits as if it had worked. An SAE
whose training-batch FVU (error relative to predicting the batch mean) stays above `max_fvu`
for `patience` steps in a row is not going to recover, so training stops with a message
naming the fix. Early steps (before the warm-up ends) are not judged: a fresh SAE may start
above 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from featlab.errors import TrainingDiverged


def default_patience(n_steps: int) -> int:
    """Consecutive bad steps before stopping: a tenth of the run, between 10 and 100."""
    return max(10, min(100, n_steps // 10))


@dataclass
class DivergenceGuard:
    """Counts consecutive steps with batch FVU above `max_fvu` (None disables the guard)."""

    max_fvu: float | None
    patience: int
    after_step: int = 0
    _bad: int = 0

    def check(self, step: int, fvu: float, kind: str, lr: float) -> None:
        """Raise `TrainingDiverged` once FVU has been above the bound for `patience` steps."""
        if self.max_fvu is None or step < self.after_step:
            return
        bad = not math.isfinite(fvu) or fvu > self.max_fvu
        self._bad = self._bad + 1 if bad else 0
        if self._bad >= self.patience:
            raise TrainingDiverged(
                f"the {kind} SAE diverged: its training FVU stayed above {self.max_fvu:g} for "
                f"{self.patience} steps (step {step}: FVU {fvu:.3g}, 1 means no better than "
                f"the mean); lower {{opt:lr}} (now {lr:.3g}) and start again with "
                "{opt:overwrite=True}"
            )
