"""Feature-page latency under 20 concurrent clients: Flask's development server vs waitress.

Each server runs in its own subprocess on a free loopback port over the same store (the
16,384-feature synthetic store of `bench_app.py`, built or reused). 20 client threads in this
process then each request a fixed number of random feature pages over real HTTP, the way
the browser does (a POST to `/_dash-update-component` that routes to the page; keep-alive
where the server allows it), and every latency, error and the wall time are recorded.

- before: Flask's development server, `threaded=True` (what `app.run` gave: a thread per
  request, no limit);
- after: waitress through `featlab.app.server.make_server`, as `featlab.app.serve` runs it
  (default 8 worker threads).

    python experiments/bench_app_server.py            # 16,384 features, 20 x 25 requests
    python experiments/bench_app_server.py --quick    # 512 features, 20 x 3 requests

Writes bench_app_server.{csv,md,html,png} under --out. Timings are wall-clock on whatever
else the machine is running: run it twice when the numbers look noisy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sae_common import write_figure, write_table  # noqa: E402
from bench_app import build_or_reuse  # noqa: E402

SERVERS = {"flask-dev (threaded=True)": "flask", "waitress": "waitress"}
NAME = "bench_app_server"


# -- the server side (a subprocess per server) ---------------------------------------------


def serve_child(kind: str, store: Path, threads: int) -> None:
    """Serve the app over `store` on a free loopback port; print "PORT <n>" once bound."""
    import logging

    from featlab.app import create_app

    app = create_app(store)
    if kind == "flask":
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", 0, app.server, threaded=True)
        port, run = server.server_port, server.serve_forever
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    else:
        from featlab.app.server import make_server

        server = make_server(app, "127.0.0.1", 0, threads)
        port, run = server.effective_port, server.run
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" notes
    print(f"PORT {port}", flush=True)
    run()


def start_server(kind: str, store: Path, threads: int) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--store", str(store),
         "--threads", str(threads)],
        stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the {kind} server did not start (got {line!r})")
    return proc, int(line.split()[1])


# -- the client side -------------------------------------------------------------------------


def page_body(sae_id: str, feature: int) -> bytes:
    from featlab.app.routing import router_request

    return json.dumps(router_request(f"/sae/{sae_id}/feature/{feature}")).encode()


def client(port: int, bodies: list[bytes], out: list[tuple[float, bool]]) -> None:
    """Send `bodies` one after another on one connection (reopened when the server closes
    it), appending (milliseconds, ok) per request."""
    conn: http.client.HTTPConnection | None = None
    headers = {"Content-Type": "application/json"}
    for body in bodies:
        t0 = time.perf_counter()
        ok = False
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/_dash-update-component", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            ok = resp.status == 200 and b'"feature-page"' in data
            if resp.getheader("Connection", "").lower() == "close" or resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        out.append(((time.perf_counter() - t0) * 1e3, ok))
    if conn is not None:
        conn.close()


def load(port: int, sae_id: str, n_features: int, clients: int, per_client: int,
         seed: int) -> tuple[np.ndarray, int, float]:
    """(latencies in ms, errors, wall seconds) of `clients` threads x `per_client` pages."""
    rng = np.random.default_rng(seed)
    plans = [[page_body(sae_id, int(f)) for f in rng.integers(0, n_features, per_client)]
             for _ in range(clients)]
    results: list[list[tuple[float, bool]]] = [[] for _ in range(clients)]
    threads = [threading.Thread(target=client, args=(port, plan, res))
               for plan, res in zip(plans, results, strict=True)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = [r for res in results for r in res]
    ms = np.array([m for m, ok in flat if ok])
    return ms, sum(not ok for _, ok in flat), wall


def run(store: Path, n_features: int, clients: int, per_client: int, threads: int,
        seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    from featlab.store import open_store

    sae_id = str(open_store(store).saes()["sae_id"].iloc[0])
    rows, latencies = [], {}
    for label, kind in SERVERS.items():
        proc, port = start_server(kind, store, threads)
        try:
            load(port, sae_id, n_features, 4, 3, seed + 1)  # warm-up: imports, caches
            ms, errors, wall = load(port, sae_id, n_features, clients, per_client, seed)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        latencies[label] = ms
        done = len(ms)
        rows.append({
            "server": label, "worker_threads": threads if kind == "waitress" else "1/request",
            "clients": clients, "requests": clients * per_client, "errors": errors,
            "p50_ms": float(np.percentile(ms, 50)) if done else float("nan"),
            "p95_ms": float(np.percentile(ms, 95)) if done else float("nan"),
            "max_ms": float(ms.max()) if done else float("nan"),
            "throughput_rps": done / wall, "wall_s": wall, "features": n_features,
        })
    return pd.DataFrame(rows), latencies


def figure(latencies: dict[str, np.ndarray], clients: int):
    import plotly.graph_objects as go

    fig = go.Figure([go.Box(x=ms, name=name, boxpoints=False) for name, ms in latencies.items()])
    fig.update_layout(title=f"Feature page latency, {clients} concurrent clients on loopback",
                      xaxis_title="ms per request (client side)", yaxis_title="")
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="512 features, 3 requests per client")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(f"results/{NAME}"))
    p.add_argument("--features", type=int, default=None, help="default 16384 (512 quick)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=None,
                   help="requests per client (default 25; 3 quick)")
    p.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    p.add_argument("--store", type=Path, default=None,
                   help="where to build/reuse the store (default OUT/store)")
    p.add_argument("--serve", choices=("flask", "waitress"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.serve:  # the child: serve until terminated
        serve_child(args.serve, args.store, args.threads)
        return None
    n_features = args.features or (512 if args.quick else 16_384)
    per_client = args.requests or (3 if args.quick else 25)
    store, build_s = build_or_reuse(args.store or args.out / "store", n_features, args.quick,
                                    args.seed)
    if build_s:
        print(f"built a {n_features}-feature store in {build_s:.1f} s at {store}")
    df, latencies = run(store, n_features, args.clients, per_client, args.threads, args.seed)
    shown = df.round(2)
    write_table(shown, args.out, NAME)
    note = write_figure(figure(latencies, args.clients), args.out, NAME)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end")
    if note:
        print(note)
    return df


if __name__ == "__main__":
    main()
