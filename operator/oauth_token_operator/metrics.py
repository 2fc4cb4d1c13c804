"""Prometheus metrics (names are a public contract in ``API.md``: alerts depend on them).

Labels carry reasons, hosts, namespaces and names only: never a client ID, secret or token. The per-resource
series are removed when the resource goes away, so a deleted resource does not page anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .reasons import Reason

__all__ = ["Metrics"]


class _ReadyCollector(Collector):
    def __init__(self, ready: dict[str, bool]) -> None:
        self._ready = ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("oauth_token_operator_resources",
                                   "OAuthClientCredential resources by Ready status.", labels=["ready"])
        ready = sum(1 for value in self._ready.values() if value)
        family.add_metric(["true"], ready)
        family.add_metric(["false"], len(self._ready) - ready)
        yield family


class Metrics:
    """All metrics of one operator process, in their own registry (tests can run several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.token_requests = Counter(
            "oauth_token_operator_token_requests", "Token requests by outcome reason and endpoint host.",
            ["reason", "host"], registry=self.registry)
        self.token_request_duration = Histogram(
            "oauth_token_operator_token_request_duration_seconds", "Duration of token requests.", ["host"],
            buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.token_expiry = Gauge(
            "oauth_token_operator_token_expiry_timestamp_seconds",
            "Unix time at which the token in the target Secret expires.", ["namespace", "name"],
            registry=self.registry)
        self.credentials_expiry = Gauge(
            "oauth_token_operator_credentials_expiry_timestamp_seconds",
            "Unix time at which the client secret expires, as the credentials Secret says (no series when it "
            "does not say).", ["namespace", "name"], registry=self.registry)
        self.consecutive_failures = Gauge(
            "oauth_token_operator_consecutive_failures", "Failed token requests since the last success.",
            ["namespace", "name"], registry=self.registry)
        self.kube_requests = Counter(
            "oauth_token_operator_kube_requests", "Kubernetes API requests made by the refresh logic, by verb and "
            "resource (the list and watch requests of the watches are not included).", ["verb", "resource"],
            registry=self.registry)
        self.events = Counter(
            "oauth_token_operator_events", "Events the operator posted about its resources, by type and reason.",
            ["type", "reason"], registry=self.registry)
        self.watch_objects = Counter(
            "oauth_token_operator_watched_objects", "Secret and ConfigMap metadata the operator's watches received "
            "(listed or changed), by kind and whether a resource references the object; only referenced ones "
            "are kept or acted on.", ["kind", "referenced"], registry=self.registry)
        self._ready: dict[str, bool] = {}
        self.registry.register(_ReadyCollector(self._ready))

    @staticmethod
    def host(url: str) -> str:
        return urlsplit(url).netloc.rsplit("@", 1)[-1] or "unknown"

    def observe_request(self, *, reason: Reason, url: str, seconds: float | None) -> None:
        host = self.host(url)
        self.token_requests.labels(reason=str(reason), host=host).inc()
        if seconds is not None:
            self.token_request_duration.labels(host=host).observe(seconds)

    def observe_resource(self, *, namespace: str, name: str, ready: bool, failures: int,
                         expires_at: float | None) -> None:
        self._ready[f"{namespace}/{name}"] = ready
        self.consecutive_failures.labels(namespace=namespace, name=name).set(failures)
        if expires_at is not None:
            self.token_expiry.labels(namespace=namespace, name=name).set(expires_at)

    def count_watched(self, kind: str, referenced: bool, count: int) -> None:
        """Called from the watch threads (prometheus_client counters are thread-safe)."""
        if count:
            self.watch_objects.labels(kind=kind, referenced=str(referenced).lower()).inc(count)
    def observe_credentials_expiry(self, *, namespace: str, name: str, expires_at: float | None) -> None:
        """Set the credentials expiry gauge, or drop its series when the Secret no longer says."""
        if expires_at is not None:
            self.credentials_expiry.labels(namespace=namespace, name=name).set(expires_at)
        else:
            try:
                self.credentials_expiry.remove(namespace, name)
            except KeyError:
                pass

    def forget_resource(self, *, namespace: str, name: str) -> None:
        self._ready.pop(f"{namespace}/{name}", None)
        for gauge in (self.consecutive_failures, self.token_expiry, self.credentials_expiry):
            try:
                gauge.remove(namespace, name)
            except KeyError:
                pass

    def serve(self, port: int) -> None:
        """Expose ``/metrics`` on all interfaces (a background thread of prometheus_client)."""
        start_http_server(port, registry=self.registry)
