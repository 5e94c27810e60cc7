"""The dashboards and alert rules in monitoring/, checked against the real service.

- promtool checks the rules and runs their unit tests (monitoring/prometheus/rules.test.yml).
- After a real run (Kafka, `projector run`, a rebuild under way, the query API asked
  good and bad queries and holding a WebSocket subscription), every metric and every
  label a dashboard panel uses is in the API's /metrics.
- Scenario: the projector stops while events keep coming; /metrics is scraped as
  Prometheus would, the scrapes become a promtool test, and the lag alert fires on
  them; the projector comes back and reads dead letters: that alert fires too.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.api_support import copy_stream, live_server, project, settings_for
from tests.fault.support import LogRecord, publish
from tests.helpers import ROOT, encode, make_event, projector_env, run_projector, unique

pytestmark = pytest.mark.integration

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "prometheus" / "rules.yml"
RULE_TESTS = MONITORING / "prometheus" / "rules.test.yml"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))

#: PromQL words that are not metric names.
_PROMQL = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta", "deriv",
    "histogram_quantile", "time", "by", "without", "on", "ignoring", "and", "or", "unless",
    "group_left", "group_right", "offset", "bool", "abs", "clamp_min", "clamp_max",
    "min_over_time", "max_over_time", "avg_over_time", "topk", "bottomk", "vector", "scalar",
}


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: scripts/promtool installs it (scripts/test does)",
                    pytrace=False)
    return found


def _rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def _annotations(alert: str, labels: dict[str, str]) -> dict[str, str]:
    """The annotations promtool renders for ``alert`` (our templates use labels only)."""
    out = {}
    for key, value in _rules()[alert]["annotations"].items():
        out[key] = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""),
                          value)
    return out


def _completed(tests: dict[str, Any]) -> dict[str, Any]:
    """A promtool test document with each expected alert's annotations filled in."""
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            for alert in case["exp_alerts"]:
                labels = {k: str(v) for k, v in alert["exp_labels"].items()}
                alert["exp_annotations"] = _annotations(case["alertname"], labels)
    return tests


def _run_promtool_tests(tmp_path: Path, tests: dict[str, Any]) -> None:
    shutil.copy(RULES, tmp_path / "rules.yml")
    path = tmp_path / "rules.test.yml"
    path.write_text(yaml.safe_dump(_completed(tests), sort_keys=False))
    done = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_checks_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    done = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"]
              if case["exp_alerts"]}
    assert tested == set(_rules()), "every rule has a unit test in which it fires"
    for rule in _rules().values():
        assert len(rule["annotations"]["runbook"]) > 100, rule["alert"]
    _run_promtool_tests(tmp_path, tests)


