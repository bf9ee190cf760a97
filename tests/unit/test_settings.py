"""Settings: a bad value stops start-up with a message that names the variable."""

from __future__ import annotations

import pytest

from services.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TICKETING_PORT": "70000"}, "TICKETING_PORT"),
        ({"TICKETING_PORT": "eighty"}, "TICKETING_PORT"),
        ({"TICKETING_WORKERS": "0"}, "TICKETING_WORKERS"),
        ({"TICKETING_ATTACHMENT_MAX_BYTES": "-1"}, "TICKETING_ATTACHMENT_MAX_BYTES"),
        ({"TICKETING_BODY_MAX_BYTES": "0"}, "TICKETING_BODY_MAX_BYTES"),
        ({"TICKETING_POOL_MIN_SIZE": "20"}, "TICKETING_POOL_MIN_SIZE"),
        ({"TICKETING_POOL_MIN_SIZE": "0"}, "TICKETING_POOL_MIN_SIZE"),
        ({"TICKETING_LOG_LEVEL": "bogus"}, "TICKETING_LOG_LEVEL"),
        ({"TICKETING_RATE_LIMIT_PER_MINUTE": "-5"}, "TICKETING_RATE_LIMIT_PER_MINUTE"),
        ({"TICKETING_TIMEZONE": "Mars/Olympus"}, "TICKETING_TIMEZONE"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_the_defaults_and_sensible_values_pass() -> None:
    s = load_settings({"TICKETING_LOG_LEVEL": "debug", "TICKETING_POOL_MAX_SIZE": "2"})
    assert (s.port, s.workers, s.pool_min_size, s.pool_max_size) == (8000, 1, 2, 2)
