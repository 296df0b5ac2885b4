"""Running the application with uvicorn: until interrupted (the commands), or in a thread (tests)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from text4vis.errors import UsageError
from text4vis.serve.app import ServeSettings, create_app
from text4vis.serve.service import VideoApp

__all__ = ["RunningServer", "run", "start_in_thread"]

logger = logging.getLogger("text4vis.serve")


def _config(
    video_app: VideoApp, settings: ServeSettings, host: str, port: int, log_level: str
) -> Any:
    import uvicorn

    return uvicorn.Config(
        create_app(video_app, settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        # uvicorn's own bound on open connections and requests (503 beyond): a crowd of idle
        # connections cannot exhaust the process; the Guard bounds the model's requests.
        limit_concurrency=4 * settings.max_queue + 64,
        timeout_keep_alive=5,
        lifespan="on",
    )


def run(
    video_app: VideoApp,
    settings: ServeSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Serve until interrupted (Ctrl+C, SIGTERM); the work folder is removed at the end."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            for listening in self.servers if self.started else []:
                for sock in listening.sockets:  # the real port, also for --port 0
                    address, bound = sock.getsockname()[:2]
                    logger.info(
                        "serving text4vis on http://%s:%d/ (the page; API at /v1, schema at "
                        "/openapi.json; Ctrl+C stops)",
                        address,
                        bound,
                    )

    settings = settings or ServeSettings()
    server = Server(_config(video_app, settings, host, port, "warning"))
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "listening on %s: other machines can reach this server (it has no authentication)",
            host,
        )
    try:
        server.run()
    except SystemExit:  # uvicorn's answer to an address it cannot bind (it logged why)
        pass
    finally:
        video_app.close()
    if not server.started:
        raise UsageError(f"could not listen on {host}:{port} (is the port in use? try --port 0)")


@dataclass
class RunningServer:
    """A server started by :func:`start_in_thread`; ``url`` is where it listens."""

    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_in_thread(
    video_app: VideoApp,
    settings: ServeSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningServer:
    """Start uvicorn in a thread of this process (port 0: a free one) and wait until it listens.

    For tests and notebooks; :meth:`RunningServer.stop` stops it (the caller closes
    ``video_app``).
    """
    import uvicorn

    server = uvicorn.Server(_config(video_app, settings or ServeSettings(), host, port, "warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, daemon=True, name="text4vis-serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    return RunningServer(f"http://{bound[0]}:{bound[1]}", server, thread)