# -- the dashboards against a real run ----------------------------------------------------
def _expr_uses(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression uses."""
    text = re.sub(r'"[^"]*"', '""', expr)
    text = re.sub(r"\[[^\]]*\]", "", text)
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text):
        labels |= {name.strip() for name in group.split(",") if name.strip()}
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*[=!~]", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    names = {word for word in re.findall(r"[A-Za-z_:][\w:]*", text)
             if word not in _PROMQL and not re.fullmatch(r"\d.*|e\d+", word)}
    return names, labels


def _panel_uses() -> Iterable[tuple[str, set[str], set[str]]]:
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                names, labels = _expr_uses(target["expr"])
                labels |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
                yield f"{path.name}: {panel['title']}: {target['expr']}", names, labels


def _served(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, as /metrics serves them."""
    served: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            served.setdefault(sample.name, set()).update(sample.labels)
    return served


def _scrape(base: str) -> str:
    response = httpx.get(f"http://{base}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


def _events(prefix: str, deliveries: int, at_hour: int) -> list[LogRecord]:
    records = []
    for i in range(deliveries):
        event = make_event("DeliveryCreated", f"{prefix}-{i}", f"2026-11-25T{at_hour:02d}:00:00Z",
                           event_id=f"{prefix}-{i}-created")
        records.append(LogRecord(encode(event), event["deliveryId"].encode()))
    return records


def _bad(prefix: str, n: int) -> list[LogRecord]:
    return [LogRecord(b"not json " + str(i).encode(), f"{prefix}-{i}".encode())
            for i in range(n)]


def _series(scrapes: list[str], metric: str) -> dict[str, list[float]]:
    """One promtool series per labelled sample of ``metric``: its value in each scrape."""
    out: dict[str, list[float]] = {}
    for n, text in enumerate(scrapes):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name != metric:
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out.setdefault(f"{metric}{{{labels}}}", [0.0] * len(scrapes))[n] = sample.value
    return out


async def _scrape_with_a_subscription(base: str) -> str:
    """/metrics while a WebSocket holds one subscription (the WebSocket panels' metrics)."""
    from websockets.asyncio.client import connect

    async with connect(f"ws://{base}/graphql",
                       subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": 'subscription { deliveryUpdated(id: "A-0") { id } }'}}))
        for _ in range(100):  # until the server runs it (bounded)
            text = await asyncio.to_thread(_scrape, base)
            if _value(text, "query_api_websocket_operations") == 1:
                return text
            await asyncio.sleep(0.1)
        return text


def _value(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return None


def test_dashboards_use_only_what_metrics_serves_and_alerts_fire_on_a_stopped_projector(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    from projector.bootstrap import open_engine
    from projector.settings import Settings
    from projector.sources.base import TopicPartition
    from projector.store import SqlStore, generations
    from schema.lifecycle import GenerationPurpose

    topic = topic_factory(3)
    env = projector_env(pg_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic,
                        KAFKA_GROUP_ID=unique("group"))
    run_projector(["migrate"], env)
    publish(kafka_bootstrap, topic, _events("A", 30, 10))
    run_projector(["run", "--until-caught-up"], env)
    settings = settings_for(pg_url, kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic,
                            end_offsets_cache_seconds=0.0)
    scrapes: list[str] = []
    with live_server(settings) as (base, _app):
        for query in ("query BackOfficeList { deliveries(first: 5) { totalCount } }",
                      "query BackOfficeList { deliveries(first: 0) { totalCount } }",
                      "query Status { projectionStatus { generation } }"):
            httpx.post(f"http://{base}/graphql", json={"query": query}, timeout=10)
        with_socket = asyncio.run(_scrape_with_a_subscription(base))
        assert _value(with_socket, "query_api_websockets") == 1
        assert _value(with_socket, "query_api_websocket_operations") == 1
        scrapes.append(_scrape(base))                       # caught up
        publish(kafka_bootstrap, topic, _events("B", 30, 11) + _bad("B", 6))
        scrapes.append(_scrape(base))                       # projector stopped: lag
        publish(kafka_bootstrap, topic, _events("C", 30, 12))
        scrapes.append(_scrape(base))                       # lag grows
        run_projector(["run", "--until-caught-up"], env)
        scrapes.append(_scrape(base))                       # back: caught up, dead letters
        # A rebuild under way: its generation as `projector rebuild` starts it.
        engine = open_engine(Settings(database_url=pg_url))
        try:
            building, _ = generations.create(engine, purpose=GenerationPurpose.REBUILD,
                                             from_spec="earliest", owner="test:1")
            SqlStore(engine).set_offsets(
                building, {TopicPartition(topic, p): 0 for p in range(3)})
        finally:
            engine.dispose()
        during_rebuild = _scrape(base)
        scraped_at = time.time()

    served = _served(during_rebuild)
    missing = []
    for where, names, labels in _panel_uses():
        assert names, where
        for name in names:
            if name not in served:
                missing.append(f"{where}: metric {name}")
                continue
        have = set().union(*(served.get(n, set()) for n in names))
        missing += [f"{where}: label {label}" for label in labels - have]
    assert not missing, "\n".join(missing)

    # The scrapes as a promtool test: each held 4 minutes (0-3 m, 4-7 m, 8-11 m, 12-...).
    hold = 4
    lag = _series(scrapes, "projection_lag_messages")
    dead = _series(scrapes, "projection_dead_letters_total")
    values = {**lag, **dead}
    input_series = [{"series": name, "values": " ".join(
        f"{v:g}" for v in vs for _ in range(hold)) + f" {vs[-1]:g}x12"}
        for name, vs in values.items()]
    growing = [name for name, (s1, s2, s3, _s4) in lag.items() if s1 < s2 < s3]
    with_dead = [name for name, vs in dead.items() if vs[-1] > vs[0]]
    assert growing and with_dead, (lag, dead)

    def labels_of(series: str) -> dict[str, str]:
        return dict(re.findall(r'(\w+)="([^"]*)"', series))

    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": input_series,
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "ProjectionLagGrowing", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "ProjectionLagGrowing", "exp_alerts": [
                {"exp_labels": {"severity": "warning", **labels_of(s)}} for s in growing]},
            {"eval_time": "10m", "alertname": "ProjectionDeadLetters", "exp_alerts": []},
            {"eval_time": "13m", "alertname": "ProjectionDeadLetters", "exp_alerts": [
                {"exp_labels": {"severity": "warning", **labels_of(s)}} for s in with_dead]},
        ]}]}
    # The same scrapes on promtool's clock (the scrape at 0): the rebuild's generation never
    # beats again, so ProjectionRebuildStalled fires; the newest event served is days old
    # (the events' times are fixed) while messages wait: ProjectionFreshnessOverBound fires.
    beat = _value(during_rebuild, "projection_rebuild_heartbeat_timestamp_seconds")
    newest = _value(scrapes[2], "projection_last_event_timestamp_seconds")
    assert _value(during_rebuild, "projection_rebuild_running") == 1
    assert beat is not None and abs(beat - scraped_at) < 60 and newest is not None
    waiting = {name: vs[2] for name, vs in lag.items() if vs[2] > 0}
    assert waiting, lag
    tests["tests"].append({
        "interval": "1m",
        "input_series": [
            {"series": "projection_rebuild_running", "values": "1x12"},
            {"series": "projection_rebuild_heartbeat_timestamp_seconds",
             "values": f"{beat - scraped_at:g}x12"},
            {"series": "projection_last_event_timestamp_seconds",
             "values": f"{newest - scraped_at:g}x12"},
            *({"series": name, "values": f"{v:g}x12"} for name, v in waiting.items()),
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "ProjectionRebuildStalled", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "ProjectionRebuildStalled", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
            {"eval_time": "3m", "alertname": "ProjectionFreshnessOverBound", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "ProjectionFreshnessOverBound", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
        ]})
    _run_promtool_tests(tmp_path, tests)
    (tmp_path / "scrapes.txt").write_text("\n# --- next scrape ---\n".join(scrapes))


def test_the_error_ratio_alert_fires_on_operations_that_really_fail(tmp_path: Path) -> None:
    """A client whose every fourth operation fails (a `first` out of bounds): the API's
    own counters, scraped once a "minute", make ``QueryApiErrorRatio`` fire after its
    10 minutes, and not before."""
    stream = copy_stream("api_happy.jsonl", tmp_path)
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    project(url, stream)
    good = 'query Probe { delivery(id: "D-1001") { id state } }'
    bad = 'query Probe { deliveries(first: 0) { totalCount } }'
    scrapes: list[str] = []
    with live_server(settings_for(url, stream)) as (base, _app):
        scrapes.append(_scrape(base))
        for _minute in range(16):
            for query in (good, good, good, bad):
                httpx.post(f"http://{base}/graphql", json={"query": query}, timeout=10)
            scrapes.append(_scrape(base))
    operations = _series(scrapes, "query_api_graphql_operations_total")
    failed = [name for name in operations if 'outcome="error"' in name]
    assert failed and all(operations[name][-1] == 16 for name in failed), operations
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": name, "values": " ".join(f"{v:g}" for v in values)}
                         for name, values in operations.items()],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "QueryApiErrorRatio", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "QueryApiErrorRatio", "exp_alerts": [
                {"exp_labels": {"severity": "warning"}}]},
        ]}]}
    _run_promtool_tests(tmp_path, tests)
