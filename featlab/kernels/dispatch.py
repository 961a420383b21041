"""Pick the implementation an op runs: the Triton kernels or the pure-torch reference.

Rule: Triton when every tensor is on a CUDA device, the torch reference otherwise. The
environment variable ``FEATLAB_KERNELS`` overrides it:

- ``auto`` (default): the rule above;
- ``torch``: always the reference (useful to bisect a numerical difference);
- ``triton``: always Triton. On CPU tensors this means the Triton *interpreter*, which must be
  switched on (``TRITON_INTERPRET=1``) before any kernel is compiled; :func:`load_triton`
  switches it on itself when no kernel module has been imported yet.

Matching Pursuit's Gram pick loop and value replay also have CPU kernels compiled by numba
(:mod:`featlab.kernels._numba_pursuit`); :func:`cpu_kernels_for` says when they run, and
``FEATLAB_KERNELS=torch`` turns them off too.

Nothing here imports triton or numba at module level, so ``import featlab.kernels`` stays light.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Literal

import torch

Backend = Literal["torch", "triton"]
ENV_VAR = "FEATLAB_KERNELS"
_CHOICES = ("auto", "torch", "triton")


def requested_backend() -> str:
    """The value of ``FEATLAB_KERNELS`` (``auto`` when unset), validated."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(
            f"{ENV_VAR}={choice!r} is not a kernel backend; use one of {', '.join(_CHOICES)} "
            "(or unset it for 'auto')."
        )
    return choice


def triton_available() -> bool:
    """True when triton can be imported (without importing it when it is not yet loaded)."""
    if "triton" in sys.modules:
        return True
    return importlib.util.find_spec("triton") is not None


def numba_available() -> bool:
    """True when numba (the CPU kernels' compiler) can be imported, without importing it."""
    if "numba" in sys.modules:
        return True
    return importlib.util.find_spec("numba") is not None


def cpu_kernels_for(*tensors: torch.Tensor | None) -> bool:
    """Whether an op with a numba CPU kernel runs it on ``tensors``: all on the CPU, float32
    or float64 alike, numba installed, and ``FEATLAB_KERNELS`` not ``torch``."""
    present = [t for t in tensors if t is not None]
    floats = {t.dtype for t in present if t.is_floating_point()}
    return (
        requested_backend() != "torch"
        and all(t.device.type == "cpu" for t in present)
        and len(floats) == 1
        and floats <= {torch.float32, torch.float64}
        and numba_available()
    )


def sync_numba_threads() -> None:
    """Give the next numba kernel calls torch's thread count (at most numba's pool size).

    The kernels run on the OpenMP team torch already uses (numba's OpenMP layer resolves
    ``libgomp.so.1`` to torch's copy), so this keeps the two from oversubscribing the cores.
    """
    import numba

    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    # The first call starts numba's OpenMP layer, which sets the shared team to numba's
    # pool size (all cores): a caller's torch.set_num_threads(1) would silently become 2+.
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def backend_for(*tensors: torch.Tensor | None) -> Backend:
    """The backend an op on ``tensors`` runs with (``None`` entries are ignored).

    float64 inputs always take the torch path: the kernels accumulate in fp32.
    """
    choice = requested_backend()
    if choice == "torch" or any(t is not None and t.dtype == torch.float64 for t in tensors):
        return "torch"
    if choice == "triton":
        if not triton_available():
            raise RuntimeError(f"{ENV_VAR}=triton but triton is not installed; unset {ENV_VAR}.")
        return "triton"
    present = [t for t in tensors if t is not None]
    on_cuda = bool(present) and all(t.is_cuda for t in present)
    return "triton" if on_cuda and triton_available() else "torch"


def load_triton(module: str, *tensors: torch.Tensor | None) -> ModuleType:
    """Import ``featlab.kernels.<module>`` (a Triton kernel module) for ``tensors``.

    CPU tensors need the interpreter. Triton decides between compiling and interpreting when a
    kernel is *defined*, so the variable is set here if no kernel module is loaded yet; if one
    was already loaded for the GPU, interpreting is impossible in this process and we say so.
    """
    on_cpu = any(t is not None and not t.is_cuda for t in tensors)
    name = f"featlab.kernels.{module}"
    if on_cpu and os.environ.get("TRITON_INTERPRET") != "1":
        loaded = [m for m in sys.modules if m.startswith("featlab.kernels._triton")]
        if loaded:
            raise RuntimeError(
                "Triton kernels on CPU tensors need the interpreter, but the kernels were "
                "already compiled for the GPU in this process. Set TRITON_INTERPRET=1 before "
                f"importing featlab, or use {ENV_VAR}=torch for CPU tensors."
            )
        os.environ["TRITON_INTERPRET"] = "1"
    return importlib.import_module(name)


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (>= 1); Triton block shapes must be powers of two."""
    return 1 << max(0, int(n) - 1).bit_length()
