"""Orders: what one delivery of an order's task does, around the learner's code.

An order's life (``orders.status``):

    pending ──▶ processing ──▶ done
                    │  ▲
                    ▼  │ (after base·2^n s)
                 retrying ──▶ dead      (the payment call kept failing: max retries spent)
    failed: the task cannot run at all (the order_task exercise is missing or crashed);
            retrying would not help, so the order says why and stops.

The worker (``shop/tasks.py``) calls :func:`deliver` for every delivery of a task,
redeliveries included. ``deliver`` logs the delivery in ``order_attempts``, then runs
the learner's ``order_task.process_order(conn, order_id, pay)``; ``pay`` is the slow
payment call, which records the payment through the learner's
``idempotency.apply_once`` guard.
"""

import asyncio
import hashlib
import json
import time

import asyncpg

from shop.config import Settings
from shop.db import DB_UNAVAILABLE
from shop.errors import DomainError, ExerciseNotDone
from shop.exercises import ExerciseError, Exercises

TERMINAL = ("done", "failed", "dead")
TASK = "shop.process_order"           # the Celery task's name (shop/tasks.py)
QUEUE = "orders"                      # the broker queue (a Redis list of this name)
DEAD_LETTER = "orders:dead-letter"    # a Redis list: one JSON entry per dead order
WORKERS = "orders:workers"            # a Redis hash: worker hostname -> pid, set when it is ready


class PaymentUnavailable(Exception):
    """The payment service did not answer (simulated): a transient failure, worth a retry."""


def request_hash(body: dict) -> str:
    """The same order body always hashes the same (key order does not matter)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def backoff_s(settings: Settings, retries: int) -> float:
    """Exponential backoff: base, 2·base, 4·base, ... before retry number ``retries + 1``."""
    return settings.order_retry_base_s * 2 ** retries


def _burn_cpu(seconds: float) -> None:
    """Work that needs a core the whole time (hashing), unlike waiting on a remote service."""
    end = time.process_time() + seconds
    digest = b"order"
    while time.process_time() < end:
        for _ in range(1000):
            digest = hashlib.sha256(digest).digest()


def make_pay(conn: asyncpg.Connection, exercises: Exercises, settings: Settings):
    """The payment call the task body makes: slow, sometimes failing, effective once."""

    async def pay(order) -> bool:
        order_id = order["id"]
        row = await conn.fetchrow(
            "UPDATE orders SET attempts = attempts + 1 WHERE id = $1"
            " RETURNING attempts, fail_first, work, total_cents", order_id)
        if row is None:
            raise ExerciseError(f"pay() was given order {order_id!r}, which does not exist")
        if row["work"] == "cpu":
            _burn_cpu(settings.order_process_s)
        else:
            await asyncio.sleep(settings.order_process_s)   # waiting on the payment provider
        if row["attempts"] <= row["fail_first"]:
            raise PaymentUnavailable(f"payment service unavailable (simulated: call {row['attempts']} "
                                     f"of the first {row['fail_first']} that fail)")
        # The provider's ledger: one payment per idempotency key, whatever the retries.
        return await exercises.call("idempotency", "apply_once", conn, f"order-{order_id}",
                                    order_id, row["total_cents"])

    return pay


async def _set_status(conn, order_id: int, status: str, error: str | None) -> None:
    await conn.execute(
        "UPDATE orders SET status = $2, last_error = $3, updated_at = clock_timestamp()"
        " WHERE id = $1 AND status NOT IN ('done', 'failed', 'dead')", order_id, status, error)


async def deliver(settings: Settings, exercises: Exercises, order_id: int, *, worker: str,
                  task_id: str | None, retries: int) -> tuple[str, str | None]:
    """Run one delivery of order ``order_id``'s task: ``(outcome, error)``.

    outcome is ``done`` or ``skipped`` (what process_order returned), ``retrying`` (a
    transient failure: the caller schedules the retry), ``dead`` (retries spent) or
    ``failed`` (the exercise code cannot run).
    """
    conn = await asyncpg.connect(settings.database_url, timeout=5)
    outcome, error = "failed", None
    try:
        attempt = await conn.fetchval(
            "INSERT INTO order_attempts (order_id, worker, task_id, retries)"
            " SELECT id, $2, $3, $4 FROM orders WHERE id = $1 RETURNING id",
            order_id, worker, task_id, retries)
        try:
            result = await exercises.call("order_task", "process_order", conn, order_id,
                                          make_pay(conn, exercises, settings),
                                          passthrough=(PaymentUnavailable,))
            outcome = str(result) if result in ("done", "skipped") else "done"
        except (PaymentUnavailable, *DB_UNAVAILABLE) as exc:
            error = f"{type(exc).__name__}: {exc}"
            outcome = "retrying" if retries < settings.order_max_retries else "dead"
            await _set_status(conn, order_id, outcome, error)
        except (ExerciseNotDone, ExerciseError, DomainError) as exc:
            error = f"{exc.code}: {exc.detail}"
            outcome = "failed"
            await _set_status(conn, order_id, "failed", error)
        if attempt is not None:
            await conn.execute("UPDATE order_attempts SET finished_at = clock_timestamp(), outcome = $2, error = $3"
                               " WHERE id = $1", attempt, outcome, error)
    finally:
        await conn.close()
    return outcome, error
