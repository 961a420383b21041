"""Screenshots of the demo's feature page and circuit page, for docs/demo.md.

Serves the store of a finished `featlab demo` (default ``runs/demo``) on a free local port
and photographs, in Debian's headless Chromium driven by Playwright:

- the feature page of the circuit's strongest feature node (or ``--sae`` / ``--feature``);
- the circuit page of the demo's circuit.

Writes ``feature.png``, ``circuit.png`` and ``shots.md`` (what each shows) under `--out`.
Run::

    .venv/bin/featlab demo --no-serve          # once
    OMP_NUM_THREADS=2 python experiments/demo_screenshots.py [--demo runs/demo]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_table  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def strongest_feature(store) -> tuple[str, int, str]:
    """(sae_id, feature, circuit_id) of the first circuit's largest-|effect| feature node."""
    circuits = store.circuits()
    if not len(circuits):
        raise SystemExit("the store holds no circuit; run `featlab demo` first")
    cid = str(circuits["circuit_id"].iloc[0])
    nodes, _ = store.circuit(cid)
    feats = nodes[nodes["feature"] >= 0]
    top = feats.loc[feats["effect"].abs().idxmax()]
    return str(top["sae_id"]), int(top["feature"]), cid


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from featlab.app import create_app
    from featlab.app.server import ServerThread
    from featlab.store import open_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a demo folder")
    ap.add_argument("--sae", default=None, help="store id of the feature to show")
    ap.add_argument("--feature", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("results/demo_screenshots"))
    ap.add_argument("--quick", action="store_true", help="(no effect: shots are cheap)")
    ap.add_argument("--seed", type=int, default=0, help="(no effect)")
    args = ap.parse_args(argv)
    store_dir = args.demo / "store"
    if not (store_dir / "featlab_store.json").is_file():
        raise SystemExit(f"no demo store at {store_dir}; run `featlab demo --out {args.demo}`")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is absent; install it with `make browser`")
    store = open_store(store_dir)
    sae_id, feature, cid = strongest_feature(store)
    if args.sae is not None:
        sae_id, feature = args.sae, args.feature if args.feature is not None else feature
    args.out.mkdir(parents=True, exist_ok=True)
    shots = [("feature", f"/sae/{sae_id}/feature/{feature}", "#examples .example"),
             ("circuit", f"/circuit?id={cid}", "#circuit-graph .main-svg")]
    from playwright.sync_api import sync_playwright

    app = create_app(store_dir, root=args.demo)
    rows = []
    with ServerThread(app, "127.0.0.1", 0) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(60_000)
            for name, path, ready in shots:
                page.goto(server.url + path)
                page.wait_for_selector(ready)
                page.wait_for_timeout(500)  # plotly's transitions
                page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)
                rows.append({"shot": f"{name}.png", "page": path})
        finally:
            browser.close()
    table = pd.DataFrame(rows)
    write_table(table, args.out, "shots")
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    main()
