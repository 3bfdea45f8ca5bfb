"""``/debug/memory``: the process's RSS and tracemalloc's top allocation sites (lab 01's memory leak).

Mounted only with ``SHOP_DEBUG_MEMORY=true`` (lab 01's plan): it tells anyone who asks what the
process allocates, and tracing slows it down — never on in production.

    GET    /debug/memory                     RSS (and traced bytes while tracing)
    POST   /debug/memory/baseline?frames=10  start tracing; the baseline snapshot is now
    GET    /debug/memory/top?limit=10&group_by=traceback   what grew since the baseline (409 without one)
    DELETE /debug/memory/baseline            stop tracing
"""

from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from shop.api.contract import errors
from shop.errors import Conflict
from shop.memory import MemoryProbe

router = APIRouter(prefix="/debug/memory", tags=["debug"])


class MemoryState(BaseModel):
    instance: str
    rss_bytes: int = Field(description="resident set size: the memory this process really occupies")
    rss_source: str
    tracing: bool
    frames: int = Field(description="frames of call stack kept per traced allocation (0: not tracing)")
    traced_bytes: int | None = Field(description="bytes allocated by traced code and not freed yet")
    traced_peak_bytes: int | None
    baseline: bool


class Frame(BaseModel):
    file: str
    line: int


class Site(BaseModel):
    size_diff_bytes: int = Field(description="bytes held now minus at the baseline, at this site")
    size_bytes: int
    count_diff: int
    count: int
    traceback: list[Frame] = Field(description="where it was allocated, the most recent call first")
    where: str = Field(description="file:line of the allocation itself")


class Top(BaseModel):
    instance: str
    group_by: str
    frames: int
    total_size_diff_bytes: int
    top: list[Site]


def _probe(request: Request) -> MemoryProbe:
    return request.app.state.memory_probe


def _instance(request: Request) -> str:
    return request.app.state.settings.instance


@router.get("", response_model=MemoryState)
def memory(request: Request):
    return {"instance": _instance(request), **_probe(request).state()}


@router.post("/baseline", response_model=MemoryState)
def baseline(request: Request, frames: int = Query(10, ge=1, le=50, description="call-stack frames per allocation")):
    return {"instance": _instance(request), **_probe(request).start(frames)}


@router.delete("/baseline", response_model=MemoryState)
def stop(request: Request):
    return {"instance": _instance(request), **_probe(request).stop()}


@router.get("/top", response_model=Top, responses=errors(409))
def top(request: Request, limit: int = Query(10, ge=1, le=100),
        group_by: Literal["traceback", "lineno", "filename"] = Query("traceback")):
    found = _probe(request).top(limit, group_by)
    if found is None:
        raise Conflict("no baseline: POST /debug/memory/baseline first (it starts tracing)")
    return {"instance": _instance(request), **found}
