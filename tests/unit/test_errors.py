"""Every concrete error says what happens next: reason, retry class, circuit effect, exit status."""

from __future__ import annotations

import pytest

from oauth_token_operator import errors
from oauth_token_operator.errors import Circuit, OperatorError, Retry
from oauth_token_operator.reasons import Reason


def _all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


CLASSES = sorted({c for c in _all_subclasses(OperatorError) if c.__module__ == errors.__name__},
                 key=lambda c: c.__name__)
# Intermediate classes only group; every error actually raised is one of their subclasses.
ABSTRACT = {errors.InputError, errors.TokenError, errors.TokenRequestRefused, errors.KubernetesError}


@pytest.mark.parametrize("cls", [c for c in CLASSES if c not in ABSTRACT], ids=lambda c: c.__name__)
def test_every_concrete_error_has_all_its_behaviour(cls: type[OperatorError]) -> None:
    assert isinstance(cls.reason, Reason)
    assert isinstance(cls.retry, Retry)
    assert isinstance(cls.circuit, Circuit)
    assert cls.exit_code in (errors.EXIT_BAD_INPUT, errors.EXIT_REFUSED, errors.EXIT_UNAVAILABLE)
    assert cls.__name__ in errors.__all__


def test_the_behaviour_table() -> None:
    assert errors.EndpointUnavailable.circuit is Circuit.OPEN and errors.EndpointUnavailable.transient
    assert errors.InvalidClient.circuit is Circuit.CLOSE and errors.InvalidClient.retry is Retry.REFUSED
    assert errors.CredentialsNotFound.circuit is Circuit.UNTOUCHED and errors.CredentialsNotFound.exit_code == 2
    assert errors.KubernetesUnavailable.retry is Retry.KUBERNETES and errors.KubernetesUnavailable.transient
    assert errors.KubernetesUnavailable.circuit is Circuit.UNTOUCHED, "the API server is not the token endpoint"
    assert errors.TargetSecretRejected.reason is Reason.INVALID_SPEC


def test_a_class_that_forgets_a_behaviour_is_caught() -> None:
    class Forgetful(errors.TokenError):
        reason = Reason.ENDPOINT_UNAVAILABLE

    with pytest.raises(AttributeError):
        _ = Forgetful.retry
