"""docs/notebook.ipynb runs top to bottom in a fresh kernel of this interpreter."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient)")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebook.ipynb"
TIMEOUT_S = 300  # per cell; the whole notebook takes 20-30 s on one loaded core


def _kernel_manager(spec_dir: Path):
    """A kernel manager whose "python3" kernel is this interpreter (the venv's), whatever
    other python3 kernelspecs the user or the system has installed."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kdir = spec_dir / "python3"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "featlab test kernel", "language": "python",
    }))  # fmt: skip
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    assert km.kernel_spec.argv[0] == sys.executable
    return km


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), (
        "store docs/notebook.ipynb without outputs (Kernel > Restart & Clear Output)"
    )
    work = tmp_path / "work"
    work.mkdir()
    # The kernel inherits the environment: one thread unless the caller chose otherwise.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    client = nbclient.NotebookClient(
        nb, km=_kernel_manager(tmp_path / "kernels"), timeout=TIMEOUT_S, allow_errors=False,
        resources={"metadata": {"path": str(work)}},  # the kernel's working directory
    )  # fmt: skip
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the cell and its traceback
    seconds = time.perf_counter() - t0
    print(f"notebook ran in {seconds:.1f}s")
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )  # fmt: skip
    assert "SAEMetrics on" in text and "fvu" in text and "tensor(" not in text
    figures = sum("application/vnd.plotly.v1+json" in o.get("data", {})
                  for c in nb.cells if c.cell_type == "code" for o in c.outputs)  # fmt: skip
    assert figures >= 5
    assert not list(work.iterdir()), "the notebook should write nothing to its directory"
