"""Each service's HTTP API fuzzed from its own OpenAPI document (schemathesis): valid and
invalid requests alike, and no answer is a server error."""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from lotline.devstack import SERVICE_MODULES

from support import OPERATOR_ENV

pytestmark = pytest.mark.infra

# Examples per operation and mode; FUZZ_EXAMPLES raises it for a longer local run.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SERVICES = tuple(SERVICE_MODULES)


def fuzz_operation(operation: Any, base_url: str, session: requests.Session) -> str | None:
    """Run one operation's examples; the first server error found, described, or None."""
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception:  # an operation with nothing to spoil has no negative examples
            continue

    @given(case=st.one_of(strategies))
    @hypothesis.settings(
        max_examples=EXAMPLES * len(strategies),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])

    try:
        fuzz()
    except Exception as failure:  # schemathesis reports its findings as an exception group
        return f"{operation.method.upper()} {operation.path}: {failure}"
    return None


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", SERVICES)
def test_no_input_makes_a_service_fail_with_a_server_error(  # type: ignore[no-untyped-def]
    name, start_service
) -> None:
    # The recall service refuses every change with a 503 until operators are configured (a
    # fault of its setup, not of the request), and answers a trace with a 503 naming the
    # service it could not reach: so it runs as in production, configured, with the three
    # services its traces are assembled from.
    env: dict[str, str] = {}
    if name == "recall":
        env = dict(OPERATOR_ENV)
        for other, variable in (
            ("catalog", "CATALOG_URL"),
            ("stock", "STOCK_URL"),
            ("serial-registry", "SERIALS_URL"),
        ):
            env[variable] = start_service(other).url
    service = start_service(name, **env)
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    failures = []
    operations = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            failure = fuzz_operation(operation, service.url, session)
            if failure is not None:
                failures.append(failure)
    print(f"\n{name}: {operations} operations fuzzed, {len(failures)} with a server error")
    assert operations >= 3
    assert not failures, "\n\n".join(failures)
