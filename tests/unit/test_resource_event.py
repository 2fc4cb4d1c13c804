"""ResourceEvent.of: what the resource watch keeps of each object to decide a wake-up."""

from __future__ import annotations

from datetime import UTC, datetime

from oauth_token_operator.kube.resource_watch import ResourceEvent


def obj(status: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"uid": "u", "namespace": "ns", "name": "r", "resourceVersion": "7"}, "status": status}


def test_the_next_refresh_time_in_status_ranks_the_first_run_after_a_start() -> None:
    event = ResourceEvent.of("ADDED", obj({"expiresAt": "2026-12-01T11:00:00Z",
                                           "nextRefreshTime": "2026-12-01T10:40:00Z"}))
    assert event.holds_token
    assert event.next_refresh == datetime(2026, 12, 1, 10, 40, tzinfo=UTC).timestamp()
    assert ResourceEvent.of("ADDED", obj({})).next_refresh == 0.0
    assert ResourceEvent.of("ADDED", obj({"nextRefreshTime": "soon"})).next_refresh == 0.0, "unreadable: no rank"
