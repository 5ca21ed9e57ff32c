"""The dynamic batcher's stop: bounded by a timeout, and not held up by requests gone away."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from archbench.serve.batching import BatcherStopped, BatchingConfig, DynamicBatcher


def _doubling(batch: np.ndarray) -> np.ndarray:
    return batch * 2


def test_stop_gives_up_at_its_timeout_and_fails_what_is_still_waiting():
    async def scenario():
        # The batch would wait a minute to fill: stop must not.
        batcher = DynamicBatcher(_doubling, BatchingConfig(max_batch=8, max_wait_ms=60_000))
        await batcher.start()
        waiting = [asyncio.ensure_future(batcher.submit(np.ones(1, np.float32))) for _ in range(3)]
        await asyncio.sleep(0.05)  # taken from the queue into the batch being filled
        drained = await batcher.stop(timeout_s=0.2)
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        return drained, outcomes, batcher

    drained, outcomes, batcher = asyncio.run(scenario())
    assert drained is False
    assert all(isinstance(outcome, BatcherStopped) for outcome in outcomes)
    assert batcher.batches == 0
    with pytest.raises(BatcherStopped):  # nothing is accepted after the stop
        asyncio.run(batcher.submit(np.ones(1, np.float32)))


def test_a_request_that_went_away_does_not_hold_stop_up_nor_cost_inference():
    async def scenario():
        batcher = DynamicBatcher(_doubling, BatchingConfig(max_batch=8, max_wait_ms=100))
        await batcher.start()
        gone = asyncio.ensure_future(batcher.submit(np.ones(1, np.float32)))
        await asyncio.sleep(0.01)
        gone.cancel()  # as a request whose deadline passed
        kept = await batcher.submit(np.full(1, 3, np.float32))
        drained = await batcher.stop(timeout_s=30)
        return drained, kept, batcher

    drained, kept, batcher = asyncio.run(scenario())
    assert drained is True and float(kept[0]) == 6.0
    assert batcher.samples == 1  # the cancelled request was dropped from its batch
