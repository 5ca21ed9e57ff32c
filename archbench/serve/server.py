"""``archbench serve``'s process: one-line start-up errors, uvicorn, and a bounded drain.

The model is loaded (and exported, and warmed up) before uvicorn starts, so a start-up failure
is one :class:`~archbench.errors.ArchbenchError` line and exit status 2, never a traceback from
inside uvicorn's lifespan. Stopping follows :mod:`.app`'s docstring: listener closed, requests
in flight answered for up to ``--drain-timeout`` seconds, the rest 503, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import FastAPI

from .app import ServeConfig, _bind, create_app, log
from .batching import BatcherStopped
from .model import load_run_model


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


DRAIN_BACKSTOP_S = 2.0  # after the drain timeout, how long a request still decoding may take


def _draining_server(config, app: FastAPI, drain_timeout_s: float):
    """A uvicorn server whose shutdown answers 503 to what inference has not reached in time.

    uvicorn's own shutdown closes the listener, closes idle connections and waits for requests
    in flight; at the drain timeout this one fails every request still waiting for inference
    (they answer 503 at once) and gives uvicorn a short backstop to cancel anything else.
    """
    import uvicorn

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            def stop_waiting() -> None:
                batcher = app.state.serve.get("batcher")
                if batcher is not None:
                    failed = batcher.abort(
                        BatcherStopped("the server stopped before this request's batch ran")
                    )
                    log.info(
                        "drain timeout %.1f s: %d requests answered 503", drain_timeout_s, failed
                    )

            timer = asyncio.get_running_loop().call_later(drain_timeout_s, stop_waiting)
            try:
                await super().shutdown(sockets)
            finally:
                timer.cancel()

    return DrainingServer(config)


def serve(config: ServeConfig) -> int:
    """Run the service until Ctrl-C or SIGTERM; in-flight requests are answered first.

    Everything that can fail at start-up (the run, the export, the ONNX session, the port) fails
    before uvicorn starts, as one :class:`ArchbenchError` line (exit 2). Returns 0 after a clean
    stop, 130 after Ctrl-C. uvicorn re-raises a captured SIGTERM once it has shut down, so the
    process then ends as terminated by that signal, as a service should.
    """
    import uvicorn

    from ..errors import ArchbenchError
    from ..train.rundir import read_run

    started = time.perf_counter()
    config.validate()
    info = read_run(config.run_dir)  # a wrong directory fails here, in one line
    if config.reject_below is not None and info.config["train"].get("task") == "multilabel":
        raise ArchbenchError(
            "--reject-below applies to single-label runs; a multi-label run answers the labels "
            "at or above its own threshold"
        )
    _configure_logging()
    sock = _bind(config.host, config.port)  # a taken port fails before minutes of loading
    host, port = sock.getsockname()[:2]
    log.info("archbench serve %s on http://%s:%d (loading)", info.path, host, port)
    try:
        model = load_run_model(
            info.path,
            threads=config.threads,
            warmup_batch=config.batching.max_batch,
            max_pixels=config.max_pixels,
        )
    except ArchbenchError:
        sock.close()
        raise
    except Exception as error:  # a bug or a broken install: still one line, not a traceback
        sock.close()
        reason = " ".join(f"{error}".split()) or type(error).__name__
        raise ArchbenchError(
            f"cannot serve {info.path}: {type(error).__name__}: {reason}"
        ) from None
    app = create_app(config, started=started, loader=lambda _: model)
    server = _draining_server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=config.drain_timeout_s + DRAIN_BACKSTOP_S,
        ),
        app,
        config.drain_timeout_s,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    if not server.started:
        raise ArchbenchError(f"the server could not start on {host}:{port}; see the log above")
    return 0
