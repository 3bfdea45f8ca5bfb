"""A chaos drill: kill parts of the stack, on a script, under a steady order load.

    drill = ChaosDrill(stack, user_id, rate_per_s=3, duration_s=24, schedule=default_schedule(24))
    drill.run()                     # load + scripted kills/restarts; returns the requests' frame
    drill.settle(timeout=60)        # waits until every 202'd order is terminal: the orders' frame
    drill.plot()                    # events and outcomes on one timeline

The load is open-loop: one POST /orders every ``1/rate_per_s`` seconds whatever the
answers take (a slow answer does not slow the load down, as real clients would not wait
for each other). It lasts ``duration_s`` — longer when a member takes longer than planned to
be ready again (a RabbitMQ node boots in seconds): it ends a second after the last one is
back, so every fault happens under load. Every request is recorded (when, status, error, the
order id, the ``X-Order-Queued`` header). The schedule's actions run in this thread: each
fault's ``stack.kill`` at its offset, its ``stack.start`` (which waits until the member is
ready) ``down_s`` after that kill took effect — every fault gets its whole outage, however
long another member took to come back; what was done when is recorded in ``events`` and
``outages()`` gives each member's measured time down.
"""

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd

from scalelab import aio, db
from scalelab.errors import ScalelabError

ITEMS = [{"sku": "book-ddia", "quantity": 1, "price_cents": 3900}]


@dataclass(frozen=True)
class Fault:
    at_s: float          # when to kill, seconds after the load started
    member: str          # e.g. "users-1", "redis-1", "standby-1", "worker-1", "rabbitmq-1"
    down_s: float        # how long it stays down before stack.start(member)
    signal: str = "KILL"


def default_schedule(duration_s: float,
                     members=("users-1", "redis-1", "standby-1", "worker-1", "rabbitmq-1")) -> list[Fault]:
    """One fault after another, spread over the drill: each member down for ~1/8 of it."""
    step = duration_s / (len(members) + 1)
    return [Fault(at_s=round(step * (i + 0.5), 1), member=m, down_s=round(max(2.0, step * 0.6), 1))
            for i, m in enumerate(members)]


