"""Run a coroutine from synchronous code, even inside Jupyter's running event loop."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scalelab-aio")


def run(coro):
    """``asyncio.run(coro)`` in a helper thread, so it works where a loop already runs."""
    return _pool.submit(asyncio.run, coro).result()
