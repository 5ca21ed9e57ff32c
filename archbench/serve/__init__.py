"""Serving a trained run over HTTP (``archbench serve``) and load-testing it (``serve-bench``).

Needs the ``serve`` extra (FastAPI, uvicorn, httpx, python-multipart); nothing here is imported
by the rest of archbench, so the other commands work without it.

- :mod:`.model`: a run directory -> ONNX Runtime session plus the run's preprocessing.
- :mod:`.batching`: the dynamic batcher (max batch, max wait).
- :mod:`.bodies`: request bodies decoded off the event loop, within a deadline.
- :mod:`.app`: the FastAPI app and its routes, request limits and logging.
- :mod:`.page`: the HTML page ``GET /`` serves.
- :mod:`.server`: the process: start-up errors in one line, uvicorn, the bounded drain.
- :mod:`.bench`: the load test, ``serve-bench.json`` and its markdown table.
"""
