"""``GET /metrics`` of an HTTP gym server: its counters in the Prometheus text format, via ``prometheus_client``.

The counters themselves live where they are counted (:class:`mcp_gyms.episode_manager.Metrics`, the sandbox pool's
:class:`~mcp_gyms.sandbox.PoolStats`); this module only reads them at scrape time through a custom collector,
so the call path pays nothing for metrics it does not already keep. Each server process exposes its own
counters (with ``codegym serve --procs N`` scrape every process's ``/metrics``: they are not summed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .constants import ErrorKind
from .episode_manager import Metrics
from .protocol import METHOD_START

if TYPE_CHECKING:
    from .episode_manager import EpisodeManager

__all__ = ["PROMETHEUS_CONTENT_TYPE", "prometheus_text"]

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST
_ENDED_REASONS = ("done", "truncated", "closed", "idle", "shutdown")
_HOT_PATH_METHODS = ("tools/call", METHOD_START)


class _ManagerCollector:
    """Reads one :class:`EpisodeManager` (and its sandbox pool) when the registry is scraped."""

    def __init__(self, manager: EpisodeManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        manager, m, stats = self.manager, self.manager.metrics, self.manager.pool.stats
        health = manager.health()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        def labelled(name: str, doc: str, label: str, values: dict[str, float]) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=[label])
            for key, value in values.items():
                family.add_metric([key], value)
            return family

        yield gauge("codegym_episodes_open", "Episodes open now.", health["episodes_open"])
        yield gauge("codegym_episodes_max", "Cap on open episodes.", manager.max_episodes)
        yield counter("codegym_episodes_started", "Episodes started.", m.episodes_started)
        yield labelled("codegym_episodes_ended", "Episodes ended, by reason.", "reason",
                       {r: m.episodes_ended.get(r, 0) for r in _ENDED_REASONS})
        yield counter("codegym_tool_calls", "Tool calls run in the sandbox.", m.calls)
        yield labelled("codegym_hot_path_requests",
                       "Requests answered by codegym's HTTP hot path, by method (the others went through the MCP SDK).",
                       "method", {method: m.hot_path_requests.get(method, 0) for method in _HOT_PATH_METHODS})
        yield labelled("codegym_tool_call_errors", "Tool calls that returned an error, by kind.", "kind",
                       dict(sorted(m.call_errors.items())) or {"none": 0})
        yield counter("codegym_tool_call_timeouts", "Tool calls stopped at the time limit.",
                      m.call_errors.get(ErrorKind.TIME_LIMIT, 0))
        yield labelled("codegym_requests_rejected", "Requests refused before reaching a gym, by reason.", "reason",
                       dict(sorted(m.rejected.items())) or {"none": 0})
        yield counter("codegym_oracle_runs", "Oracle plays requested.", m.oracle_runs)
        yield gauge("codegym_gyms_loaded", "Gyms loaded (of the bank's).", health["gyms_loaded"])
        yield gauge("codegym_sandbox_workers", "Live sandbox worker processes.", health["live_workers"])
        yield counter("codegym_sandbox_timeouts", "Sandbox requests stopped at a wall-time limit.", stats.timeouts)
        yield counter("codegym_sandbox_worker_restarts", "Sandbox workers replaced.", stats.worker_restarts)
        yield counter("codegym_sandbox_replays", "Episodes rebuilt on a fresh worker.", stats.replays)
        yield counter("codegym_sandbox_retries",
                      "Calls run again on a fresh worker after their worker died of something they did not cause.",
                      stats.retries)
        yield counter("codegym_sandbox_evictions", "Idle sandbox workers stopped at the worker cap.", stats.evictions)
        cumulative, buckets = 0, []
        for bound, count in zip(Metrics.BUCKETS, m.latency_counts):
            cumulative += count
            buckets.append((f"{bound:g}", cumulative))
        buckets.append(("+Inf", cumulative + m.latency_counts[-1]))
        yield HistogramMetricFamily("codegym_tool_call_duration_seconds",
                                    "Latency of tool calls (sandbox round trip included).",
                                    buckets=buckets, sum_value=m.latency_sum)


def prometheus_text(manager: EpisodeManager) -> bytes:
    """The Prometheus text exposition of ``manager``'s counters (serve it as :data:`PROMETHEUS_CONTENT_TYPE`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ManagerCollector(manager))
    return generate_latest(registry)
