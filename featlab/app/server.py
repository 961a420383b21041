"""Serving the app with waitress, a production WSGI server (pure Python, from PyPI).

Flask's development server (`app.run`) says itself it is not for production: it starts a
thread per request with no limit and is not hardened. waitress serves from a fixed pool of
`threads` worker threads behind one asynchronous listener that buffers slow clients, so a
burst of requests queues instead of piling threads onto the store.

The app has no authentication and its explanation editor writes to the store, so binding
beyond the loopback interface prints a warning (`exposure_warning`).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
import threading
from typing import Any

DEFAULT_THREADS = 8


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine: 127.0.0.0/8, ::1 or
    localhost. "0.0.0.0", "::", "" and any other name or address are not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, store_path: Any) -> str | None:
    """The warning `serve` prints when `host` is reachable from other machines, else None."""
    if is_loopback(host):
        return None
    where = "all interfaces" if host.strip("[]") in ("", "0.0.0.0", "::") else host
    return (
        f"featlab app: WARNING: serving on {where} (port {port}), reachable from other "
        "machines. Anyone who can connect can browse the whole store and, through the "
        f"explanation editor, write to it ({store_path}); the app has no login. To keep it "
        "local, serve on 127.0.0.1 (the default: drop --host) and reach it from elsewhere "
        f"through an SSH tunnel: ssh -L {port}:127.0.0.1:{port} <this machine>."
    )


def check_threads(threads: Any) -> int:
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    return threads


def make_server(app: Any, host: str = "127.0.0.1", port: int = 8050,
                threads: int = DEFAULT_THREADS) -> Any:
    """A bound (not yet running) waitress server for the `dash.Dash` `app`; port 0 picks a
    free one (read it back from `.effective_port`). `.run()` serves until `stop_server`."""
    import waitress

    check_threads(threads)
    return waitress.create_server(
        app.server, host=host, port=port, threads=threads,
        ident="featlab",
        # Callback bodies are small (guard.MAX_BODY_BYTES); refuse anything far larger
        # before it is buffered.
        max_request_body_size=4 << 20,
        # No traceback pages: errors are logged on the server, the client gets a 500.
        expose_tracebacks=False,
    )


def stop_server(server: Any) -> None:
    """Stop a server started with `.run()` in another thread: close its listener and every
    open connection (ending its loop), then the worker threads."""
    server.task_dispatcher.shutdown()
    while server._map:  # waitress keeps its sockets in an asyncore-style map
        for channel in list(server._map.values()):
            channel.handle_close()


class ServerThread:
    """The app served by waitress from a daemon thread: `url`, then `stop()` (for tests,
    benchmarks and notebooks)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 threads: int = DEFAULT_THREADS) -> None:
        self.server = make_server(app, host, port, threads)
        self.port = int(self.server.effective_port)
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.run, daemon=True,
                                        name=f"featlab-app-{self.port}")
        self._thread.start()

    def stop(self) -> None:
        stop_server(self.server)
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_blocking(app: Any, store_path: Any, host: str, port: int, threads: int) -> None:
    """Warn if exposed, print the URL, serve until interrupted."""
    warning = exposure_warning(host, port, store_path)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    server = make_server(app, host, port, threads)
    shown = f"[{host}]" if ":" in host else host
    print(f"featlab app: serving {store_path} at http://{shown}:{server.effective_port}/ "
          f"(waitress, {threads} threads; Ctrl+C stops)", flush=True)
    # waitress logs "Task queue depth is N" when every thread is busy: worth seeing, but
    # its default logger setup is silent, so route it to stderr at WARNING.
    logging.getLogger("waitress").setLevel(logging.WARNING)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(server)
