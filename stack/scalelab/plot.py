"""Small matplotlib helpers for load-test results.  Each returns a Figure.

    from scalelab import load, plot
    r = load.run(url, ["/health"], duration=5)
    plot.latency_cdf(r)        # how latency is distributed
    plot.timeline(r)           # throughput and latency second by second
    plot.ladder(load.ladder(url, ["/health"]))   # throughput/latency vs. users
    plot.around_stall({"ab": a, "vegeta": v})   # loadtools runs with a freeze: every request
    plot.rss({"leaking": samples, "bounded": other})   # a process's memory under load (lab 01)

The figures are made with matplotlib's object API (no global pyplot state),
so a cell that ends with ``plot.timeline(r)`` shows the chart exactly once.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.figure import Figure as _MplFigure
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from scalelab.load import LoadResult
from scalelab.loadtools import ToolResult

Measured = LoadResult | ToolResult   # Locust's runs and the command-line tools' (ab, vegeta)


class Figure(_MplFigure):
    """A matplotlib Figure that Jupyter renders inline as a PNG."""

    def _repr_png_(self):
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def legend_outside(ax, handles=None, **kw):
    """The legend to the right of the axes, never on the data (``ax.legend``'s keywords pass on).

    With ``handles`` (lines of a twin axis too) it is the figure's legend, right of both y axes:
    that needs a figure with ``layout="constrained"``."""
    kw = {"fontsize": "small", **kw}
    if handles is not None:
        return ax.figure.legend(handles=handles, loc="outside right upper", **kw)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)


def plain_ms(axis):
    """A log-scale axis labelled 1, 10, 100 (milliseconds as written), not 10^0, 10^1, 10^2."""
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())
    return axis


def _new(nrows=1, figsize=(7, 4), **kw):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, 1, squeeze=False, **kw)[:, 0]


def latency_cdf(results: dict[str, Measured] | Measured, ax=None):
    """Cumulative latency distribution: the fraction of requests that finished within x ms.

    Pass one result or ``{"label": result, ...}`` to compare runs.  The x axis is
    logarithmic, so both 1 ms and 1000 ms are readable; responses that took
    under 1 ms are drawn at 0.5 ms.
    """
    if isinstance(results, LoadResult | ToolResult):
        results = {results.label: results}
    if ax is None:
        fig, (ax,) = _new()
    else:
        fig = ax.figure
    for label, res in results.items():
        hist = pd.Series(res.response_times, dtype=float).sort_index()
        if hist.empty:
            continue
        x = [max(ms, 0.5) for ms in hist.index]
        ax.step(x, hist.cumsum() / hist.sum(), where="post", label=label)
    ax.set(xscale="log", ylim=(0, 1.02), xlabel="response time (ms, log scale)",
           ylabel="fraction of requests ≤ x", title="Latency CDF")  # fmt: skip
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="grey", lw=0.6, ls=":")
    plain_ms(ax.xaxis)  # 1, 10, 100 instead of 10^0, 10^1 ...
    ax.grid(True, which="both", alpha=0.3)
    legend_outside(ax)
    return fig


def around_stall(results: dict[str, ToolResult], slow_ms: float | None = None):
    """Each request's latency against when it was sent, in seconds from the freeze, the frozen span
    shaded; one panel per run. Each run's ``during`` is its freeze: ``(frozen_at, thawed_at)``, as
    ``time.time()`` (what a ``during`` action that froze a member returned). ``slow_ms`` draws the
    line above which a request counts as slow."""
    fig, axes = _new(len(results), figsize=(7, 2.2 * len(results)), sharex=True, sharey=True)
    for ax, (label, res) in zip(axes, results.items(), strict=True):
        frozen = res.during
        if not (isinstance(frozen, tuple) and len(frozen) == 2):
            raise ValueError(f"{label}: its during is {frozen!r}, not the freeze's (frozen_at, thawed_at)")
        frozen_at, thawed_at = float(frozen[0]), float(frozen[1])
        sent = res.started_at + res.latencies.start_s - frozen_at
        ax.plot(sent, res.latencies.latency_ms, ".", ms=3, alpha=0.6, label=label)
        ax.axvspan(0, thawed_at - frozen_at, color="tab:red", alpha=0.12, label="frozen")
        if slow_ms is not None:
            ax.axhline(slow_ms, color="grey", lw=0.8, ls="--", label=f"{slow_ms:g} ms")
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        legend_outside(ax)
    axes[-1].set_xlabel("request sent, seconds from the freeze")
    axes[0].set_title("Every request around the freeze")
    return fig


def ladder(df: pd.DataFrame):
    """Throughput (rps) and p95 latency against the number of concurrent users.

    ``df`` is what ``load.ladder`` returns (columns users, rps, p95_ms).
    Throughput that stops growing while latency climbs means the service is saturated.
    """
    fig, (ax,) = _new()
    ax.plot(df["users"], df["rps"], "o-", color="tab:blue", label="throughput (rps)")
    ax.set(xlabel="concurrent users", ylabel="requests / s", xscale="log", xticks=list(df["users"]),
           xticklabels=[str(u) for u in df["users"]], title="Throughput and latency vs. users")  # fmt: skip
    ax.minorticks_off()  # label only the user levels that were measured
    ax.tick_params(axis="y", labelcolor="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(df["users"], df["p95_ms"], "s--", color="tab:red", label="p95 latency (ms)")
    ax2.set_ylabel("p95 latency (ms)")
    ax2.tick_params(axis="y", labelcolor="tab:red")
    ax.set_ylim(bottom=0)  # both axes from zero, so small changes don't look dramatic
    ax2.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    legend_outside(ax, handles=ax.get_lines() + ax2.get_lines())
    return fig


def timeline(result_or_df: LoadResult | pd.DataFrame, columns=("rps", "p95_ms")):
    """One panel per column of the per-second timeline, against seconds since start."""
    df = result_or_df.timeline if isinstance(result_or_df, LoadResult) else result_or_df
    fig, axes = _new(len(columns), figsize=(7, 2.2 * len(columns)), sharex=True)
    for ax, col in zip(axes, columns, strict=True):
        ax.plot(df["t_s"], df[col], "o-", ms=3)
        ax.set_ylabel(col)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("seconds since start")
    axes[0].set_title("Timeline (one point per second)")
    return fig


def bars(df: pd.DataFrame, x: str, y: str, title: str = ""):
    """A plain bar chart of ``df[y]`` per ``df[x]``, e.g. ``bars(summaries, "label", "rps", "Throughput")``."""
    fig, (ax,) = _new()
    ax.bar(df[x].astype(str), df[y], color="tab:blue")
    ax.bar_label(ax.containers[0], fmt="%.4g", fontsize="small")
    ax.set(xlabel=x, ylabel=y, title=title)
    ax.tick_params(axis="x", labelrotation=20)
    return fig


def rss(curves: dict[str, pd.DataFrame]):
    """Resident memory (``rss_mb``) against seconds since each load began (``t_s``), one line per run:
    a leak climbs with every request, a bounded cache stays flat."""
    fig, (ax,) = _new()
    for label, df in curves.items():
        ax.plot(df["t_s"], df["rss_mb"], "o-", ms=3, label=label)
    ax.set(xlabel="seconds since the load began", ylabel="RSS (MB)", title="The service's resident memory under load")
    ax.set_ylim(bottom=0)   # from zero: a flat line looks flat
    ax.grid(True, alpha=0.3)
    legend_outside(ax)
    return fig
