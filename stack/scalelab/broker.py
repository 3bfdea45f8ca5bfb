"""The stack's broker from the driver's side (labs 05, 07, 08).

* which broker carries the orders — broker.yaml's choice, read with the shop's own parser
  (``shop.broker``), so the driver and the services agree — and its member (``redis-1`` or
  ``rabbitmq-1``);
* how many messages wait in it (``depth``);
* ``apply``: new settings for the running stack (the broker Redis restarted with its new
  append-only settings when they changed, the order service and the workers restarted: they
  read broker.yaml when they start);
* ``crash_drill``: clients place orders while the broker is SIGKILLed and started again; then
  the workers run, and every accepted order (202) that never reaches ``done`` is counted lost.
"""

import threading
import time
import uuid
from typing import Any

import httpx
import pandas as pd

from scalelab import db
from scalelab.errors import ScalelabError
from shop.broker import FILE, STARTING, BrokerSettings, BrokerSettingsError, chosen, parse

QUEUE = "orders"                  # shop.orders.QUEUE
ITEMS = [{"sku": "book-ddia", "quantity": 1, "price_cents": 3900}]
TERMINAL = ("done", "failed", "dead")


def settings(stack) -> BrokerSettings:
    """The broker settings the stack's services start with (a bad setting: one line naming it)."""
    return settings_in(stack.plan, stack.workspace)


def settings_in(plan, workspace) -> BrokerSettings:
    try:
        return chosen(workspace, plan.exercises)
    except BrokerSettingsError as exc:
        raise ScalelabError(str(exc)) from exc


def validate(plan, workspace) -> None:
    """Before a stack with orders starts: its broker settings are runnable."""
    if plan.has("orders"):
        settings_in(plan, workspace)


def member(stack) -> str:
    return "rabbitmq-1" if settings(stack).broker == "rabbitmq" else "redis-1"


# The settings lab 05 compares (and make bench measures): (a) in memory, (b) the append-only file,
# (c) RabbitMQ without and with publisher confirms.
CANDIDATES = {
    "(a) Redis, in memory": "broker: redis\n",
    "(b) Redis, AOF everysec": "broker: redis\nappendonly: yes\nappendfsync: everysec\n",
    "(b) Redis, AOF always": "broker: redis\nappendonly: yes\nappendfsync: always\n",
    "(c) RabbitMQ, no confirms": "broker: rabbitmq\ndurable: true\npersistent: true\n",
    "(c) RabbitMQ, confirms": "broker: rabbitmq\ndurable: true\npersistent: true\nconfirm_publish: true\n",
}


def redis_conf(broker: BrokerSettings) -> list[str]:
    """The stack's Redis persistence lines: the append-only file when it is the broker and
    broker.yaml turns it on, else memory only (``save ""`` holds in both: no snapshots)."""
    if broker.broker == "redis" and broker.appendonly:
        return ["appendonly yes", f"appendfsync {broker.appendfsync}"]
    return ["appendonly no"]


def depth(stack, broker: BrokerSettings | None = None) -> int:
    """Messages waiting in the orders queue of the broker in use (not those a worker holds)."""
    broker = broker or settings(stack)
    if broker.broker == "redis":
        import redis
        client = redis.Redis.from_url(stack.redis_url(), socket_timeout=2, socket_connect_timeout=2)
        try:
            return int(client.llen(QUEUE))
        finally:
            client.close()
    import amqp
    from kombu import Connection
    with Connection(stack.rabbitmq_url(), connect_timeout=2) as conn:
        try:
            return conn.default_channel.queue_declare(QUEUE, passive=True).message_count
        except amqp.exceptions.NotFound:
            return 0   # not declared yet: nothing was ever published


# -- new settings on the running stack --------------------------------------------------------
def apply(stack, text: str | None = None, workers: int | None = None) -> BrokerSettings:
    """Write ``text`` as the workspace's broker.yaml (None: keep the file there) and restart what
    reads it; then ``workers`` workers run (None: as many as before). Refused while orders wait
    in the current broker: they would be left behind."""
    path = stack.workspace / FILE
    try:
        new = parse(text if text is not None else (path.read_text() if path.exists() else "")) or STARTING
    except BrokerSettingsError as exc:
        raise ScalelabError(str(exc)) from exc
    for kind in ("redis", "rabbitmq") if stack.plan.has("rabbitmq") else ("redis",):
        if waiting := depth(stack, BrokerSettings(kind)):
            raise ScalelabError(f"{waiting} order message(s) still wait in {kind}: let the workers drain them "
                                "(stack.scale('worker', 2)) before changing brokers")
    workers = len(stack.members("worker")) if workers is None else workers
    stack.scale("worker", 0)                      # warm shutdown: each finishes and acknowledges its task
    services = stack.members("orders")
    for name in services:
        stack.kill(name, "TERM")
    if text is not None:
        path.write_text(text)
    if _redis_persistence(stack) != redis_conf(new):
        stack.restart("redis-1")                  # it reads its append-only settings when it starts
    if stack.plan.has("rabbitmq"):
        _delete_orders_queue(stack)               # declared again, durable or not, by the services
    for name in services:
        stack.start(name)
    stack.scale("worker", workers)
    return new