class ChaosDrill:
    def __init__(self, stack, user_id: int, rate_per_s: float, duration_s: float, schedule: list[Fault],
                 timeout_s: float = 10.0, max_in_flight: int = 32):
        if rate_per_s <= 0 or duration_s <= 0:
            raise ScalelabError("rate_per_s and duration_s must be > 0")
        late = [f for f in schedule if f.at_s + f.down_s > duration_s]
        if late:
            raise ScalelabError(f"faults end after the load does ({late[0]}): lengthen duration_s")
        self.stack, self.user_id = stack, user_id
        self.rate_per_s, self.duration_s, self.schedule = rate_per_s, duration_s, sorted(schedule, key=lambda f: f.at_s)
        self.timeout_s, self.max_in_flight = timeout_s, max_in_flight
        self.requests: pd.DataFrame | None = None
        self.events: pd.DataFrame | None = None
        self.orders: pd.DataFrame | None = None
        self.settle_s: float | None = None
        self.started_at: float | None = None
        self._rows: list[dict] = []
        self._t0 = 0.0

    # -- the load ---------------------------------------------------------------------------
    async def _load(self, url: str, stop: threading.Event) -> None:
        gate = asyncio.Semaphore(self.max_in_flight)
        limits = httpx.Limits(max_connections=self.max_in_flight)
        async with httpx.AsyncClient(base_url=url, timeout=self.timeout_s, limits=limits) as api:
            async def one(n: int) -> None:
                async with gate:
                    started = time.perf_counter()
                    row: dict[str, Any] = {"n": n, "t_s": started - self._t0, "status": 0, "error": None,
                                           "order_id": None, "queued": None}
                    try:
                        r = await api.post("/orders", json={"user_id": self.user_id, "items": ITEMS},
                                           headers={"Idempotency-Key": f"chaos-{self._t0:.3f}-{n}"})
                        body = r.json()
                        row.update(status=r.status_code, error=body.get("error"), order_id=body.get("id"),
                                   queued=r.headers.get("X-Order-Queued", "now" if r.status_code == 202 else None))
                    except httpx.HTTPError as exc:
                        row["error"] = type(exc).__name__
                    row["ms"] = (time.perf_counter() - started) * 1000
                    self._rows.append(row)

            tasks, n = [], 0
            while not stop.is_set():
                due = self._t0 + n / self.rate_per_s
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                if time.perf_counter() - self._t0 >= max(self.duration_s, self._faults_over_s + 1.0):
                    break
                tasks.append(asyncio.create_task(one(n)))
                n += 1
            await asyncio.gather(*tasks)

    def run(self) -> pd.DataFrame:
        """The load and the schedule, together; the requests' frame (also ``self.requests``)."""
        stop = threading.Event()
        self._rows, events = [], []
        self._t0 = time.perf_counter()
        self._faults_over_s = float("inf")   # until every member is back: the load goes on
        self.started_at = time.time()   # wall clock of t_s = 0 (to line the drill up with Prometheus)
        url = self.stack.url("orders")
        failure: list[BaseException] = []

        def load():
            try:
                aio.run(self._load(url, stop))
            except BaseException as exc:   # surfaced in the caller's thread below
                failure.append(exc)

        thread = threading.Thread(target=load, name="chaos-load", daemon=True)
        thread.start()
        try:
            # Each fault runs on its own thread and clock: its kill at its at_s, its start down_s
            # after the kill took effect. So a slow start of one member (a restart that takes
            # seconds, or a worker that waits for the broker another fault took down) never
            # shortens another's outage nor holds back another's start.
            def timed(member: str, action: str, act) -> None:
                started = time.perf_counter() - self._t0
                act()
                events.append({"member": member, "action": action, "t_s": started,
                               "took_s": time.perf_counter() - self._t0 - started})

            def run_fault(fault) -> None:
                try:
                    if (wait := self._t0 + fault.at_s - time.perf_counter()) > 0:
                        time.sleep(wait)
                    timed(fault.member, "kill", lambda: self.stack.kill(fault.member, fault.signal))
                    time.sleep(fault.down_s)
                    timed(fault.member, "start", lambda: self.stack.start(fault.member))
                except BaseException as exc:   # surfaced in the caller's thread below
                    failure.append(exc)

            faults = [threading.Thread(target=run_fault, args=(f,), name=f"chaos-{f.member}", daemon=True)
                      for f in self.schedule]
            for fault_thread in faults:
                fault_thread.start()
            for fault_thread in faults:
                fault_thread.join()
        finally:
            self._faults_over_s = time.perf_counter() - self._t0
            thread.join(self.duration_s + self.timeout_s + 30)
            stop.set()
            for fault in self.schedule:   # whatever happened above, leave nothing down
                if fault.member in set(self.stack.status().query("state != 'running'").member):
                    self.stack.start(fault.member)
        if failure:
            raise failure[0]
        self.events = pd.DataFrame(events)
        self.requests = pd.DataFrame(self._rows).sort_values("n").reset_index(drop=True)
        return self.requests

    # -- after the drill ------------------------------------------------------------------------
    def outages(self) -> pd.DataFrame:
        """Per fault: when its kill took effect, when its member was ready again, and the
        seconds between — what the drill really did, to compare with the schedule."""
        if self.events is None:
            raise ScalelabError("run() the drill first")
        kills = self.events.query("action == 'kill'").set_index("member")
        starts = self.events.query("action == 'start'").set_index("member")
        rows = [{"member": f.member, "planned_down_s": f.down_s,
                 "down_at_s": kills.t_s[f.member] + kills.took_s[f.member],
                 "back_at_s": starts.t_s[f.member] + starts.took_s[f.member]} for f in self.schedule]
        frame = pd.DataFrame(rows)
        frame["down_s"] = frame.back_at_s - frame.down_at_s
        return frame

    def acknowledged(self) -> list[int]:
        """The orders the service acknowledged (202): each must reach ``done``."""
        if self.requests is None:
            raise ScalelabError("run() the drill first")
        return sorted({int(i) for i in self.requests.query("status == 202").order_id.dropna()})

    def settle(self, timeout: float = 60.0) -> pd.DataFrame:
        """Wait (bounded) until every acknowledged order is terminal; the orders' frame."""
        ids, started = self.acknowledged(), time.monotonic()
        while True:
            frame = db.frame(self.stack.database_url(),
                             "SELECT id AS order_id, status, attempts, requeued, created_at, done_at FROM orders "
                             "WHERE id = ANY($1::bigint[]) ORDER BY id", ids)
            if len(frame) == len(ids) and frame.status.isin(["done", "failed", "dead"]).all():
                break
            if time.monotonic() - started > timeout:
                break
            time.sleep(0.2)
        self.settle_s = time.monotonic() - started
        self.orders = frame
        return frame

    def lost(self) -> list[int]:
        """Acknowledged orders that are not ``done`` (missing, stuck, failed or dead)."""
        done = set(self.orders.query("status == 'done'").order_id) if self.orders is not None else set()
        return [i for i in self.acknowledged() if i not in done]

    def outcomes(self) -> pd.DataFrame:
        """Requests per outcome: 202 (now / deferred to the outbox) or the error code."""
        r = self.requests
        assert r is not None   # run() first: it sets the requests' frame
        outcome = r.apply(lambda row: f"202 {row.queued}" if row.status == 202 else f"{row.status} {row.error}",
                          axis=1)
        return outcome.value_counts().rename_axis("outcome").reset_index(name="requests")

    def plot(self):
        """Top: each request (time × latency, by outcome); bottom: each acknowledged order's time
        from POST to ``done``. Each fault is a shaded span (killed → ready again)."""
        import matplotlib.pyplot as plt
        _, (ax, below) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, height_ratios=[3, 2])
        self._plot_requests(ax)
        if self.orders is not None:
            assert self.requests is not None   # settle() set the orders from run()'s requests
            posted = self.requests.dropna(subset=["order_id"]).drop_duplicates("order_id")
            frame = self.orders.merge(posted[["order_id", "t_s", "queued"]], on="order_id")
            frame["to_done_s"] = (frame.done_at - frame.created_at).dt.total_seconds()
            for queued, group in frame.groupby("queued"):
                below.scatter(group.t_s, group.to_done_s, s=14, label=f"202 {queued} → done")
            below.set_ylabel("POST → done (s)")
            below.legend(fontsize=8, loc="upper right")
            self.shade(below, labels=False)
        below.set_xlabel("seconds into the drill")
        return ax

    def shade(self, ax, labels: bool = True) -> None:
        import matplotlib.pyplot as plt
        assert self.events is not None   # run() first: it sets the events' frame
        kills = self.events.query("action == 'kill'").set_index("member").t_s
        starts = self.events.query("action == 'start'").set_index("member")
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (member, t_kill) in enumerate(kills.items()):
            t_back = starts.t_s[member] + starts.took_s[member]
            ax.axvspan(t_kill, t_back, alpha=0.15, color=colors[(i + 3) % len(colors)])
            if labels:
                ax.text(t_kill, 0.02, f" {member} down", rotation=90, va="bottom", fontsize=8,
                        transform=ax.get_xaxis_transform())

    def _plot_requests(self, ax):
        assert self.requests is not None   # run() first: it sets the requests' frame
        r = self.requests.copy()
        r["outcome"] = r.apply(lambda row: f"202 {row.queued}" if row.status == 202 else f"{row.status} {row.error}",
                               axis=1)
        for outcome, group in r.groupby("outcome"):
            ax.scatter(group.t_s, group.ms, s=14, label=outcome)
        self.shade(ax)
        ax.set_yscale("log")
        ax.set_ylabel("POST /orders latency (ms)")
        ax.set_title("chaos drill: each request, and each fault (shaded: killed → ready again)")
        ax.legend(fontsize=8, loc="upper right")
        return ax
