"""Prometheus metrics of the API (text exposition format on ``/metrics``).

Each app gets its own registry, so two apps in one process (tests) never share counters.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Buckets sized for a request that should take ~1-5 ms, with a tail up to 1 s.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServingMetrics:
    """Counters and histograms updated by the app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "ecaug_http_requests", "HTTP requests by route and status code.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "ecaug_http_request_duration_seconds",
            "Time spent in the handler, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "ecaug_recommend_stage_seconds",
            "Time of each /recommend stage (features, encode, search).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "ecaug_recommend_fallbacks", "Answers not produced by the model, by reason.", ["reason"], registry=r
        )
        self.feature_store_up = Gauge(
            "ecaug_feature_store_up", "1 if the last online feature read succeeded.", registry=r
        )
        self.reloads = Counter(
            "ecaug_model_reloads", "Model (re)loads by result (ok, error).", ["result"], registry=r
        )
        self.index_items = Gauge("ecaug_index_items", "Items in the served FAISS index.", registry=r)
        self.model_loaded_at = Gauge(
            "ecaug_model_loaded_timestamp_seconds", "Unix time the served model was loaded.", registry=r
        )
        self.feature_store_up.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
