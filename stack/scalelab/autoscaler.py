"""Autoscaling a service on CPU: the HorizontalPodAutoscaler's spec, and a model of its controller.

    spec = HpaSpec(service="users", min_replicas=1, max_replicas=4, target_cpu_utilization=50)
    scaler = stack.autoscale(spec, desired_replicas)     # the learner's function (lab 06)
    ... load ...
    scaler.stop(); scaler.history()                      # one row per sync

On ``kind`` the real HPA scales the Deployment (runtimes/kind.py). On ``local`` and
``compose`` there is no Kubernetes: ``ModelAutoscaler`` is the driver's MODEL of the HPA
controller — a thread that every ``period_s`` reads each replica's CPU time, computes the
utilization against the replica's CPU request, asks ``desired_replicas`` (the learner's
function) for a recommendation, applies the scale-down stabilization window as the HPA
does, clamps to [min, max] and calls ``runtime.scale(service, n)``. nginx re-routes on scale.
"""

from __future__ import annotations

import numbers
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

HISTORY_COLUMNS = ["t_s", "replicas", "cpu_utilization", "desired_by_you", "decided", "note"]


@dataclass(frozen=True)
class HpaSpec:
    service: str = "users"
    min_replicas: int = 1
    max_replicas: int = 4
    target_cpu_utilization: int = 50     # percent of each replica's CPU request (HPA averageUtilization)
    cpu_request_millicores: int = 200    # a replica's CPU request: 100 % utilization = 0.2 CPU
    tolerance: float = 0.1
    scale_down_stabilization_s: int = 30  # behavior.scaleDown.stabilizationWindowSeconds
    period_s: float = 5.0                # the model loop's period (the real HPA syncs every 15 s)

    def __post_init__(self):
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {self.min_replicas}..{self.max_replicas}")
        if self.target_cpu_utilization <= 0 or self.cpu_request_millicores <= 0:
            raise ValueError("target_cpu_utilization and cpu_request_millicores must be > 0")
        if self.period_s <= 0 or self.scale_down_stabilization_s < 0:
            raise ValueError("period_s must be > 0 and scale_down_stabilization_s >= 0")


class Autoscaler(Protocol):
    is_model: bool    # True: the driver's loop calling desired_replicas(); False: Kubernetes' HPA

    def start(self) -> Autoscaler: ...

    def stop(self) -> None: ...

    def history(self) -> pd.DataFrame:
        """One row per sync: t_s, replicas (running), cpu_utilization (% of request, mean over
        ready replicas), desired_by_you (the learner's function on those metrics), decided
        (what the autoscaler set: the model's decision, or the HPA's desiredReplicas)."""


def stabilized(current: int, recommendation: int, recent: list[tuple[float, int]], now: float,
               window_s: float) -> int:
    """The HPA's scale-down stabilization: scale down only to the HIGHEST recommendation of the
    last ``window_s`` seconds (so a short dip does not remove replicas); scale up at once
    (the scale-up window is 0 s by default). ``recent`` holds (time, recommendation) pairs."""
    in_window = [rec for t, rec in recent if now - t <= window_s] + [recommendation]
    if recommendation > current:
        return recommendation
    return min(current, max(in_window))


