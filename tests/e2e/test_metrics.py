"""What Prometheus scrapes from ``/metrics`` after a success and a failure: the names and labels of API.md,
with values that agree with what the resources' status says, and nothing left behind for deleted resources."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.support.authserver import AuthServer
from tests.support.kube import Kube, wait_for
from tests.support.operator_process import OperatorProcess

PREFIX = "oauth_token_operator_"


def samples(operator: OperatorProcess) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(operator.metrics())
            if family.name.startswith(PREFIX) for sample in family.samples]


def find(found: list[Sample], metric: str, /, **labels: str) -> list[Sample]:
    return [s for s in found if s.name == PREFIX + metric and all(s.labels.get(k) == v for k, v in labels.items())]


def value(found: list[Sample], metric: str, /, **labels: str) -> float | None:
    matching = find(found, metric, **labels)
    assert len(matching) <= 1, f"{metric}{labels} matches several series: {matching}"
    return matching[0].value if matching else None


def spec(token_url: str, creds: str, target: str) -> dict[str, Any]:
    return {"tokenURL": token_url, "clientCredentialsSecretRef": {"name": creds}, "target": {"secretName": target}}


def test_metrics_after_a_success_and_a_failure(
        kube: Kube, auth_server: AuthServer, operator: OperatorProcess, namespace: str, client_id: str) -> None:
    auth_server.add_client(client_id, secret="right")
    kube.apply_secret(namespace, "good-creds", {"client_id": client_id, "client_secret": "right"})
    kube.apply_secret(namespace, "bad-creds", {"client_id": client_id, "client_secret": "wrong"})
    kube.create_occ(namespace, "good", spec(auth_server.token_url, "good-creds", "good-token"))
    kube.create_occ(namespace, "bad", spec(auth_server.token_url, "bad-creds", "bad-token"))
    wait_for(lambda: kube.ready(namespace, "good").get("reason") == "TokenIssued"
             and kube.ready(namespace, "bad").get("reason") == "InvalidClient", message="one Ready, one failing")
    host = f"127.0.0.1:{auth_server.port}"

    def reported() -> list[Sample]:  # empty (falsy) until both resources are counted
        found = samples(operator)
        settled = (value(found, "resources", ready="true") == 1 and value(found, "resources", ready="false") == 1)
        return found if settled else []

    found = wait_for(reported, message="both resources counted in oauth_token_operator_resources")

    # Requests by outcome and host: what an error-rate alert is built on.
    assert (value(found, "token_requests_total", reason="TokenIssued", host=host) or 0) >= 1
    assert (value(found, "token_requests_total", reason="InvalidClient", host=host) or 0) >= 1
    assert {s.labels["reason"] for s in find(found, "token_requests_total")} <= {
        "TokenIssued", "InvalidClient", "TokenRequestRejected", "EndpointUnavailable", "InvalidTokenResponse"}
    for sample in find(found, "token_requests_total"):
        assert set(sample.labels) == {"reason", "host"}, "labels never carry a client ID or secret"

    # Request duration: a histogram per host, counting both requests.
    count = value(found, "token_request_duration_seconds_count", host=host) or 0
    assert count >= 2
    assert value(found, "token_request_duration_seconds_bucket", host=host, le="+Inf") == count
    total = value(found, "token_request_duration_seconds_sum", host=host) or 0
    assert 0 < total < 10 * count, "a loopback token request takes well under 10 s"

    # Per-resource series agree with the status users read.
    good = (kube.get_occ(namespace, "good") or {})["status"]
    bad = (kube.get_occ(namespace, "bad") or {})["status"]
    expires = datetime.fromisoformat(good["expiresAt"].replace("Z", "+00:00")).timestamp()
    expiry = value(found, "token_expiry_timestamp_seconds", namespace=namespace, name="good")
    assert expiry is not None and abs(expiry - expires) < 1.0, (expiry, good["expiresAt"])
    assert value(found, "token_expiry_timestamp_seconds", namespace=namespace, name="bad") is None, (
        "a resource that never got a token has no expiry")
    assert value(found, "consecutive_failures", namespace=namespace, name="good") == 0
    failures = value(found, "consecutive_failures", namespace=namespace, name="bad")
    assert failures is not None and failures >= 1
    assert failures == bad["consecutiveFailures"]

    # Deleting a resource removes its series: a deleted resource must not keep an alert firing.
    kube.delete_occ(namespace, "bad")

    def bad_forgotten() -> list[Sample]:
        now = samples(operator)
        gone = (not find(now, "consecutive_failures", namespace=namespace, name="bad")
                and value(now, "resources", ready="false") == 0)
        return now if gone else []

    after = wait_for(bad_forgotten, message="the deleted resource's series removed")
    assert value(after, "resources", ready="true") == 1
    assert value(after, "consecutive_failures", namespace=namespace, name="good") == 0

    kube.delete_occ(namespace, "good")

    def good_forgotten() -> list[Sample]:
        now = samples(operator)
        gone = (not find(now, "token_expiry_timestamp_seconds", namespace=namespace)
                and value(now, "resources", ready="true") == 0)
        return now if gone else []

    final = wait_for(good_forgotten, message="the second deleted resource's series removed")
    assert not find(final, "consecutive_failures", namespace=namespace)
    # Counters are history, not state: they stay.
    assert (value(final, "token_requests_total", reason="TokenIssued", host=host) or 0) >= 1
