"""`featlab.app.serve`: waitress (not Flask's development server), a configurable thread
pool, and a warning on stderr when bound beyond loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from featlab.app.server import ServerThread, exposure_warning, is_loopback


@pytest.mark.parametrize(("host", "local"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST", True),
    ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("192.168.1.5", False), ("10.0.0.1", False), ("example.org", False), ("::ffff:1.2.3.4", False),
])
def test_loopback_hosts(host: str, local: bool) -> None:
    assert is_loopback(host) is local
    assert (exposure_warning(host, 8050, "/s") is None) is local


def test_the_warning_says_what_is_exposed_and_how_to_keep_it_local() -> None:
    text = exposure_warning("0.0.0.0", 8123, "/data/store")
    assert "all interfaces" in text and "8123" in text
    assert "explanation editor" in text and "/data/store" in text and "no login" in text
    assert "127.0.0.1" in text and "ssh -L 8123:127.0.0.1:8123" in text


def test_served_by_waitress_with_the_threads_asked_for(synthetic_store: Path) -> None:
    from featlab.app import create_app
    from featlab.app.routing import router_request

    app = create_app(synthetic_store)
    with ServerThread(app, threads=3) as server:
        assert server.server.task_dispatcher.threads and len(
            server.server.task_dispatcher.threads) == 3
        with urllib.request.urlopen(server.url + "/", timeout=30) as resp:
            assert resp.status == 200 and resp.headers["Server"] == "featlab"
        req = urllib.request.Request(
            server.url + "/_dash-update-component", method="POST",
            data=json.dumps(router_request("/sae/L0-topk/feature/3")).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200 and b"feature-page" in resp.read()
    with pytest.raises(OSError):  # stopped: nothing listens any more
        urllib.request.urlopen(server.url + "/", timeout=5)


def test_bad_thread_counts_are_refused_before_anything_starts(synthetic_store: Path) -> None:
    from featlab.app import serve

    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="threads must be a whole number"):
            serve(synthetic_store, threads=bad)


@pytest.mark.slow
def test_serve_on_all_interfaces_warns_and_serves(synthetic_store: Path) -> None:
    """The real entry point in a subprocess: the warning on stderr, the URL on stdout, pages
    answered, Ctrl+C (SIGINT) stops it."""
    import signal

    code = ("import sys; from featlab.app import serve; "
            "serve(sys.argv[1], host='0.0.0.0', port=0, threads=2)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(synthetic_store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the socket is bound
        assert "waitress, 2 threads" in line, (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split("http://0.0.0.0:")[1].split("/")[0])
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                    assert resp.status == 200
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the server did not answer")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "WARNING: serving on all interfaces" in err and "explanation editor" in err
    assert "Traceback" not in err
    assert proc.returncode == 0
