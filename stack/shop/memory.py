"""What this process holds in memory: its RSS, and tracemalloc's allocation sites since a baseline.

Lab 01 reads it over HTTP (``GET /debug/memory``, shop/api/routes/debug.py), the same way on
every runtime: the numbers are the member's own, measured inside it.
"""

import resource
import sys
import tracemalloc
from pathlib import Path

STATUS = Path("/proc/self/status")
# Allocations made by the measuring itself are not the service's.
OWN_FILES = (tracemalloc.__file__, "<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>",
             "<unknown>")


def rss_bytes() -> tuple[int, str]:
    """(resident set size in bytes, where it was read): VmRSS from /proc, else getrusage's peak."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024, "/proc/self/status VmRSS"
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss    # KiB on Linux, bytes on macOS
    return peak * (1 if sys.platform == "darwin" else 1024), "getrusage ru_maxrss (the peak, not the current)"


class MemoryProbe:
    """tracemalloc started on demand (it slows every allocation), one baseline snapshot to compare to."""

    def __init__(self):
        self.baseline: tracemalloc.Snapshot | None = None
        self.frames = 0

    def state(self) -> dict:
        rss, source = rss_bytes()
        tracing = tracemalloc.is_tracing()
        traced, peak = tracemalloc.get_traced_memory() if tracing else (None, None)
        return {"rss_bytes": rss, "rss_source": source, "tracing": tracing, "frames": self.frames if tracing else 0,
                "traced_bytes": traced, "traced_peak_bytes": peak, "baseline": self.baseline is not None}

    def start(self, frames: int) -> dict:
        """Trace every new allocation with ``frames`` frames of its call stack; the baseline is now.

        Tracing sees only what is allocated after it started: to compare a state to a later one,
        start it, let the first state build up, then take the baseline again (it keeps tracing)."""
        if tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() != frames:
            tracemalloc.stop()
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        self.frames = frames
        self.baseline = self._snapshot()
        return self.state()

    def stop(self) -> dict:
        self.baseline = None
        tracemalloc.stop()
        return self.state()

    def top(self, limit: int, group_by: str) -> dict | None:
        """The allocation sites that grew most since the baseline (None: no baseline taken)."""
        if self.baseline is None or not tracemalloc.is_tracing():
            return None
        stats = self._snapshot().compare_to(self.baseline, group_by)
        stats.sort(key=lambda s: s.size_diff, reverse=True)
        return {"group_by": group_by, "frames": self.frames,
                "total_size_diff_bytes": sum(s.size_diff for s in stats),
                "top": [_stat(s) for s in stats[:limit]]}

    @staticmethod
    def _snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, f) for f in OWN_FILES])


def _stat(stat: tracemalloc.StatisticDiff) -> dict:
    frames = [{"file": f.filename, "line": f.lineno} for f in reversed(stat.traceback)]   # most recent first
    return {"size_diff_bytes": stat.size_diff, "size_bytes": stat.size, "count_diff": stat.count_diff,
            "count": stat.count, "traceback": frames,
            "where": f"{frames[0]['file']}:{frames[0]['line']}" if frames else "?"}
