"""`featlab demo`: the end-to-end walk through featlab, as a chain of runs in one folder.

model -> SAEs (`featlab.runs.sae`) -> analyze (`featlab.runs.analyze`) -> circuit ->
attributions -> complexity (`featlab.runs.demo_stages`) -> the app. What the model learns,
where the SAEs sit and which prompts the circuit explains is the task's recipe:
`featlab.runs.demo_text` (the default: a language model on real text) or
`featlab.runs.demo_mqar` (``--task mqar``: associative recall). Every stage lives under OUT:
``model/``, ``saes/<id>/``, ``store/``; the demo folder's own ``run.json`` records its
settings (task, size and seed) and ``stages.json`` the analysis stages already written into
the store. A second run with the same settings loads everything; an interrupted one resumes
in the stage it stopped in; other settings are refused unless `overwrite`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featlab.app.server import DEFAULT_THREADS
from featlab.runs.options import check_options, coerce_fields, option

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

STAGES_FILE = "stages.json"
TASKS = ("text", "mqar")


@dataclass(frozen=True)
class DemoConfig:
    """The walk-through: a hybrid language model on real text (or MQAR) -> SAEs -> analyze
    -> circuit -> attributions -> complexity -> the app (everything cached under OUT)."""

    task: str = option("text", "text: a language model on Python's docs; mqar: associative "
                       "recall.", choices=TASKS)
    out: Path | None = option(None, "Where every stage keeps its output (default runs/demo, "
                              "runs/demo_mqar with --task mqar).", result=False)
    seed: int = option(0, "Seed for data, init and training.", ge=0)
    quick: bool = option(False, "Tiny smoke-test run (seconds; the numbers are noise).")
    serve: bool = option(True, "Serve the app at the end.", result=False)
    host: str = option("127.0.0.1", "Interface the app binds to.", result=False)
    port: int = option(8050, "Port the app serves on.", gt=0, le=65535, result=False)
    threads: int = option(DEFAULT_THREADS, "Server threads of the app.", gt=0, result=False)
    overwrite: bool = option(False, "Redo everything in OUT (it holds other settings).",
                             result=False)
    progress: bool = option(True, "Show progress.", result=False)

    def __post_init__(self) -> None:
        coerce_fields(self)

    def check(self) -> None:
        check_options(self)

    @property
    def folder(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return Path("runs/demo" if self.task == "text" else f"runs/demo_{self.task}")


@dataclass
class DemoResult:
    """What `run_demo` produced. `stages` holds one row per stage (seconds, cached); the other
    fields are the same on a cached rerun."""

    out: Path
    store: Path
    model: pd.DataFrame  # held-out figures of the model (text: loss, bits/byte; MQAR: accuracy)
    saes: pd.DataFrame  # sae_id, hook, kind, d_sae, fvu, l0, dead_frac, ce_recovered (held-out)
    circuit: dict[str, Any]
    complexity: dict[str, Any]
    stages: pd.DataFrame  # stage, seconds, cached
    url: str | None = None

    def report(self) -> str:
        """The text `featlab demo` prints."""
        c = self.circuit
        return "\n".join([
            self.model.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
            self.saes.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
            f"circuit {c['circuit_id']}: {c['n_nodes']} nodes, {c['n_edges']} edges, "
            f"faithfulness {c['faithfulness']:.3f}, completeness {c['completeness']:.3f}",
            "complexity: " + ", ".join(f"{sid} {v['n_scored']} latents, mean K {v['mean_K']:.3f}"
                                       for sid, v in self.complexity.items()),
            "", self.stages.to_string(index=False, float_format=lambda v: f"{v:.1f}"),
            f"store: {self.store}",
        ])


class _Timer:
    """One row per stage; prints a progress line when asked to."""

    def __init__(self, loud: bool) -> None:
        self.rows: list[dict[str, Any]] = []
        self.loud = loud

    def log(self, stage: str, seconds: float, cached: bool) -> None:
        self.rows.append({"stage": stage, "seconds": round(seconds, 1), "cached": cached})
        if self.loud:
            print(f"[demo] {stage:<12} {seconds:7.1f} s  ({'cached' if cached else 'done'})",
                  flush=True)


def _analysis_key(folder_fp: str, store: Path) -> str:
    """What the analysis stages depend on: the demo's settings and the analysis in the store
    (a re-made store has a new manifest time and new analyze fingerprints)."""
    from featlab._fingerprint import settings_fingerprint
    from featlab.store.ids import stored_fingerprints
    from featlab.store.writer import read_manifest

    return settings_fingerprint({"demo": folder_fp, "store": read_manifest(store)["created_at"],
                                 "analysis": stored_fingerprints(store)})


def _stage(out: Path, key: str, name: str, timer: _Timer, fn: Any) -> dict[str, Any]:
    """Run analysis stage `name` unless ``stages.json`` records it under `key`."""
    from featlab._atomic import atomic_write_text

    path = out / STAGES_FILE
    record = json.loads(path.read_text()) if path.is_file() else {}
    t0 = time.perf_counter()
    hit = record.get(name)
    if hit and hit.get("key") == key:
        timer.log(name, time.perf_counter() - t0, True)
        return hit["info"]
    info = fn()
    record[name] = {"key": key, "info": info}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    timer.log(name, time.perf_counter() - t0, False)
    return info


def run_demo(config: DemoConfig | None = None) -> DemoResult:
    """The whole walk-through (see the module docstring); serves the app at the end when
    `config.serve` (blocking). `config.quick` shrinks everything for a smoke test."""
    import importlib

    import pandas as pd

    from featlab.runs.analyze import AnalyzeRunConfig, analyze_run
    from featlab.runs.folder import RunFolder
    from featlab.runs.sae import train_sae_run
    from featlab.store import open_store, update_sae
    from featlab.store.ids import stored_fingerprints

    config = config or DemoConfig()
    config.check()
    recipe = importlib.import_module(f"featlab.runs.demo_{config.task}")
    out, seed = config.folder, config.seed
    size = recipe.SIZES["quick" if config.quick else "default"]
    folder = RunFolder(out, "demo", {"task": config.task, "seed": seed, "size": asdict(size)})
    folder.claim(overwrite=config.overwrite)
    loud = config.progress and not config.quick
    timer = _Timer(config.progress)

    t0 = time.perf_counter()
    import featlab.models.hybrid  # noqa: F401  (torch and the mixers: seconds)

    timer.log("imports", time.perf_counter() - t0, False)
    t0 = time.perf_counter()
    model, model_table, cached = recipe.train(size, seed, out / "model", config.quick, loud)
    timer.log("model", time.perf_counter() - t0, cached)

    t0 = time.perf_counter()
    sae_runs = {sid: train_sae_run(cfg) for sid, cfg in
                recipe.sae_configs(size, seed, out / "saes", out / "model", loud).items()}
    timer.log("saes", time.perf_counter() - t0, all(r.status == "done" for r in
                                                    sae_runs.values()))

    t0 = time.perf_counter()
    store = out / "store"
    before = stored_fingerprints(store)
    analyze_run(AnalyzeRunConfig(
        model=out / "model", sae=tuple(r.out for r in sae_runs.values()),
        id=tuple(sae_runs), n_seq=size.n_analyze, store=store, n_examples=size.n_examples,
        seed=seed, progress=loud))
    for sid, r in sae_runs.items():  # the held-out metrics of the SAE runs
        m = r.metrics
        update_sae(store, sid, fvu=m["fvu"], l0=m["l0"], dead_frac=m["dead_frac"],
                   ce_recovered=m["ce_loss_recovered"], config={"eval_split": "held-out"})
    timer.log("analyze", time.perf_counter() - t0,
              bool(before) and before == stored_fingerprints(store))

    saes = {sid: r.sae.eval() for sid, r in sae_runs.items()}
    key = _analysis_key(folder.fingerprint, store)
    info = {name: _stage(out, key, name, timer, fn)
            for name, fn in recipe.stages(model, saes, size, seed, store).items()}
    circuit, cx = info["circuit"], info["complexity"]["complexity"]
    folder.finish(circuit=circuit, complexity=cx)

    with open_store(store) as opened:
        rows = opened.saes()
    sae_table = rows[["sae_id", "hook", "kind", "d_sae", "fvu", "l0", "dead_frac",
                      "ce_recovered"]]
    result = DemoResult(
        out=out, store=store, model=model_table,
        saes=sae_table.sort_values("sae_id").reset_index(drop=True), circuit=circuit,
        complexity=cx, stages=pd.DataFrame(timer.rows),
    )
    if config.serve:
        from featlab.app import serve

        result.url = f"http://{config.host}:{config.port}/"
        print(result.report(), flush=True)
        serve(store, host=config.host, port=config.port, threads=config.threads,
              model=out / "model", saes={sid: r.out / "sae" for sid, r in sae_runs.items()})
    return result


__all__ = ["DemoConfig", "DemoResult", "run_demo"]
