"""Prometheus metrics: jobs by state, queue depth, seconds per face, HTTP requests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from facecloak.contract.store import JobStore
from service.dispatch import Dispatcher

log = logging.getLogger(__name__)
disable_created_metrics()


class _StateCollector(Collector):
    """Reads the job store and the queues at scrape time."""

    def __init__(self, store: JobStore, dispatcher: Dispatcher) -> None:
        self.store, self.dispatcher = store, dispatcher

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("facecloak_jobs", "Jobs by status.", labels=["status"])
        for status in ("queued", "running", "succeeded", "failed", "canceled"):
            jobs.add_metric([status], self._safe(lambda: self.store.counts()).get(status, 0))
        yield jobs
        depth = GaugeMetricFamily("facecloak_queue_depth", "Tasks waiting.", labels=["queue"])
        for queue, n in self._safe(self.dispatcher.queue_depth).items():
            depth.add_metric([queue], n)
        yield depth
        stats = self._safe(self.store.stats)
        faces, seconds = stats.get("faces", 0.0), stats.get("face_seconds", 0.0)
        yield CounterMetricFamily("facecloak_faces_protected", "Faces protected.", value=faces)
        yield CounterMetricFamily(
            "facecloak_protect_seconds", "Seconds spent on protected photos.", value=seconds
        )
        yield GaugeMetricFamily(
            "facecloak_seconds_per_face",
            "Mean seconds per protected face.",
            value=seconds / faces if faces else 0.0,
        )

    @staticmethod
    def _safe(fn: Any) -> Any:
        try:
            return fn()
        except Exception:
            log.warning("metrics: backend unreachable", exc_info=True)
            return {}


class Metrics:
    """A registry per app (so tests can build several apps)."""

    def __init__(self, store: JobStore, dispatcher: Dispatcher) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(store, dispatcher))
        self.requests = Counter(
            "facecloak_http_requests",
            "HTTP requests.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facecloak_http_request_seconds",
            "HTTP request latency.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
        )
