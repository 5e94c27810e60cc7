"""The contract's settings (its section Settings) mean the same to `projector` and `query-api`."""

from __future__ import annotations

import pytest

from projector.errors import ConfigError as ProjectorConfigError
from projector.settings import Settings as ProjectorSettings
from query_api.errors import ConfigError as ApiConfigError
from query_api.settings import Settings as ApiSettings
from schema.settings import DEFAULT_DATABASE_URL, SettingError, flag, integer, number

pytestmark = pytest.mark.unit

SHARED = ("database_url", "event_source", "kafka_bootstrap_servers", "kafka_topic",
          "business_timezone")


@pytest.mark.parametrize("env", [
    {},
    {"DATABASE_URL": "", "KAFKA_TOPIC": "  "},  # empty means unset, for both
    {"DATABASE_URL": "postgresql+psycopg://u@h/db", "EVENT_SOURCE": "/tmp/s.jsonl",
     "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_TOPIC": "t", "BUSINESS_TIMEZONE": "Asia/Seoul"},
])
def test_both_commands_read_the_shared_variables_alike(env: dict[str, str]) -> None:
    projector, api = ProjectorSettings.from_env(env), ApiSettings.from_env(env)
    assert {f: getattr(projector, f) for f in SHARED} == {f: getattr(api, f) for f in SHARED}
    if not env.get("DATABASE_URL"):
        assert projector.database_url == api.database_url == DEFAULT_DATABASE_URL


@pytest.mark.parametrize("env", [
    {"BUSINESS_TIMEZONE": "Mars/Olympus"},
    {"DATABASE_URL": "not a url"},
])
def test_a_bad_shared_variable_is_a_configuration_error_for_the_projector(
    env: dict[str, str],
) -> None:
    with pytest.raises(ProjectorConfigError, match="BUSINESS_TIMEZONE|DATABASE_URL"):
        ProjectorSettings.from_env(env)


def test_a_bad_zone_is_the_same_error_for_the_api() -> None:
    with pytest.raises(ApiConfigError, match="BUSINESS_TIMEZONE='Mars/Olympus' is not a known"):
        ApiSettings.from_env({"BUSINESS_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(ProjectorConfigError, match="BUSINESS_TIMEZONE='Mars/Olympus' is not a known"):
        ProjectorSettings.from_env({"BUSINESS_TIMEZONE": "Mars/Olympus"})


def test_numbers_and_flags() -> None:
    assert integer({"N": " 7 "}, "N", 1) == 7 and integer({"N": ""}, "N", 1) == 1
    assert number({"X": "0.5"}, "X", 1.0) == 0.5
    assert flag({"F": "yes"}, "F", False) is True and flag({"F": ""}, "F", True) is False
    for call in (lambda: integer({"N": "x"}, "N", 1), lambda: number({"X": "inf"}, "X", 1.0),
                 lambda: flag({"F": "maybe"}, "F", False)):
        with pytest.raises(SettingError):
            call()
    with pytest.raises(ProjectorConfigError, match="PROJECTOR_BATCH_SIZE='many' is not an integer"):
        ProjectorSettings.from_env({"PROJECTOR_BATCH_SIZE": "many"})
    with pytest.raises(ApiConfigError, match="QUERY_API_PORT='eighty' is not an integer"):
        ApiSettings.from_env({"QUERY_API_PORT": "eighty"})


def test_the_projectors_group_membership_settings_and_their_defaults() -> None:
    assert ProjectorSettings.from_env({}).kafka_session_timeout_ms == 6000
    assert ProjectorSettings.from_env({}).kafka_heartbeat_interval_ms == 1000
    assert ProjectorSettings.from_env({}).kafka_group_instance_id == ""
    settings = ProjectorSettings.from_env({"KAFKA_SESSION_TIMEOUT_MS": "10000",
                                           "KAFKA_HEARTBEAT_INTERVAL_MS": "2000",
                                           "KAFKA_GROUP_INSTANCE_ID": "projector-a.1_x"})
    assert (settings.kafka_session_timeout_ms, settings.kafka_heartbeat_interval_ms,
            settings.kafka_group_instance_id) == (10000, 2000, "projector-a.1_x")


@pytest.mark.parametrize("env, named", [
    ({"KAFKA_SESSION_TIMEOUT_MS": "0"}, "KAFKA_SESSION_TIMEOUT_MS"),
    ({"KAFKA_HEARTBEAT_INTERVAL_MS": "6000"}, "KAFKA_HEARTBEAT_INTERVAL_MS"),
    ({"KAFKA_HEARTBEAT_INTERVAL_MS": "x"}, "KAFKA_HEARTBEAT_INTERVAL_MS"),
    ({"KAFKA_GROUP_INSTANCE_ID": "has space"}, "KAFKA_GROUP_INSTANCE_ID"),
    ({"KAFKA_GROUP_INSTANCE_ID": ".."}, "KAFKA_GROUP_INSTANCE_ID"),
    ({"KAFKA_GROUP_INSTANCE_ID": "x" * 250}, "KAFKA_GROUP_INSTANCE_ID"),
])
def test_a_bad_group_membership_setting_is_a_configuration_error(
    env: dict[str, str], named: str,
) -> None:
    with pytest.raises(ProjectorConfigError, match=named):
        ProjectorSettings.from_env(env)


def test_both_commands_settings_share_one_base() -> None:
    """The contract's variables, ``with_overrides`` and ``uses_kafka`` are defined once."""
    from schema.settings import SharedSettings

    for own in (ProjectorSettings, ApiSettings):
        assert issubclass(own, SharedSettings)
        assert not {"with_overrides", "uses_kafka", "database_url"} & set(vars(own)), own
    api = ApiSettings.from_env({"KAFKA_TOPIC": "t", "BUSINESS_TIMEZONE": "Asia/Seoul"})
    assert (api.kafka_topic, api.business_timezone) == ("t", "Asia/Seoul")
    assert api.with_overrides(port=9000, host=None).port == 9000
