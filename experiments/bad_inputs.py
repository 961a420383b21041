"""Bad input on the command line: every case must end in one clear message, no traceback, no
file changed and no work lost.

A workspace is built first (a finished model run, a finished SAE run, a store, and folders
and files that are wrong in each way a user can get them wrong); then every case runs as a
real `featlab` process. Recorded per case: exit status, whether a traceback was printed,
whether any file of the workspace changed (bytes or mtime), the seconds until the message,
and the message. The workspace files that hold work (model, SAE, store) are hashed before
and after all cases: "data lost" counts the ones that changed.

    python experiments/bad_inputs.py [--quick] [--out results/bad_inputs]

`--quick` skips the cases that load torch before failing (the slow ones).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402

HOOK = "blocks.0.hook_resid_post"
_TINY_MODEL = ("--layers", "conv,attn", "--d-model", "16", "--seq-len", "16", "--vocab-size",
               "16", "--num-kv-pairs", "2", "--steps", "5", "--batch-size", "4", "--n-train",
               "32", "--no-progress")


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # "{ws}" is replaced by the workspace folder
    code: int = 2  # expected exit status (1: a run that failed, e.g. diverged)
    expect: str = ""  # a piece of the message
    slow: bool = False  # fails only after torch is loaded (reads a file's content)
    refused: bool = True  # False: a run that starts and then fails (it may write files)


CASES = [
    Case("unknown mixer", ("train-model", "--layers", "gdn,atn", "--out", "{ws}/new"), 2, "atn"),
    Case("zero steps", ("train-model", "--steps", "0", "--out", "{ws}/new"), 2, "--steps"),
    Case("NaN learning rate", ("train-model", "--lr", "nan", "--out", "{ws}/new"), 2, "--lr"),
    Case("heads do not divide width", ("train-model", "--d-model", "30", "--n-heads", "4",
                                       "--out", "{ws}/new"), 2, "n_heads"),
    Case("too few keys for kv pairs", ("train-model", "--vocab-size", "16", "--num-kv-pairs",
                                       "40", "--out", "{ws}/new"), 2, "vocab_size"),
    Case("not a number", ("train-model", "--steps", "abc"), 2, "--steps"),
    Case("unknown command", ("train-modl",), 2, "train-model"),
    Case("retrain with other settings", ("train-model", "--layers", "conv,attn", "--d-model",
                                         "16", "--steps", "7", "--out", "{ws}/model"), 2,
         "--overwrite"),
    Case("corrupt checkpoint", ("train-model", *_TINY_MODEL, "--out", "{ws}/unfinished"), 2,
         "start the run again", slow=True),
    Case("out is a foreign folder", ("train-model", "--out", "{ws}/foreign"), 2,
         "not a featlab run folder"),
    Case("missing model", ("train-sae", "--model", "{ws}/nope", "--hook", HOOK,
                           "--out", "{ws}/new"), 2, "--model"),
    Case("corrupt model config", ("train-sae", "--model", "{ws}/corrupt_config", "--hook", HOOK,
                                  "--out", "{ws}/new"), 2, "not valid JSON"),
    Case("Hugging Face folder", ("train-sae", "--model", "{ws}/hf", "--hook", HOOK,
                                 "--out", "{ws}/new"), 2, "no weights"),
    Case("hook typo", ("train-sae", "--model", "{ws}/model", "--hook", "blocks.0.hook_resid_pst",
                       "--out", "{ws}/new"), 2, "did you mean"),
    Case("unknown kind", ("train-sae", "--model", "{ws}/model", "--hook", HOOK, "--kind",
                          "topkk", "--out", "{ws}/new"), 2, "'topk'"),
    Case("k above width", ("train-sae", "--model", "{ws}/model", "--hook", HOOK, "--width", "8",
                           "--k", "16", "--out", "{ws}/new"), 2, "--width"),
    Case("missing tokens file", ("train-sae", "--model", "{ws}/model", "--hook", HOOK,
                                 "--tokens-file", "{ws}/nope.pt", "--out", "{ws}/new"), 2,
         "--tokens-file"),
    Case("tokens file suffix", ("train-sae", "--model", "{ws}/model", "--hook", HOOK,
                                "--tokens-file", "{ws}/tokens.txt", "--out", "{ws}/new"), 2,
         "suffix"),
    Case("SAE run with other settings", ("train-sae", "--model", "{ws}/model", "--hook", HOOK,
                                         "--width", "32", "--k", "3", "--tokens", "2048",
                                         "--batch-size", "256", "--out", "{ws}/sae"), 2,
         "k: 4 -> 3"),
    Case("float tokens file", ("train-sae", "--model", "{ws}/model", "--hook", HOOK,
                               "--tokens-file", "{ws}/float.pt", "--out", "{ws}/new"), 2,
         "integer token ids", slow=True),
    Case("truncated weights", ("train-sae", "--model", "{ws}/truncated", "--hook", HOOK,
                               "--out", "{ws}/new"), 2, "corrupt", slow=True),
    Case("diverging learning rate", ("train-sae", "--model", "{ws}/model", "--hook", HOOK,
                                     "--width", "32", "--k", "4", "--tokens", "40960",
                                     "--batch-size", "256", "--lr", "1e4", "--no-progress",
                                     "--out", "{ws}/diverged"), 1, "diverged", slow=True,
         refused=False),
    Case("dataset and tokens file", ("train-sae", "--model", "{ws}/model", "--hook", HOOK,
                                     "--dataset", "{ws}/text.txt", "--tokens-file",
                                     "{ws}/tokens.txt", "--out", "{ws}/new"), 2, "not both"),
    Case("missing dataset", ("train-sae", "--model", "{ws}/model", "--hook", HOOK, "--dataset",
                             "{ws}/nope.txt", "--out", "{ws}/new"), 2, "--dataset"),
    Case("dataset for a model without a tokenizer",
         ("train-sae", "--model", "{ws}/model", "--hook", HOOK, "--dataset", "{ws}/text.txt",
          "--out", "{ws}/new"), 2, "no tokenizer", slow=True),
    Case("train-lm: missing dataset", ("train-lm", "--dataset", "{ws}/nope.jsonl",
                                       "--out", "{ws}/new"), 2, "--dataset"),
    Case("train-lm: missing tokenizer", ("train-lm", "--dataset", "{ws}/text.txt",
                                         "--tokenizer", "{ws}/nope", "--out", "{ws}/new"), 2,
         "--tokenizer"),
    Case("train-lm: context of one token", ("train-lm", "--context-size", "1",
                                            "--out", "{ws}/new"), 2, "--context-size"),
    Case("analyze: dataset and tokens", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/sae",
                                         "--dataset", "{ws}/text.txt", "--tokens",
                                         "{ws}/tokens.txt", "--store", "{ws}/new"), 2,
         "not both"),
    Case("missing SAE", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/nope",
                         "--store", "{ws}/new"), 2, "--sae"),
    Case("model given as SAE", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/model",
                                "--store", "{ws}/new"), 2, "cfg.json"),
    Case("ids do not match SAEs", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/sae",
                                   "--id", "a", "--id", "b", "--store", "{ws}/new"), 2,
         "one id per SAE"),
    Case("store is a foreign folder", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/sae",
                                       "--store", "{ws}/foreign"), 2, "not a featlab store"),
    Case("store id taken", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/sae_other",
                            "--id", "sae", "--n-seq", "8", "--store", "{ws}/store"), 2,
         "already holds", slow=True),
    Case("SAE of another width", ("analyze", "--model", "{ws}/model", "--sae", "{ws}/sae_d8",
                                  "--n-seq", "8", "--store", "{ws}/new"), 2, "d_in=8",
         slow=True),
    Case("app: missing store", ("app", "--store", "{ws}/nope"), 2, "no store"),
    Case("app: not a store", ("app", "--store", "{ws}/foreign"), 2, "not a featlab store"),
    Case("app: bad port", ("app", "--store", "{ws}/store", "--port", "0"), 2, "--port"),
    Case("app: bad --sae", ("app", "--store", "{ws}/store", "--sae", "nodir"), 2, "SAE_ID=DIR"),
    Case("demo: bad port", ("demo", "--port", "70000", "--out", "{ws}/new"), 2, "--port"),
    Case("demo: unknown task", ("demo", "--task", "wikitext", "--out", "{ws}/new"), 2,
         "--task must be one of text, mqar"),
    Case("sae-info: missing", ("sae-info", "{ws}/nope"), 2, "does not exist"),
    Case("v-information: missing", ("v-information", "{ws}/x.npy", "{ws}/y.npy"), 2, "x.npy"),
    Case("probe: missing", ("probe", "{ws}/a.npz", "{ws}/y.npy"), 2, "a.npz"),
    Case("bench: bad lengths", ("bench", "mixers", "--lengths", "a,b"), 2, "--lengths"),
]


def make_workspace(ws: Path) -> None:
    """A finished model run, SAE runs and a store, plus wrong files and folders."""
    import json

    import torch

    from featlab.runs import (
        AnalyzeRunConfig,
        MQARModelConfig,
        SAERunConfig,
        analyze_run,
        train_mqar_model,
        train_sae_run,
    )
    from featlab.sae import build_sae, make_config, save_sae

    tiny = dict(layers=("conv", "attn"), d_model=16, seq_len=16, vocab_size=16, num_kv_pairs=2,
                steps=5, batch_size=4, n_train=32)
    train_mqar_model(MQARModelConfig(**tiny, n_test=8, out=ws / "model", progress=False))
    from featlab.runs.folder import RunFolder
    from featlab.runs.options import result_settings

    # An unfinished run of the same settings whose checkpoint got corrupted.
    RunFolder(ws / "unfinished", "train-model",
              result_settings(MQARModelConfig(**tiny))).claim()
    (ws / "unfinished" / "train_state.pt").write_bytes(b"not a checkpoint")
    for name, seed in (("sae", 0), ("sae_other", 1)):
        train_sae_run(SAERunConfig(model=ws / "model", hook=HOOK, width=32, k=4, tokens=2048,
                                   batch_size=256, seed=seed, out=ws / name, progress=False))
    analyze_run(AnalyzeRunConfig(model=ws / "model", sae=(ws / "sae",), n_seq=16,
                                 store=ws / "store", progress=False))
    save_sae(build_sae(make_config("topk", 8, 16, 2, hook_name=HOOK)), ws / "sae_d8")
    (ws / "foreign").mkdir()
    (ws / "foreign" / "notes.txt").write_text("a user's file")
    (ws / "corrupt_config").mkdir()
    (ws / "corrupt_config" / "config.json").write_text("{not json")
    (ws / "hf").mkdir()
    (ws / "hf" / "config.json").write_text(json.dumps({"model_type": "qwen3_next",
                                                       "architectures": ["Qwen3NextForCausalLM"]}))
    (ws / "truncated").mkdir()
    for f in ("config.json", "model.safetensors"):
        data = (ws / "model" / f).read_bytes()
        (ws / "truncated" / f).write_bytes(data if f == "config.json" else data[: len(data) // 2])
    (ws / "tokens.txt").write_text("1 2 3")
    (ws / "text.txt").write_text("Some English text.\n\nA second paragraph of it.\n")
    torch.save(torch.rand(40, 16), ws / "float.pt")


def tree_state(root: Path) -> dict[str, tuple[int, str]]:
    """path -> (mtime_ns, sha256) of every file under `root`."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = (path.stat().st_mtime_ns,
                                                hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def run_case(case: Case, ws: Path) -> dict[str, object]:
    args = [a.replace("{ws}", str(ws)) for a in case.args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FEATLAB_DEBUG": ""}
    before = tree_state(ws)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "featlab.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    after = tree_state(ws)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    message = (proc.stderr.strip().splitlines() or [""])[-1]
    return {
        "case": case.name, "command": args[0], "refused": case.refused, "exit": proc.returncode,
        "expected_exit": case.code, "traceback": "Traceback" in proc.stderr + proc.stdout,
        "message_ok": case.expect in proc.stderr, "files_changed": len(changed),
        "changed": ", ".join(changed[:3]), "seconds": round(seconds, 2), "message": message,
    }


WORK = ("model", "sae", "sae_other", "store")  # folders that hold finished work


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the cases that load torch")
    ap.add_argument("--seed", type=int, default=0, help="unused: every case is deterministic")
    ap.add_argument("--out", type=Path, default=Path("results/bad_inputs"))
    args = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        make_workspace(ws)
        work_before = {k: v for k, v in tree_state(ws).items() if k.split("/")[0] in WORK}
        rows = [run_case(c, ws) for c in CASES if not (args.quick and c.slow)]
        work_after = {k: v for k, v in tree_state(ws).items() if k.split("/")[0] in WORK}
    lost = sum(work_before.get(k) != work_after.get(k) for k in work_before)
    table = pd.DataFrame(rows)
    write_table(table.drop(columns=["changed"]), args.out, "bad_inputs")
    summary = pd.DataFrame([{
        "cases": len(table), "exit as expected": int((table["exit"] ==
                                                      table["expected_exit"]).sum()),
        "tracebacks shown": int(table["traceback"].sum()),
        "messages naming the problem": int(table["message_ok"].sum()),
        "files changed by refused commands": int(
            table.loc[table["refused"], "files_changed"].sum()),
        "work files lost": lost,
        "median seconds to the message": float(table["seconds"].median()),
    }])
    write_table(summary, args.out, "summary")
    import plotly.express as px

    fig = px.bar(table, x="seconds", y="case", color="command", orientation="h",
                 title="Seconds from the command to its error message")
    note = write_figure(fig, args.out, "bad_inputs")
    print(summary.T.to_string(header=False))
    if note:
        print(note)
    return table


if __name__ == "__main__":
    main()
