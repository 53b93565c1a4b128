"""The alert rules and the Grafana dashboard in ``deploy/`` (issue 18): ``promtool test rules``
passes on the series ``tests/promtool/doxa-alerts.test.yml`` writes in promtool's own format, and
every metric the rules, their tests and the dashboard name is one the collector
(``collector/metrics.py``) or the site (``/api/v1/metrics``, ``lookup_web/metrics.py``) really
exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_staff_helpers import add_staff, app_factory, signed_in_client
from test_web_customer_data import ZONE, add_customer

from collector.metrics import Stats
from lookup_web import metrics as site_metrics
from lookup_web import ops
from operations.schedule import Daily, parse_hhmm
from operations.scheduler import Job, Runner

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "doxa-alerts.yml"
RULE_TESTS = ROOT / "tests" / "promtool" / "doxa-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "doxa-collectors.json"
# Names Prometheus itself gives every scrape target.
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"\b(doxa_[a-z0-9_]+|up)\b(?!\s*\()")


def _names(text: str) -> set[str]:
    return set(_NAME.findall(text))


def collector_names() -> set[str]:
    """Every sample name a collector's /metrics serves (the registry it serves)."""
    registry = Stats().registry
    return {s.name for family in registry.collect() for s in family.samples}


def site_names(db: psycopg.Connection) -> set[str]:
    text = site_metrics.exposition(db, ops.Thresholds(15, 60, 60, 300), datetime.now(ZONE)).decode()
    return {f.name for f in text_string_to_metric_families(text)} | {
        s.name for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_promtool_passes_the_alert_rules_tests() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/bootstrap.sh installs Debian's prometheus"
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout + test.stderr


def test_promtool_would_catch_a_broken_rule(tmp_path: Path) -> None:
    """The test file really tests the rules: with a threshold changed, it fails."""
    broken = tmp_path / "deploy" / "prometheus"
    broken.mkdir(parents=True)
    (broken / RULES.name).write_text(
        RULES.read_text().replace("doxa_meters_active > 0.05", "doxa_meters_active > 0.5")
    )
    tests = tmp_path / "tests" / "promtool"
    tests.mkdir(parents=True)
    (tests / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    promtool = shutil.which("promtool")
    assert promtool
    run = subprocess.run(
        [promtool, "test", "rules", str(tests / RULE_TESTS.name)], capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "DoxaStaleMetersHigh" in run.stdout + run.stderr


@pytest.mark.db
def test_every_metric_the_rules_name_is_exported(db: psycopg.Connection, db_url: str) -> None:
    # Data behind every family of the site's gauges: a meter, a gateway's polls, a collector,
    # a notice, a job run.
    _, meter = add_customer(db, "PB01010000001", "SN-1")
    now = datetime.now(ZONE)
    db.execute(
        "INSERT INTO collectors (id, host, version, pid, started_at, last_seen)"
        " VALUES ('col-a', 'h', '1', 1, %s, %s)",
        (now, now),
    )
    db.execute(
        "INSERT INTO poll_outcomes (ts, collector_id, gateway, meter_id, outcome, latency_ms)"
        " VALUES (%s, 'col-a', '10.0.0.1:502', %s, 'ok', 12)",
        (now - timedelta(minutes=1), meter),
    )
    Runner(db_url, [Job("fine", Daily(parse_hhmm("00:00"), ZONE), lambda c, at: {})]).run_due()
    exported = collector_names() | site_names(db) | PROMETHEUS_OWN
    for name in ("doxa_gateway_success_ratio", "doxa_collector_heartbeat_age_seconds",
                 "doxa_job_last_run_failed", "doxa_collector_spool_max_bytes"):  # fmt: skip
        assert name in exported
    in_rules = _names(RULES.read_text())
    assert len(in_rules) >= 12
    assert in_rules <= exported, in_rules - exported
    series = set(re.findall(r"series: '([a-z_0-9]+)\{", RULE_TESTS.read_text()))
    assert series <= exported, series - exported


def test_every_dashboard_query_names_a_collector_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    exported = collector_names() | PROMETHEUS_OWN
    for expr in exprs:
        names = _names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{expr!r} names {names - exported}"
    # Every collector metric family is on the dashboard.
    families = {f.name for f in Stats().registry.collect()}
    shown = set().union(*(_names(e) for e in exprs))
    assert all(any(s.startswith(f) for s in shown) for f in families), families


@pytest.mark.db
def test_site_metrics_need_a_staff_token_or_session(db: psycopg.Connection, db_url: str) -> None:
    add_staff(db, "minh", "engineer")
    for make in app_factory(db_url):
        app = make()
        assert app.test_client().get("/api/v1/metrics").status_code == 401
        page = signed_in_client(app, "minh").get("/api/v1/metrics")
        assert page.status_code == 200
        assert page.content_type.startswith("text/plain")
        assert "doxa_meters_active 0.0" in page.get_data(as_text=True)
