"""A small client of Prometheus' HTTP API (lab 07): PromQL answers as pandas DataFrames.

    from scalelab import promql
    prom = promql.Prometheus(stack.url("prometheus"))
    prom.query('up')                                    # one row per series: its labels and value
    prom.query_range(P95, start, end, step="1s")        # long form: t, value and the labels
    prom.alerts()                                       # the alerts pending or firing now
    prom.targets()                                      # what it scrapes and whether each is up

A query Prometheus rejects raises ``PromQLError`` with Prometheus' own message.
"""


import httpx
import pandas as pd

from scalelab.errors import ScalelabError
from scalelab.waiting import wait_until


class PromQLError(ScalelabError):
    """Prometheus refused a query (bad PromQL) or answered with an error."""


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, **params) -> dict:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        try:
            body = answer.json()
        except ValueError as exc:
            raise PromQLError(f"{path} answered {answer.status_code}: {answer.text[:200]}") from exc
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType', 'error')}: {body.get('error', answer.text[:200])}")
        return body["data"]

    # -- PromQL ------------------------------------------------------------------------------
    def query(self, expr: str, at: float | None = None) -> pd.DataFrame:
        """An instant query: one row per series (its labels as columns, and ``value``)."""
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        data = self._get("/api/v1/query", **params)
        if data["resultType"] == "scalar":
            return pd.DataFrame([{"value": float(data["result"][1])}])
        rows = [{**series["metric"], "value": float(series["value"][1])} for series in data["result"]]
        return pd.DataFrame(rows, columns=sorted({k for r in rows for k in r} - {"value"}) + ["value"])

    def value(self, expr: str, default: float = float("nan")) -> float:
        """The single number an expression gives (e.g. a sum), or ``default`` when it is empty."""
        frame = self.query(expr)
        if frame.empty:
            return default
        if len(frame) > 1:
            raise PromQLError(f"{expr!r} gave {len(frame)} series, expected one (aggregate it, e.g. sum(...))")
        return float(frame["value"].iloc[0])

    def query_range(self, expr: str, start: float, end: float, step: str | float = "1s") -> pd.DataFrame:
        """A range query in long form: columns ``t`` (datetime), ``value`` and the series labels."""
        data = self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)
        rows = [{**series["metric"], "t": pd.to_datetime(ts, unit="s"), "value": float(value)}
                for series in data["result"] for ts, value in series["values"]]
        labels = sorted({k for r in rows for k in r} - {"t", "value"})
        return pd.DataFrame(rows, columns=["t", *labels, "value"])

    # -- the server's state ----------------------------------------------------------------------
    def targets(self) -> pd.DataFrame:
        rows = [{"instance": t["labels"].get("instance"), "service": t["labels"].get("service"),
                 "url": t["scrapeUrl"], "health": t["health"], "last_error": t.get("lastError") or ""}
                for t in self._get("/api/v1/targets", state="active")["activeTargets"]]
        return pd.DataFrame(rows, columns=["instance", "service", "url", "health", "last_error"])

    def alerts(self) -> pd.DataFrame:
        rows = [{"alert": a["labels"].get("alertname"), "state": a["state"],
                 "instance": a["labels"].get("instance", ""), "active_at": a.get("activeAt"), "value": a.get("value")}
                for a in self._get("/api/v1/alerts")["alerts"]]
        return pd.DataFrame(rows, columns=["alert", "state", "instance", "active_at", "value"])

    def rules(self) -> pd.DataFrame:
        """Every loaded rule: its group, name, health (``ok``/``err``/``unknown``) and last error."""
        rows = [{"group": g["name"], "name": r["name"], "type": r["type"], "health": r.get("health"),
                 "state": r.get("state", ""), "query": r["query"], "last_error": r.get("lastError") or ""}
                for g in self._get("/api/v1/rules")["groups"] for r in g["rules"]]
        return pd.DataFrame(rows, columns=["group", "name", "type", "health", "state", "query", "last_error"])

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.5):
        """Poll ``predicate(self)`` until it returns something other than None or False (returned),
        at most ``timeout`` seconds."""
        return wait_until(lambda: predicate(self), timeout, interval=poll,   # polling Prometheus' evaluation
                          done=lambda found: found is not None and found is not False, error=ScalelabError,
                          on_timeout=f"waited {timeout:.0f} s for {what}")
