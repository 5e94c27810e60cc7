"""query_api.settings: read from the environment once, validated."""

from __future__ import annotations

import pytest

from query_api.errors import ConfigError
from query_api.settings import Settings

pytestmark = pytest.mark.unit


def test_settings_come_from_the_environment() -> None:
    s = Settings.from_env({"DATABASE_URL": "sqlite:///x.db", "QUERY_API_TOKENS": " a, b ,,",
                           "QUERY_API_ENV": "Production", "BUSINESS_TIMEZONE": "Asia/Seoul"})
    assert s.tokens == ("a", "b") and s.production and s.database_url == "sqlite:///x.db"
    assert Settings.from_env({}).database_url == "sqlite:///./delivery_read_model.db"
    for env in ({"BUSINESS_TIMEZONE": "Mars/Base"}, {"QUERY_API_ENV": "staging"},
                {"QUERY_API_PORT": "eighty"}, {"QUERY_API_ALLOW_UNAUTHENTICATED": "maybe"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)


def test_an_open_api_listens_only_on_loopback() -> None:
    assert Settings(host="127.0.0.1").refuse_open_listener() is None
    assert Settings(host="::1").refuse_open_listener() is None
    assert Settings(host="localhost").refuse_open_listener() is None
    assert "--allow-unauthenticated" in (Settings(host="0.0.0.0").refuse_open_listener() or "")
    assert Settings(host="0.0.0.0", tokens=("t",)).refuse_open_listener() is None
    assert Settings(host="0.0.0.0", allow_unauthenticated=True).refuse_open_listener() is None


def test_request_path_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({
        "QUERY_API_MAX_COST": "900", "QUERY_API_DB_CONCURRENCY": "6",
        "QUERY_API_QUEUE_TIMEOUT_SECONDS": "2.5", "QUERY_API_STATEMENT_TIMEOUT_SECONDS": "0",
        "QUERY_API_HEAVY_COST": "0", "QUERY_API_HEAVY_CONCURRENCY": "2",
    })
    assert (settings.max_cost, settings.db_concurrency) == (900, 6)
    assert (settings.heavy_cost, settings.heavy_concurrency) == (0, 2)
    assert (settings.queue_timeout_seconds, settings.statement_timeout_seconds) == (2.5, 0.0)
    defaults = Settings.from_env({})
    assert (defaults.max_cost, defaults.db_concurrency, defaults.queue_timeout_seconds,
            defaults.statement_timeout_seconds, defaults.heavy_cost,
            defaults.heavy_concurrency) == (5000, 4, 10.0, 5.0, 200, 4)
    for bad in ({"QUERY_API_DB_CONCURRENCY": "0"}, {"QUERY_API_MAX_COST": "x"},
                {"QUERY_API_QUEUE_TIMEOUT_SECONDS": "0"},
                {"QUERY_API_STATEMENT_TIMEOUT_SECONDS": "-1"},
                {"QUERY_API_STATEMENT_TIMEOUT_SECONDS": "nan"},
                {"QUERY_API_HEAVY_COST": "-1"}, {"QUERY_API_HEAVY_CONCURRENCY": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)