class ModelAutoscaler:
    """The driver's model of the HPA controller for runtimes without Kubernetes.

    Needs from the runtime: ``members(service)``, ``cpu_seconds(member)`` (cumulative CPU
    time of the member, seconds) and ``scale(service, n)``.
    """

    is_model = True

    def __init__(self, runtime, spec: HpaSpec, desired_replicas: Callable):
        self.runtime, self.spec, self.desired_replicas = runtime, spec, desired_replicas
        self._rows: list[dict] = []
        self._recent: list[tuple[float, int]] = []            # (t, recommendation) for stabilization
        self._last: dict[str, tuple[float, float]] = {}        # member -> (wall time, cpu seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.errors: list[str] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> ModelAutoscaler:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._t0 = time.monotonic()
        self._sample()                      # the first CPU readings: utilization needs two
        self._thread = threading.Thread(target=self._loop, name=f"model-hpa-{self.spec.service}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)   # a scale in progress finishes first (bounded)
            self._thread = None

    def __enter__(self) -> ModelAutoscaler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._rows), columns=HISTORY_COLUMNS)

    def replicas(self) -> int:
        return len(self.runtime.members(self.spec.service))

    # -- the control loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        next_at = time.monotonic() + self.spec.period_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.spec.period_s
            try:
                self.sync()
            except Exception as exc:   # keep the loop alive; the error is recorded and shown
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._rows.append({"t_s": round(time.monotonic() - self._t0, 2), "replicas": self.replicas(),
                                   "cpu_utilization": None, "desired_by_you": None, "decided": None,
                                   "note": f"error: {type(exc).__name__}: {exc}"[:200]})
            if next_at < time.monotonic():          # a slow scale: skip the missed ticks
                next_at = time.monotonic() + self.spec.period_s

    def _read(self, member: str) -> tuple[float, float] | None:
        """(when, cumulative CPU seconds) of one member, or None while it cannot be read."""
        try:
            cpu = self.runtime.cpu_seconds(member)
        except Exception:        # noqa: BLE001 — a member being started or stopped: not ready, not counted
            return None
        return time.monotonic(), cpu    # taken when the reading arrived (the engine's stats API takes ~1 s)

    def _sample(self) -> dict[str, float]:
        """Utilization (% of the request) of every member that has a previous reading.
        Members are read in parallel: one slow reading must not stretch the period."""
        request_cores = self.spec.cpu_request_millicores / 1000
        members = self.runtime.members(self.spec.service)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(members)))) as pool:
            readings = dict(zip(members, pool.map(self._read, members), strict=True))
        utilization = {}
        for member, reading in readings.items():
            if reading is None:
                self._last.pop(member, None)
                continue
            now, cpu = reading
            if member in self._last:
                t_prev, cpu_prev = self._last[member]
                if now > t_prev and cpu >= cpu_prev:      # (a restarted member's counter starts over)
                    utilization[member] = 100 * (cpu - cpu_prev) / (now - t_prev) / request_cores
            self._last[member] = (now, cpu)
        for gone in set(self._last) - set(members):
            del self._last[gone]
        return utilization

    def sync(self) -> None:
        """One reconcile: measure, ask the learner's function, stabilize, clamp, scale."""
        spec = self.spec
        utilization = self._sample()
        current = len(self.runtime.members(spec.service))
        metric = round(sum(utilization.values()) / len(utilization), 1) if utilization else None
        now = time.monotonic()
        proposed = self.desired_replicas(current, metric, spec.target_cpu_utilization, spec.tolerance,
                                         spec.min_replicas, spec.max_replicas)
        note = ""
        if not isinstance(proposed, numbers.Integral) or isinstance(proposed, bool):
            raise TypeError(f"desired_replicas returned {proposed!r}, not an int")
        proposed = int(proposed)
        recommendation = max(spec.min_replicas, min(spec.max_replicas, proposed))
        if recommendation != proposed:
            note = f"clamped {proposed} to {recommendation}"
        decided = stabilized(current, recommendation, self._recent, now, spec.scale_down_stabilization_s)
        if decided > recommendation:
            note = f"scale-down held by the {spec.scale_down_stabilization_s} s window"
        self._recent = [(t, r) for t, r in self._recent if now - t <= spec.scale_down_stabilization_s]
        self._recent.append((now, recommendation))
        self._rows.append({"t_s": round(now - self._t0, 2), "replicas": current, "cpu_utilization": metric,
                           "desired_by_you": proposed, "decided": decided, "note": note})
        if decided != current:
            self.runtime.scale(spec.service, decided)
            new = [m for m in self.runtime.members(spec.service) if m not in self._last]
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(new)))) as pool:
                for member, reading in zip(new, pool.map(self._read, new), strict=True):
                    if reading is not None:          # new members: utilization from now on
                        self._last[member] = reading

