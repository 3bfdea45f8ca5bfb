"""A closed-loop GET load: ``concurrency`` clients, each sending its next request as soon as the
last one answered, one row per request (sent, done, status — 0 when no answer came —, instance).

Each request goes on a new connection: when nginx reloads, its old workers close their idle
keep-alive connections, and a request sent on one at that instant fails in the client (real
clients retry such a GET); with one connection per request a drill measures the server side only.

    with Background(url) as load:      # flowing once it returns (20 answers, or 30 s)
        ...                            # act: restart, route, kill
        seen = load.frame()            # t_s (since the first request), ms, status, instance
"""

import asyncio
import threading
import time

import httpx
import pandas as pd

from scalelab import aio


async def closed_loop(url: str, stop: threading.Event, concurrency: int, timeout: float, rows: list) -> None:
    """Run the clients until ``stop`` is set, appending a row per request to ``rows``."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def one_client():
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    answer = await client.get(url)
                    status, instance = answer.status_code, answer.headers.get("x-instance")
                except httpx.HTTPError as exc:      # no answer at all: a failure, named
                    status, instance = 0, type(exc).__name__
                rows.append({"sent": sent, "done": time.monotonic(), "status": status, "instance": instance})
        await asyncio.gather(*(one_client() for _ in range(concurrency)))


class Background:
    """The load in a thread while the caller acts; stopped on leaving the ``with`` block, and
    after ``max_s`` whatever happens."""

    def __init__(self, url: str, concurrency: int = 8, timeout: float = 4.0, max_s: float = 300.0):
        self.url, self.concurrency, self.timeout, self.max_s = url, concurrency, timeout, max_s
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._runner = threading.Thread(target=lambda: aio.run(closed_loop(url, self._stop, concurrency,
                                                                           timeout, self.rows)), daemon=True)
        self._hard_stop = threading.Timer(max_s, self._stop.set)
        self.t0 = time.monotonic()

    def __enter__(self) -> "Background":
        self.t0 = time.monotonic()
        self._runner.start()
        self._hard_stop.start()
        deadline = self.t0 + 30
        while self._runner.is_alive() and time.monotonic() < deadline and len(self.rows) < 20:
            time.sleep(0.02)             # polling: the load is flowing once answers come back
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._hard_stop.cancel()
        self._runner.join()

    def now_s(self) -> float:
        """Seconds since the load started (the clock of ``frame().t_s``)."""
        return time.monotonic() - self.t0

    def frame(self) -> pd.DataFrame:
        """One row per answered (or failed) request so far, in the order sent."""
        rows = pd.DataFrame(list(self.rows), columns=["sent", "done", "status", "instance"])
        return pd.DataFrame({"t_s": rows.sent - self.t0, "ms": (rows.done - rows.sent) * 1000,
                             "status": rows.status, "instance": rows.instance}).sort_values("t_s", ignore_index=True)