def _redis_persistence(stack) -> list[str]:
    """What the running Redis does now, in redis_conf's words."""
    import redis
    client = redis.Redis.from_url(stack.redis_url(), socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    try:
        config = client.config_get("append*")
    finally:
        client.close()
    if config.get("appendonly") != "yes":
        return ["appendonly no"]
    return ["appendonly yes", f"appendfsync {config.get('appendfsync')}"]


def _delete_orders_queue(stack) -> None:
    import amqp
    from kombu import Connection
    with Connection(stack.rabbitmq_url(), connect_timeout=5) as conn:
        try:
            conn.default_channel.queue_delete(QUEUE, if_empty=True)
        except amqp.exceptions.NotFound:
            pass


# -- the crash drill ---------------------------------------------------------------------------
def crash_drill(stack, before: int = 40, after: int = 20, clients: int = 4, stop_workers: bool = True,
                workers: int = 4, timeout_s: float = 180) -> dict:
    """``clients`` clients place orders; once ``before`` are accepted (202) the broker gets SIGKILL
    and is started again, and the clients go on until ``after`` more are accepted after it is back
    (what is refused meanwhile is no promise; what is accepted meanwhile — lab 07's outbox — is).
    With ``stop_workers`` no worker runs during the load, so every accepted order's message waits
    in the broker when it dies (the worst case, and an exact count); then ``workers`` start. Every
    accepted order that does not reach ``done`` is lost — counted once all are terminal, or once
    nothing has moved for longer than any redelivery or outbox sweep takes while the broker's
    queue is empty: nothing is left that could ever process them."""
    if before < 1 or after < 0:
        raise ScalelabError(f"before must be >= 1 and after >= 0, got {before} and {after}")
    broker, target = settings(stack), member(stack)
    user = int(db.fetchval(stack.database_url(), "INSERT INTO users (email, name) VALUES ($1, 'Crash Drill') "
                           "RETURNING id", f"drill-{uuid.uuid4().hex[:10]}@example.com"))
    if stop_workers:
        stack.scale("worker", 0)
    load = _Load(stack.url("orders"), user, clients)
    load.start()
    try:
        load.wait_accepted(before, timeout_s, f"{before} orders were not accepted within {timeout_s:.0f} s: is the "
                                              "order service up? (stack.logs('orders-1'))")
        waiting = depth(stack, broker)
        kill_s = load.now()
        stack.kill(target, "KILL")
        dead_s = load.now()
        stack.start(target)
        back_s, back_at = load.now(), load.accepted()
        try:
            load.wait_accepted(back_at + after, timeout_s, f"{after} orders were not accepted within {timeout_s:.0f} s "
                                                           f"after {target} came back")
        except ScalelabError as exc:   # say what the order service says
            said = [line for line in stack.logs("orders-1", 200).splitlines() if "not queued" in line]
            raise ScalelabError(f"{exc}: orders-1 logs {said[-1].strip() if said else 'no failed publish'} "
                                "(stack.logs('orders-1'))") from exc
    finally:
        load.stop()
    if waiting == 0:   # what the drill is about must have happened before it claims anything
        raise ScalelabError(f"no message waited in {target} when it was killed: the drill proves nothing "
                            "(stop the workers, or place more orders before the kill)")
    requests = load.frame()
    ids = sorted(set(requests.query("status == 202").order_id.astype(int)))
    if stop_workers:
        stack.scale("worker", workers)
    frame, settle_s = _settle(stack, ids, broker, timeout_s)
    lost = sorted(set(ids) - set(frame.query("status == 'done'").id))
    accepted = requests.query("status == 202").t_s.sort_values().to_numpy()
    pre = requests.query("status == 202 and t_s < @kill_s").iloc[clients:]   # each client's first order warms up
    return {"broker": broker.label(), "member": target, "accepted": len(ids),
            "orders/s": accept_rate(pre.t_s.to_numpy()), "POST p50 ms": float(pre.ms.median()),
            "during_outage": int(((accepted > kill_s) & (accepted < back_s)).sum()),
            "refused": int((requests.status != 202).sum()), "waiting_at_kill": waiting, "lost": len(lost),
            "kill_s": kill_s, "dead_s": dead_s, "back_s": back_s, "down_s": back_s - kill_s,
            "settle_s": settle_s, "lost_ids": lost, "statuses": frame.status.value_counts().to_dict(),
            "requests": requests}


def accept_burst(stack, orders: int, clients: int = 4, timeout_s: float = 120) -> dict:
    """``clients`` clients place orders until ``orders`` are accepted: orders/s (first to last 202)
    and the POSTs' p50. The orders are real: the caller lets workers process them."""
    user = int(db.fetchval(stack.database_url(), "INSERT INTO users (email, name) VALUES ($1, 'Burst') RETURNING id",
                           f"burst-{uuid.uuid4().hex[:10]}@example.com"))
    load = _Load(stack.url("orders"), user, clients)
    load.start()
    try:
        load.wait_accepted(orders, timeout_s, f"{orders} orders were not accepted within {timeout_s:.0f} s")
    finally:
        load.stop()
    ok = load.frame().query("status == 202")
    return {"orders/s": (len(ok) - 1) / (ok.t_s.max() - ok.t_s.min()), "POST p50 ms": float(ok.ms.median()),
            "ids": ok.order_id.astype(int).tolist()}


def accept_rate(times, parts: int = 3) -> float:
    """Orders accepted per second: the median of ``parts`` consecutive slices of the answers'
    times (a slice's rate = its answers over its span), so one stall on a shared machine moves
    it less than a single average would. NaN when there are too few answers."""
    import numpy as np
    times = np.sort(np.asarray(times, dtype=float))
    slices = [t for t in np.array_split(times, parts) if len(t) >= 3 and t[-1] > t[0]]
    return float(np.median([(len(t) - 1) / (t[-1] - t[0]) for t in slices])) if slices else float("nan")


def _settle(stack, ids: list[int], broker: BrokerSettings, timeout_s: float) -> tuple[pd.DataFrame, float]:
    """Wait until every order in ``ids`` is terminal, or until nothing moved for ``quiet_s`` with the
    broker's queue empty (then the rest will never be processed). (orders frame, seconds)."""
    plan = stack.plan.settings
    quiet_s = 2 + float(plan.get("SHOP_BROKER_VISIBILITY_TIMEOUT_S", 0))   # a held message comes back by then
    if float(plan.get("SHOP_OUTBOX_SWEEP_S", 0)):                           # ... and the sweep republishes by then
        quiet_s += float(plan.get("SHOP_OUTBOX_STALE_S", 6)) + float(plan["SHOP_OUTBOX_SWEEP_S"])
    started = last_move = time.monotonic()
    last = None
    while True:
        frame = db.frame(stack.database_url(), "SELECT id, status, attempts FROM orders WHERE id = ANY($1::bigint[])",
                         ids)
        now = time.monotonic()
        if frame.status.isin(TERMINAL).all() or now - started > timeout_s:
            return frame, now - started
        state = (tuple(frame.status.value_counts().sort_index().items()), int(frame.attempts.sum()))
        if state != last:
            last, last_move = state, now
        elif now - last_move > quiet_s and depth(stack, broker) == 0:
            return frame, now - started
        time.sleep(0.2)


class _Load:
    """``clients`` threads POSTing orders until stopped; ``wait_accepted(n)`` returns once ``n`` were
    accepted (202). After an answer other than 202, a client waits 0.25 s before its next order."""

    def __init__(self, url: str, user: int, clients: int):
        self.url, self.user, self.clients = url, user, clients
        self.rows: list[dict] = []
        self._accepted = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def accepted(self) -> int:
        with self._changed:
            return self._accepted

    def wait_accepted(self, n: int, timeout_s: float, failure: str) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._accepted >= n, timeout_s):
                raise ScalelabError(failure)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _client(self, k: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as api:
            while not self._stop.is_set():
                started = time.perf_counter()
                row: dict[str, Any] = {"client": k, "status": 0, "order_id": None, "error": None}
                try:
                    r = api.post("/orders", json={"user_id": self.user, "items": ITEMS})
                    row.update(status=r.status_code, order_id=r.json().get("id"), error=r.json().get("error"))
                except (httpx.HTTPError, ValueError) as exc:
                    row["error"] = type(exc).__name__
                row.update(t_s=time.perf_counter() - self._t0, ms=(time.perf_counter() - started) * 1000)
                with self._changed:
                    self.rows.append(row)
                    self._accepted += row["status"] == 202
                    self._changed.notify_all()
                if row["status"] != 202:
                    self._stop.wait(0.25)

    def frame(self) -> pd.DataFrame:
        with self._changed:
            return pd.DataFrame(self.rows, columns=["client", "t_s", "ms", "status", "order_id", "error"])


def plot(drill: dict, ax=None, title: str | None = None):
    """Each POST of a crash drill: when it was answered (x) and how long it took (y, log), by fate —
    accepted and done, accepted and lost, refused; the broker's outage shaded (killed → ready)."""
    from scalelab.plot import Figure
    if ax is None:
        ax = Figure(figsize=(9, 3.6), layout="constrained").subplots()
    r = drill["requests"]
    lost = set(drill["lost_ids"])
    fate = r.apply(lambda row: "refused (503)" if row.status != 202 else
                   "202 → lost" if row.order_id in lost else "202 → done", axis=1)
    for name, color in (("202 → done", "tab:green"), ("202 → lost", "tab:red"), ("refused (503)", "tab:gray")):
        part = r[fate == name]
        if len(part):
            ax.scatter(part.t_s, part.ms, s=10, color=color, label=f"{name}: {len(part)}")
    ax.axvspan(drill["kill_s"], drill["back_s"], color="tab:orange", alpha=0.2, label=f"{drill['member']} down")
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the drill")
    ax.set_ylabel("POST /orders (ms)")
    ax.set_title(title or drill["broker"])
    ax.legend(fontsize=8, loc="upper right")
    return ax.figure
