"""The HTTP service: FastAPI routes, request limits and logging, and a uvicorn server.

``POST /predict`` takes an image as a multipart upload, a raw body, or JSON
``{"image": "<base64>"}`` and answers ``{"label", "probabilities", "model", "unknown"}`` (a
multi-label run: ``{"labels", "probabilities", "threshold", "model"}``). ``GET /`` is a page to
try it by hand; ``GET /healthz`` is 200 once the model is loaded and warmed up (both happen
before the socket listens, so a client sees a refused connection until then); ``GET /metadata``
describes the model, the settings and the start-up figures.

Bad input never takes the server down: a body that is not an image is 415; an oversized body
(refused from its Content-Length before it is read) or image (refused from its header before it
is decoded) 413; malformed JSON or base64 422; a request not answered within ``--deadline`` 503;
anything unexpected 500 with a request id that the log line repeats next to the traceback.

Stopping (Ctrl-C, SIGTERM): the listener closes at once (new connections are refused), idle
kept-alive connections are closed, requests in flight are answered for up to ``--drain-timeout``
seconds; any still waiting for inference then are answered 503, and the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from .. import __version__
from .batching import BatcherStopped, BatchingConfig, DynamicBatcher
from .bodies import DeadlinePassed, decode_body, read_body
from .model import MAX_PIXELS, RunModel, load_run_model
from .page import render_page

log = logging.getLogger("archbench.serve")

BACKENDS = ("onnxruntime",)
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024  # read and drop at most this much of a refused body


@dataclass(frozen=True)
class ServeConfig:
    run_dir: Path
    backend: str = "onnxruntime"
    host: str = "127.0.0.1"
    port: int = 8000
    batching: BatchingConfig = BatchingConfig()
    reject_below: float | None = None  # top probability below this answers "unknown"
    max_body_bytes: int = 10 * 1024 * 1024
    threads: int | None = None  # ONNX Runtime intra-op threads (default: the run's, or all)
    max_pixels: int = MAX_PIXELS  # larger images are refused from their header (413)
    deadline_s: float = 30.0  # a request not answered by then gets 503
    drain_timeout_s: float = 10.0  # on stop: how long requests in flight may still take
    decode_workers: int = min(4, os.cpu_count() or 1)  # threads that decode bodies

    def validate(self) -> None:
        from ..errors import ArchbenchError

        self.batching.validate()
        if self.backend not in BACKENDS:
            raise ArchbenchError(
                f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}"
            )
        if self.reject_below is not None and not 0 <= self.reject_below <= 1:
            raise ArchbenchError(f"--reject-below must be in [0, 1], got {self.reject_below:g}")
        if self.max_body_bytes < 1:
            raise ArchbenchError("--max-body must be positive")
        if not 0 <= self.port <= 65535:
            raise ArchbenchError(f"--port must be in 0-65535, got {self.port}")
        if self.threads is not None and self.threads < 1:
            raise ArchbenchError(f"--threads must be positive, got {self.threads}")
        if self.max_pixels < 1:
            raise ArchbenchError(f"--max-pixels must be positive, got {self.max_pixels}")
        if not self.deadline_s > 0:
            raise ArchbenchError(f"--deadline must be positive, got {self.deadline_s:g}")
        if not self.drain_timeout_s >= 0:
            raise ArchbenchError(f"--drain-timeout must be >= 0, got {self.drain_timeout_s:g}")
        if self.decode_workers < 1:
            raise ArchbenchError(f"decode workers must be positive, got {self.decode_workers}")


class _Refused(Exception):
    """An HTTP error raised while the body is read, answered by the request middleware."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestMiddleware:
    """Request id, body-size limit, one log line per request, and 500 for anything unexpected.

    An oversized body is drained (up to :data:`DRAIN_LIMIT_BYTES`) before the 413 goes out, so a
    client still uploading reads the answer instead of a reset connection.
    """

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(4)
        started = time.perf_counter()
        status = {"code": 0}
        received = {"bytes": 0, "done": False}

        async def send_tracked(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        async def drain() -> None:
            while not received["done"] and received["bytes"] < DRAIN_LIMIT_BYTES:
                message = await receive()
                received["bytes"] += len(message.get("body", b""))
                received["done"] = not message.get("more_body", False)

        async def receive_limited():
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                received["done"] = not message.get("more_body", False)
                if received["bytes"] > self.max_body_bytes:
                    await drain()
                    raise _Refused(413, self._too_large())
            return message

        try:
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await drain()
                raise _Refused(413, self._too_large())
            await self.app(scope, receive_limited, send_tracked)
        except _Refused as refusal:
            if status["code"] == 0:
                await _send_json(send_tracked, refusal.status, {"detail": refusal.detail})
        except Exception:
            log.exception("request %s failed: internal error", request_id)
            if status["code"] == 0:
                detail = {"detail": "internal error", "request_id": request_id}
                await _send_json(send_tracked, 500, detail)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %d %.1f ms id=%s",
                scope["method"],
                scope["path"],
                status["code"],
                elapsed,
                request_id,
            )

    def _too_large(self) -> str:
        return f"body larger than the limit of {self.max_body_bytes:,} bytes"


def answer(model: RunModel, probabilities, reject_below: float | None) -> dict[str, Any]:
    """The response body: numbers, not strings; ``unknown`` when the top class is too unsure.

    A multi-label run answers every label at or above its threshold, as a list (maybe empty).
    """
    by_class = {name: float(p) for name, p in zip(model.classes, probabilities, strict=True)}
    if model.multilabel:
        chosen = [name for name, p in by_class.items() if p >= model.threshold]
        return {
            "labels": chosen,
            "probabilities": by_class,
            "threshold": model.threshold,
            "model": model.run_dir.name,
        }
    top = int(probabilities.argmax())
    unknown = reject_below is not None and float(probabilities[top]) < reject_below
    return {
        "label": "unknown" if unknown else model.classes[top],
        "probabilities": by_class,
        "model": model.run_dir.name,
        "unknown": bool(unknown),
    }


