"""Dynamic batching: concurrent requests share one forward pass.

Requests wait in an asyncio queue; one worker takes the first, then keeps taking more until it
holds ``max_batch`` of them or ``max_wait_ms`` have passed since the first arrived, whichever
comes first (the scheme of Triton's and TorchServe's dynamic batchers). The batch runs on one
inference thread, so the event loop keeps accepting and decoding requests meanwhile, and the
CPU's cores go to ONNX Runtime's own threads rather than to competing forward passes. With
``max_batch=1`` nothing waits: every request runs alone, one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 16
    max_wait_ms: float = 2.0

    def validate(self) -> None:
        from ..errors import ArchbenchError

        if self.max_batch < 1:
            raise ArchbenchError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ArchbenchError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms:g}")


class BatcherStopped(RuntimeError):
    """The batcher stopped (or was aborted) before this request's batch ran."""


@dataclass
class _Pending:
    sample: np.ndarray
    answer: asyncio.Future


class DynamicBatcher:
    """Groups samples submitted from the event loop into batches for ``predict``.

    ``predict`` maps float32 ``(N, ...)`` to ``(N, ...)`` results; an exception it raises is
    handed to every request of that batch, and the worker carries on with the next batch.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], config: BatchingConfig):
        config.validate()
        self.predict, self.config = predict, config
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.worker: asyncio.Task | None = None
        self._collecting: list[_Pending] = []  # taken from the queue, batch not yet run
        self.stopped: Exception | None = None  # set by abort(): later submissions fail at once
        self._unanswered: set[asyncio.Future] = set()
        self.batches = 0
        self.samples = 0

    async def start(self) -> None:
        self.worker = asyncio.create_task(self._run(), name="dynamic-batcher")

    async def stop(self, timeout_s: float | None = None) -> bool:
        """Answer everything already queued, then stop the worker and the inference thread.

        Waits at most ``timeout_s`` (None: until done); whatever is still waiting then gets
        :class:`BatcherStopped`. Returns whether everything queued was answered.
        """
        loop = asyncio.get_running_loop()
        give_up = None if timeout_s is None else loop.time() + timeout_s
        # Unanswered, not merely queued: a request cancelled by its deadline needs no answer.
        while self._unanswered and (give_up is None or loop.time() < give_up):
            await asyncio.sleep(0.005)
        drained = not self._unanswered
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.abort(BatcherStopped("the server stopped before this request's batch ran"))
        self.executor.shutdown(wait=drained, cancel_futures=True)
        return drained

    def abort(self, error: Exception) -> int:
        """Fail every request not yet answered with ``error``; returns how many there were."""
        self.stopped = error
        collecting = list(self._collecting)
        self._collecting.clear()  # in place: the worker's batch in the making loses them too
        failed = 0
        for pending in [*collecting, *self._drain_queue()]:
            if not pending.answer.done():
                pending.answer.set_exception(error)
                failed += 1
        return failed

    def _drain_queue(self) -> list[_Pending]:
        taken = []
        while not self.queue.empty():
            taken.append(self.queue.get_nowait())
        return taken

    async def submit(self, sample: np.ndarray) -> np.ndarray:
        """The result for one sample, once the batch it joined has run."""
        if self.stopped is not None:
            raise self.stopped
        answer = asyncio.get_running_loop().create_future()
        self._unanswered.add(answer)
        answer.add_done_callback(self._unanswered.discard)
        await self.queue.put(_Pending(sample, answer))
        return await answer

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        batch = self._collecting
        batch.append(await self.queue.get())
        deadline = loop.time() + self.config.max_wait_ms / 1000
        while len(batch) < self.config.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        self._collecting = []
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Requests that went away (their deadline passed) cost no inference.
            batch = [pending for pending in await self._collect() if not pending.answer.done()]
            if not batch:
                continue
            try:
                inputs = np.stack([pending.sample for pending in batch])
                outputs = await loop.run_in_executor(self.executor, self.predict, inputs)
            except Exception as error:  # the requests answer 500; the server stays up
                for pending in batch:
                    if not pending.answer.done():
                        pending.answer.set_exception(error)
            else:
                self.batches += 1
                self.samples += len(batch)
                for pending, output in zip(batch, outputs, strict=True):
                    if not pending.answer.done():  # the client may have gone away
                        pending.answer.set_result(output)
