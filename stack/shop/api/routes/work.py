"""``GET /work?ms=20``: spend that much CPU time, then answer — the lab 06 load for the autoscaler.

Like the php-apache page of the Kubernetes HPA walkthrough, each request costs a fixed
amount of CPU (measured in this thread's CPU time, so a busy machine makes it slower,
never cheaper). Replicas under this load show real CPU utilization, which the autoscaler
reads. A plain ``def`` handler: it runs in the threadpool, so /health and /ready still
answer while requests burn CPU.
"""

import time

from fastapi import APIRouter, Query, Request

router = APIRouter(tags=["work"])

MAX_MS = 200    # one request never holds a thread for more than this much CPU


@router.get("/work")
def work(request: Request, ms: int = Query(20, ge=1, le=MAX_MS, description="CPU milliseconds to spend")) -> dict:
    start_cpu, start_wall = time.thread_time(), time.perf_counter()
    goal = start_cpu + ms / 1000
    rounds = 0
    while time.thread_time() < goal:
        sum(i * i for i in range(500))     # pure-Python arithmetic: CPU, no I/O, no sleep
        rounds += 1
    return {"instance": request.app.state.settings.instance,
            "cpu_ms": round((time.thread_time() - start_cpu) * 1000, 1),
            "wall_ms": round((time.perf_counter() - start_wall) * 1000, 1), "rounds": rounds}
