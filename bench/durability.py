"""``make bench``'s durability rung: what each broker setting of lab 05 costs in accepted orders/s.

On a solved lab 05 stack (local), for each of ``scalelab.broker.CANDIDATES``: the setting is
applied (``broker.apply``), no worker runs, four clients place a warm-up burst, then
``repeats`` bursts of ``orders`` orders; the median burst's orders/s and POST p50 are kept.
Then four workers process every order (each was answered 202) before the next setting. The
stack's payment call is 0 s here (a bench-only plan), so the draining takes seconds; the
path measured — POST /orders: INSERT, publish, 202 — is the notebook's. What each setting
loses when the broker is killed is the notebook's (step 11) and the tests' to show.
"""

from dataclasses import replace
from pathlib import Path
from statistics import median

from scalelab import Stack, broker
from scalelab.labs import lab05
from scalelab.plans import PLANS
from scalelab.references import solve

WORKERS = 4


def durability(workdir: Path, orders: int = 100, repeats: int = 3, warmup: int = 20) -> list[dict]:
    plan = PLANS[5]
    PLANS[5] = replace(plan, settings={**plan.settings, "SHOP_ORDER_PROCESS_S": "0"})
    stack = Stack(lab=5, state_dir=workdir / "durability")
    try:
        solve(stack)
        stack.up()
        rows = []
        for name, text in broker.CANDIDATES.items():
            broker.apply(stack, text, workers=0)
            placed = broker.accept_burst(stack, warmup)["ids"]
            bursts = []
            for _ in range(repeats):
                burst = broker.accept_burst(stack, orders)
                bursts.append(burst)
                placed += burst["ids"]
            stack.scale("worker", WORKERS)
            lab05.wait_orders(stack, placed, timeout=120)   # every accepted order done before the next setting
            rows.append({"setting": name, "orders/s": median(b["orders/s"] for b in bursts),
                         "POST p50 ms": median(b["POST p50 ms"] for b in bursts),
                         "min orders/s": min(b["orders/s"] for b in bursts),
                         "max orders/s": max(b["orders/s"] for b in bursts), "bursts": repeats, "orders/burst": orders})
        return rows
    finally:
        stack.down(purge=True)
        PLANS[5] = plan
