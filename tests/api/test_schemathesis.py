"""Property-based conformance: schemathesis drives every documented native operation of
the live server with a valid admin token; no 5xx and no response that breaks the schema.

(schemathesis' pytest plugin does not work with this pytest version, so the operations
are driven through hypothesis directly; the checks are the same.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NATIVE = r"^/(v1/(tickets|categories|attachments)|health|metrics)"
MAX_EXAMPLES = 12


def test_native_api_conforms_to_its_schema(live_url: str, token: Callable[..., str]) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/schema/openapi.json")
    headers = {"Authorization": f"Bearer {token('schemathesis-admin', 'admin')}"}
    failures: list[str] = []
    operations = 0
    for result in schema.include(path_regex=NATIVE).get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(base_url=live_url, headers=headers, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect all, report together
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 15, f"only {operations} operations found"
    assert not failures, "\n\n".join(failures)