def create_app(config: ServeConfig, *, started: float | None = None, loader=None) -> FastAPI:
    """The service for ``config``; ``loader(config) -> RunModel`` is swappable for tests."""
    started = time.perf_counter() if started is None else started
    loader = loader or (
        lambda c: load_run_model(
            c.run_dir,
            threads=c.threads,
            warmup_batch=c.batching.max_batch,
            max_pixels=c.max_pixels,
        )
    )
    state: dict[str, Any] = {
        "ready": False, "model": None, "batcher": None, "startup": {}, "in_flight": 0,
    }  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        model = await asyncio.to_thread(loader, config)
        batcher = DynamicBatcher(model.predict, config.batching)
        decoders = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="decode")
        await batcher.start()
        state.update(model=model, batcher=batcher, decoders=decoders, ready=True)
        state["page"] = render_page(
            network=model.arch,
            run_name=model.run_dir.name,
            classes=model.classes,
            input_size=model.input_size,
            multilabel=model.multilabel,
        )
        state["startup"] = {
            **(asdict(model.startup) if model.startup else {}),
            "ready_s": time.perf_counter() - started,
        }
        log.info(
            "ready: %s from %s; %s",
            model.arch,
            model.run_dir,
            ", ".join(f"{k} {v:.3f}" for k, v in state["startup"].items() if k.endswith("_s")),
        )
        try:
            yield
        finally:
            state["ready"] = False
            drained = await batcher.stop(timeout_s=config.drain_timeout_s)
            decoders.shutdown(wait=False, cancel_futures=True)
            log.info(
                "stopped: %d requests in %d batches%s",
                batcher.samples,
                batcher.batches,
                "" if drained else " (drain timeout: the rest answered 503)",
            )

    app = FastAPI(title="archbench serve", version=__version__, lifespan=lifespan)
    app.add_middleware(RequestMiddleware, max_body_bytes=config.max_body_bytes)
    app.state.serve = state  # the server's drain timer reaches the batcher through it

    @app.get("/", response_class=HTMLResponse)
    async def page():
        if not state["ready"]:
            raise HTTPException(503, "not ready")
        return HTMLResponse(state["page"])

    @app.get("/healthz")
    async def healthz():
        if not state["ready"]:
            raise HTTPException(503, "not ready")
        if "first_ready_healthz_s" not in state["startup"]:
            state["startup"]["first_ready_healthz_s"] = time.perf_counter() - started
            log.info(
                "first ready /healthz %.3f s after start", state["startup"]["first_ready_healthz_s"]
            )
        return {"status": "ready"}

    @app.get("/metadata")
    async def metadata():
        model: RunModel = state["model"]
        return {
            "network": model.arch,
            "task": model.task,
            "classes": model.classes,
            "threshold": model.threshold,
            "input_size": list(model.input_size),
            "native_size": list(model.inputs.native_shape),
            "backend": config.backend,
            "run_dir": str(model.run_dir),
            "onnx": str(model.onnx_path),
            "archbench_version": __version__,
            "max_batch": config.batching.max_batch,
            "max_wait_ms": config.batching.max_wait_ms,
            "reject_below": config.reject_below,
            "threads": config.threads,
            "max_pixels": model.max_pixels,
            "deadline_s": config.deadline_s,
            "drain_timeout_s": config.drain_timeout_s,
            "in_flight": state["in_flight"],  # /predict requests being answered now
            "startup": state["startup"],
        }

    async def respond(request: Request, deadline: float) -> dict[str, Any]:
        model: RunModel = state["model"]
        body = await read_body(request)
        loop = asyncio.get_running_loop()
        sample = await loop.run_in_executor(state["decoders"], decode_body, model, body, deadline)
        probabilities = await state["batcher"].submit(sample)
        return answer(model, probabilities, config.reject_below)

    @app.post("/predict")
    async def predict(request: Request):
        if not state["ready"]:
            raise HTTPException(503, "not ready")
        deadline = time.monotonic() + config.deadline_s
        state["in_flight"] += 1
        try:
            return await asyncio.wait_for(respond(request, deadline), config.deadline_s)
        except (asyncio.TimeoutError, DeadlinePassed):
            raise HTTPException(
                503, f"not answered within the deadline of {config.deadline_s:g} s"
            ) from None
        except BatcherStopped as error:
            raise HTTPException(503, f"{error} (drain timeout)") from None
        finally:
            state["in_flight"] -= 1

    return app


def _bind(host: str, port: int):
    """The listening address bound before start-up, so a taken port is a one-line error.

    The socket is made with the protocol ``getaddrinfo`` names (``IPPROTO_TCP``), not 0: asyncio
    sets ``TCP_NODELAY`` only on accepted sockets whose ``proto`` says TCP, and without it every
    response written in two segments (h11 sends the head, then the body) waits for the client's
    delayed ACK, about 40 ms per request on a kept-alive connection (Nagle's algorithm). The
    listener gets ``TCP_NODELAY`` too, which Linux copies to the sockets it accepts.
    """
    import socket

    from ..errors import ArchbenchError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except OSError as error:
        raise ArchbenchError(f"cannot resolve --host {host!r}: {error}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        raise ArchbenchError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock
