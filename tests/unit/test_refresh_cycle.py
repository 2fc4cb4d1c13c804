"""The refresh cycle end to end in memory: every path, including the six faults testing found.

Fakes of the Kubernetes and token clients (``refresh_fakes``) keep the real contracts (versions, 409, 422);
each test runs in milliseconds. The e2e tests prove the same behaviour against the real API server.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from refresh_fakes import START, Harness, harness, resource

from oauth_token_operator.errors import EndpointUnavailable, InvalidTokenResponse
from oauth_token_operator.kube.target import DIGEST_ANNOTATION

JSON = dict[str, Any]


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def body(h: Harness, **spec: Any) -> JSON:
    generation = 1 + len(spec)
    return resource(status=h.kube.status.get(("ns", "r")), generation=generation, **spec)


async def test_first_run_issues_a_token_and_reports_it_everywhere() -> None:
    h = harness()
    due = await h.run(body(h))
    assert h.kube.secret_data("ns", "tok") == {"access_token": "token-1", "token_type": "Bearer",
                                               "expires_at": "2026-12-01T13:00:00Z"}
    ready = h.kube.ready()
    assert ready["status"] == "True" and ready["reason"] == "TokenIssued"
    assert h.kube.status[("ns", "r")]["tokenEndpoint"] == "https://idp.example/token"
    assert h.kube.event_reasons() == ["TokenIssued"]
    assert START + timedelta(minutes=30) < due < START + timedelta(minutes=45)


async def test_a_steady_refresh_reads_nothing_and_writes_twice() -> None:
    h = harness()
    due = await h.run(body(h))
    h.kube.calls.clear()
    h.clock.now = due
    await h.run(body(h))
    assert len(h.tokens.requests) == 2
    assert sorted(h.kube.calls) == [("patch", "oauthclientcredentials/status"), ("update", "secrets")]


async def test_finding_1_a_spec_edit_takes_effect_at_once() -> None:
    h = harness()
    await h.run(body(h))
    h.clock.advance(60)
    await h.run(body(h, tokenURL="https://fixed.example/token", scopes=["api:read"]))
    assert len(h.tokens.requests) == 2
    config = h.tokens.requests[-1]
    assert config.token_url == "https://fixed.example/token" and config.scopes == ("api:read",)
    assert h.kube.status[("ns", "r")]["tokenEndpoint"] == "https://fixed.example/token"


async def test_finding_2_a_tampered_target_is_repaired_without_a_new_token() -> None:
    h = harness()
    await h.run(body(h))
    secret = h.kube.objects[("Secret", "ns", "tok")]
    h.kube.put("Secret", "ns", "tok", {**secret, "data": {**secret["data"],
                                                          "access_token": base64.b64encode(b"garbage").decode()}})
    h.state.observe(("Secret", "tok"), h.kube.objects[("Secret", "ns", "tok")]["metadata"]["resourceVersion"])
    await h.run(body(h))
    assert (h.kube.secret_data("ns", "tok") or {})["access_token"] == "token-1"
    assert len(h.tokens.requests) == 1
    assert "TargetSecretRepaired" in h.kube.event_reasons()


async def test_finding_2_a_deleted_key_after_a_restart_gets_a_new_token() -> None:
    h = harness()
    await h.run(body(h))
    h.restart()
    secret = h.kube.objects[("Secret", "ns", "tok")]
    h.kube.put("Secret", "ns", "tok", {**secret, "data": {"token_type": secret["data"]["token_type"]}})
    await h.run(body(h))
    assert (h.kube.secret_data("ns", "tok") or {})["access_token"] == "token-2"
    assert DIGEST_ANNOTATION in h.kube.objects[("Secret", "ns", "tok")]["metadata"]["annotations"]


async def test_a_restart_with_a_fresh_token_requests_nothing() -> None:
    h = harness()
    await h.run(body(h))
    h.restart()
    h.clock.advance(60)
    await h.run(body(h))
    assert len(h.tokens.requests) == 1


async def test_a_restart_reads_no_target_that_is_as_our_last_write_left_it() -> None:
    h = harness()
    await h.run(body(h))
    written = h.kube.objects[("Secret", "ns", "tok")]["metadata"]["resourceVersion"]
    assert h.kube.status[("ns", "r")]["targetResourceVersion"] == written
    h.restart()
    h.kube.calls.clear()
    h.clock.advance(60)
    await h.run(body(h))
    assert h.kube.calls == [], "the listing showed the version our last write returned: nothing to read"
    assert len(h.tokens.requests) == 1
    h.clock.advance(3600)  # ...and the schedule it resumed is the token's: refreshed when due, written with PUT
    await h.run(body(h))
    assert len(h.tokens.requests) == 2
    assert ("update", "secrets") in h.kube.calls and ("create", "secrets") not in h.kube.calls


async def test_a_target_changed_while_the_operator_was_down_is_read_and_repaired() -> None:
    h = harness()
    await h.run(body(h))
    h.restart()
    secret = h.kube.objects[("Secret", "ns", "tok")]
    garbage = base64.b64encode(b"garbage").decode()
    h.kube.put("Secret", "ns", "tok", {**secret, "data": {**secret["data"], "access_token": garbage}})
    await h.run(body(h))
    assert ("get", "secrets") in h.kube.calls
    assert (h.kube.secret_data("ns", "tok") or {})["access_token"] == "token-2", "tampered: a new token"


async def test_a_status_from_before_target_versions_were_recorded_reads_the_target() -> None:
    h = harness()
    await h.run(body(h))
    del h.kube.status[("ns", "r")]["targetResourceVersion"]  # written by an older operator
    h.restart()
    h.kube.calls.clear()
    await h.run(body(h))
    assert h.kube.calls == [("get", "secrets")]
    assert len(h.tokens.requests) == 1


async def test_a_restart_with_a_fresh_token_counts_the_resource_in_the_metrics_at_once() -> None:
    # Without it the resources gauge of a restarted operator showed only the resources that refreshed since
    # (a dashboard saw most of them vanish for a refresh interval) and nothing could tell when a restart is over.
    h = harness()
    await h.run(body(h))
    expires = h.kube.status[("ns", "r")]["expiresAt"]
    h.restart()
    h.kube.calls.clear()
    h.clock.advance(60)
    await h.run(body(h))
    metrics = h.refresher.metrics
    assert metrics.registry.get_sample_value("oauth_token_operator_resources", {"ready": "true"}) == 1
    assert metrics.registry.get_sample_value("oauth_token_operator_resources", {"ready": "false"}) == 0
    assert metrics.registry.get_sample_value("oauth_token_operator_token_expiry_timestamp_seconds",
                                             {"namespace": "ns", "name": "r"}) == parse_time(expires).timestamp()
    assert not [call for call in h.kube.calls if call[0] != "get"]  # published, not written


async def test_finding_3_a_write_the_api_server_refuses_is_reported_once_and_not_retried_in_a_loop() -> None:
    h = harness()
    # The models accept any label value; the API server does not (the CRD cannot express every such rule).
    spec = {"target": {"secretName": "tok", "template": {"labels": {"team": "not a label!"}}}}
    due = await h.run(body(h, **spec))
    ready = h.kube.ready()
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "refused Secret ns/tok" in ready["message"] and "metadata.labels" in ready["message"]
    assert h.kube.event_reasons() == ["InvalidSpec"]
    for _ in range(3):  # woken again (or the recheck): no new token request, no new Event
        h.clock.now = max(h.clock.now, due)
        due = await h.run(body(h, **spec))
    assert len(h.tokens.requests) == 1
    assert h.kube.event_reasons() == ["InvalidSpec"]
    # Fixing the spec requests at once.
    await h.run(body(h, target={"secretName": "tok", "template": {"labels": {"team": "a"}}}, scopes=["x"]))
    assert h.kube.ready()["reason"] == "TokenIssued" and len(h.tokens.requests) == 2


async def test_finding_4_an_unusable_token_never_replaces_a_good_one() -> None:
    h = harness()
    due = await h.run(body(h))
    h.tokens.fail_with = InvalidTokenResponse("token endpoint answered 200 with an access_token containing "
                                              "non-ASCII characters")
    h.clock.now = due
    retry = await h.run(body(h))
    assert (h.kube.secret_data("ns", "tok") or {})["access_token"] == "token-1"
    ready = h.kube.ready()
    assert ready["reason"] == "InvalidTokenResponse" and "current token valid for" in ready["message"]
    assert h.clock.now < retry < h.clock.now + timedelta(seconds=30)


async def test_finding_5_an_api_outage_is_a_short_backoff_and_the_held_token_is_written_after_it() -> None:
    h = harness()
    due = await h.run(body(h))
    h.clock.now = due
    h.kube.down = True
    retry = await h.run(body(h))  # the token request succeeds, the Secret write does not
    assert len(h.tokens.requests) == 2
    assert h.clock.now < retry <= h.clock.now + timedelta(seconds=2)
    for _ in range(4):  # still down: backoff grows, never beyond 15 s (+20 % jitter), no new token requests
        h.clock.now = retry
        retry = await h.run(body(h))
        assert retry - h.clock.now <= timedelta(seconds=18)
    h.kube.down = False
    h.clock.now = retry
    await h.run(body(h))
    assert (h.kube.secret_data("ns", "tok") or {})["access_token"] == "token-2"
    assert len(h.tokens.requests) == 2, "the token obtained during the outage is the one written after it"
    assert h.kube.ready()["reason"] == "TokenIssued"


async def test_an_endpoint_outage_keeps_the_token_and_backs_off() -> None:
    h = harness()
    due = await h.run(body(h))
    h.tokens.fail_with = EndpointUnavailable("connection refused")

    async def attempt(at: datetime) -> tuple[datetime, datetime]:
        """Run from ``at`` until the next token request; (when it was sent, the retry it returned). The
        resource's own retry and its endpoint circuit's are jittered by different keys: when the circuit's
        comes later, the resource waits for it without sending anything."""
        sent = len(h.tokens.requests)
        while True:
            h.clock.now = at
            at = await h.run(body(h))
            if len(h.tokens.requests) > sent:
                return h.clock.now, at

    sent_first, first = await attempt(due)
    sent_second, second = await attempt(first)
    assert len(h.tokens.requests) == 3
    assert (second - sent_second) > (first - sent_first), "exponential backoff"
    assert h.kube.status[("ns", "r")]["consecutiveFailures"] == 2
    assert h.kube.event_reasons().count("EndpointUnavailable") == 1, "a repeated failure is said once"
    h.tokens.fail_with = None
    h.clock.now = second
    await h.run(body(h))
    assert h.kube.ready()["reason"] == "TokenIssued"
    assert h.kube.status[("ns", "r")]["consecutiveFailures"] == 0


async def test_missing_credentials_report_and_recovery_is_immediate() -> None:
    h = harness()
    del h.kube.objects[("Secret", "ns", "creds")]
    await h.run(body(h))
    assert h.kube.ready()["reason"] == "CredentialsNotFound"
    assert h.tokens.requests == []
    h.kube.put("Secret", "ns", "creds", {"data": {"client_id": base64.b64encode(b"id").decode(),
                                                  "client_secret": base64.b64encode(b"s").decode()}})
    h.state.observe(("Secret", "creds"), h.kube.objects[("Secret", "ns", "creds")]["metadata"]["resourceVersion"])
    await h.run(body(h))
    assert h.kube.ready()["reason"] == "TokenIssued"


async def test_a_secret_that_is_not_ours_is_never_touched() -> None:
    h = harness()
    h.kube.put("Secret", "ns", "tok", {"data": {"keep": base64.b64encode(b"me").decode()}})
    await h.run(body(h))
    assert h.kube.ready()["reason"] == "TargetSecretConflict"
    assert h.kube.secret_data("ns", "tok") == {"keep": "me"} and h.tokens.requests == []


async def test_an_unparseable_resource_is_reported_with_condition_event_and_metric() -> None:
    h = harness()
    broken = resource(extraParams={"grant_type": "password"})
    await h.run(broken)
    assert h.kube.ready()["reason"] == "InvalidSpec"
    assert h.kube.event_reasons() == ["InvalidSpec"]
    metrics = h.refresher.metrics
    assert metrics.registry.get_sample_value("oauth_token_operator_resources", {"ready": "false"}) == 1
    assert metrics.registry.get_sample_value("oauth_token_operator_events_total",
                                             {"type": "Warning", "reason": "InvalidSpec"}) == 1


async def test_rollout_restart_targets_are_ignored_and_said_so_unless_enabled() -> None:
    h = harness()
    await h.run(body(h, rolloutRestartTargets=[{"kind": "Deployment", "name": "app"}]))
    assert ("patch", "deployments") not in h.kube.calls
    assert "rolloutRestartTargets is ignored" in h.kube.ready()["message"]
    assert "RolloutRestartsDisabled" in h.kube.event_reasons()
    enabled = harness(enable_rollout_restarts=True)
    await enabled.run(body(enabled, rolloutRestartTargets=[{"kind": "Deployment", "name": "app"}]))
    assert ("patch", "deployments") in enabled.kube.calls


SA_SPEC: dict[str, Any] = {"clientID": "torch-app", "authMethod": "kubernetes_service_account",
                           "serviceAccountAssertion": {"serviceAccountName": "torch", "expirationSeconds": 600}}


def sa_body(h: Harness) -> JSON:
    body_ = body(h, **SA_SPEC)
    del body_["spec"]["clientCredentialsSecretRef"]
    return body_


async def test_a_service_account_that_did_not_opt_in_gets_nothing_minted() -> None:
    h = harness()
    h.kube.put("ServiceAccount", "ns", "torch", {"metadata": {"annotations": {}}})
    await h.run(sa_body(h))
    ready = h.kube.ready()
    assert ready["reason"] == "AssertionNotPermitted" and "oauth-token-operator.dev/token-audiences" in ready["message"]
    assert h.kube.minted == [] and h.tokens.requests == []
    assert h.kube.event_reasons() == ["AssertionNotPermitted"]


async def test_each_token_request_sends_a_freshly_minted_assertion_that_is_never_stored() -> None:
    h = harness()
    h.kube.put("ServiceAccount", "ns", "torch", {"metadata": {"annotations": {
        "oauth-token-operator.dev/token-audiences": "https://idp.example/token"}}})
    due = await h.run(sa_body(h))
    h.clock.now = due
    await h.run(sa_body(h))
    assert h.kube.minted == [("torch", "https://idp.example/token")] * 2
    sent = [c.client_assertion.get_secret_value() for c in h.tokens.requests if c.client_assertion]
    assert sent == ["MINTED-CANARY-1", "MINTED-CANARY-2"]
    everything = repr(h.kube.status) + repr(h.kube.events) + repr(h.kube.objects)
    assert "MINTED-CANARY" not in everything


async def test_credentials_that_expire_are_reported_as_a_second_condition_with_events_and_a_metric() -> None:
    h = harness()
    secret = h.kube.objects[("Secret", "ns", "creds")]
    soon = START + timedelta(days=3)
    h.kube.put("Secret", "ns", "creds", {"data": {**secret["data"], "client_secret_expires_at": base64.b64encode(
        str(int(soon.timestamp())).encode()).decode()}})
    await h.run(body(h))
    status = h.kube.status[("ns", "r")]
    assert status["credentialsExpireAt"] == "2026-12-04T12:00:00Z"
    expiring = next(c for c in status["conditions"] if c["type"] == "CredentialsExpiring")
    assert expiring["status"] == "True" and expiring["reason"] == "CredentialsExpiring"
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True", "the token is fine"
    assert h.kube.event_reasons().count("CredentialsExpiring") == 1
    gauge = h.refresher.metrics.registry.get_sample_value(
        "oauth_token_operator_credentials_expiry_timestamp_seconds", {"namespace": "ns", "name": "r"})
    assert gauge == soon.timestamp()
    # The date passes with nothing else happening: the operator wakes for it and says so once.
    h.clock.now = soon + timedelta(seconds=1)
    await h.run(body(h))
    expired = next(c for c in h.kube.status[("ns", "r")]["conditions"] if c["type"] == "CredentialsExpiring")
    assert expired["reason"] == "CredentialsExpired"
    assert h.kube.event_reasons().count("CredentialsExpired") == 1
    # A refusal after that date says why.
    from oauth_token_operator.errors import InvalidClient
    h.tokens.fail_with = InvalidClient("token endpoint answered 401 invalid_client")
    h.clock.now = soon + timedelta(hours=1)
    await h.run(body(h, scopes=["changed"]))
    assert "the client secret expired on 2026-12-04T12:00:00Z" in h.kube.ready()["message"]


async def test_the_expiry_window_wakes_the_worker_even_when_the_token_is_fresh() -> None:
    h = harness()
    secret = h.kube.objects[("Secret", "ns", "creds")]
    later = START + timedelta(days=7, minutes=20)  # the 7-day window starts in 20 min, before the refresh
    h.kube.put("Secret", "ns", "creds", {"data": {**secret["data"], "client_secret_expires_at": base64.b64encode(
        later.strftime("%Y-%m-%dT%H:%M:%SZ").encode()).decode()}})
    due = await h.run(body(h))
    assert due == START + timedelta(minutes=20)
