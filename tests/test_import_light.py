"""`import featlab` must stay light: no dash, sae_lens, triton, wandb or numba at import time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("dash", "sae_lens", "triton", "wandb", "numba")


def test_import_featlab_is_light() -> None:
    code = (
        "import sys, featlab; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import featlab pulled in: {out.stdout.strip()}"


def test_kernels_load_their_compilers_lazily() -> None:
    code = (
        "import sys, featlab.kernels; "
        "print(','.join(m for m in ('triton', 'numba') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import featlab.kernels pulled in: {out.stdout.strip()}"
