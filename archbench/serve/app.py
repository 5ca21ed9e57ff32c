"""The HTTP service: FastAPI routes, request limits and logging, and a uvicorn server.

``POST /predict`` takes an image as a multipart upload, a raw body, or JSON
``{"image": "<base64>"}`` and answers ``{"label", "probabilities", "model", "unknown"}``.
``GET /healthz`` is 200 once the model is loaded and warmed up (the lifespan handler does both
before uvicorn accepts a connection) and 503 while shutting down; ``GET /metadata`` describes
the model, the settings and the start-up figures.

Bad input never takes the server down: a body that is not an image is 415, an oversized one
413 (refused from its Content-Length before it is read), malformed JSON or base64 422, and
anything unexpected 500 with a request id that the log line repeats next to the traceback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.datastructures import UploadFile

from .. import __version__
from .batching import BatchingConfig, DynamicBatcher
from .model import ImageTooLarge, NotAnImage, RunModel, load_run_model

log = logging.getLogger("archbench.serve")

BACKENDS = ("onnxruntime",)
INLINE_DECODE_BYTES = 64 * 1024  # smaller images decode on the event loop: cheaper than a hop
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


async def _json_image(body: bytes) -> bytes:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPException(422, f"malformed JSON: {error}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise HTTPException(422, 'JSON body must be {"image": "<base64>"}')
    text = payload["image"]
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, "malformed base64 in 'image'") from None


async def image_bytes(request: Request) -> bytes:
    """The encoded image of a request, whichever of the three body forms it came in."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise HTTPException(422, "multipart body has no file part")
        return await uploads[0].read()
    body = await request.body()
    if content_type.startswith("application/json") or content_type.endswith("+json"):
        return await _json_image(body)
    return body


def answer(model: RunModel, probabilities, reject_below: float | None) -> dict[str, Any]:
    """The response body: numbers, not strings; ``unknown`` when the top class is too unsure."""
    by_class = {name: float(p) for name, p in zip(model.classes, probabilities, strict=True)}
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
        lambda c: load_run_model(c.run_dir, threads=c.threads, warmup_batch=c.batching.max_batch)
    )
    state: dict[str, Any] = {"ready": False, "model": None, "batcher": None, "startup": {}}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        model = await asyncio.to_thread(loader, config)
        batcher = DynamicBatcher(model.predict, config.batching)
        await batcher.start()
        state.update(model=model, batcher=batcher, ready=True)
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
            await batcher.stop()
            log.info("stopped: %d requests in %d batches", batcher.samples, batcher.batches)

    app = FastAPI(title="archbench serve", version=__version__, lifespan=lifespan)
    app.add_middleware(RequestMiddleware, max_body_bytes=config.max_body_bytes)

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
            "classes": model.classes,
            "input_size": list(model.input_size),
            "backend": config.backend,
            "run_dir": str(model.run_dir),
            "onnx": str(model.onnx_path),
            "archbench_version": __version__,
            "max_batch": config.batching.max_batch,
            "max_wait_ms": config.batching.max_wait_ms,
            "reject_below": config.reject_below,
            "threads": config.threads,
            "startup": state["startup"],
        }

    @app.post("/predict")
    async def predict(request: Request):
        if not state["ready"]:
            raise HTTPException(503, "not ready")
        model: RunModel = state["model"]
        data = await image_bytes(request)
        try:
            if len(data) <= INLINE_DECODE_BYTES:
                sample = model.preprocess(data)
            else:
                sample = await asyncio.to_thread(model.preprocess, data)
        except NotAnImage as error:
            raise HTTPException(415, str(error)) from None
        except ImageTooLarge as error:
            raise HTTPException(413, str(error)) from None
        probabilities = await state["batcher"].submit(sample)
        return answer(model, probabilities, config.reject_below)

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


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def serve(config: ServeConfig) -> int:
    """Run the service until Ctrl-C or SIGTERM; in-flight requests are answered first.

    Returns 0 after a clean stop, 130 after Ctrl-C. uvicorn re-raises a captured SIGTERM once it
    has shut down, so the process then ends as terminated by that signal, as a service should.
    """
    import uvicorn

    from ..errors import ArchbenchError
    from ..train.rundir import BEST, load_checkpoint, read_run

    started = time.perf_counter()
    config.validate()
    info = read_run(config.run_dir)  # a wrong directory fails here, in one line
    if not (info.path / BEST).is_file():
        raise ArchbenchError(f"{info.path} has no {BEST} to serve (status {info.status})")
    load_checkpoint(info.path / BEST)
    _configure_logging()
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    log.info("archbench serve %s on http://%s:%d (loading)", info.path, host, port)
    app = create_app(config, started=started)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=30,
        )
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return 130
    if not server.started:
        raise ArchbenchError(f"the server could not start on {host}:{port}; see the log above")
    return 0
