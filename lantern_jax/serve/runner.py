"""Running the app under uvicorn: in the foreground (the CLI) or in a thread (tests, benchmarks)."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before uvicorn starts (port 0 picks a free one). TCP_NODELAY,
    inherited by accepted sockets, keeps small responses from waiting on Nagle / delayed ACKs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def uvicorn_server(app, *, log_level: str = "warning"):
    import uvicorn  # noqa: PLC0415

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2, timeout_keep_alive=30)
    return uvicorn.Server(config)


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serves `app` on a free loopback port from a daemon thread; yields its base URL."""
    sock = listen(host, 0)
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
