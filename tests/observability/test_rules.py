"""promtool accepts the shipped Prometheus config and alert rules, and each alert fires for its
condition, after its `for`, and only then (tests/fixtures/prometheus/alerts_test.yml)."""

from __future__ import annotations

from pathlib import Path

from tests.support.prometheus import promtool
from tests.support.promql import ALERTS, PROMETHEUS_CONFIG, alert_rules

RULE_TESTS = Path(__file__).parent.parent / "fixtures" / "prometheus" / "alerts_test.yml"


def test_promtool_accepts_the_shipped_config_and_rules() -> None:
    for check in (("config", PROMETHEUS_CONFIG), ("rules", ALERTS)):
        result = promtool("check", *check)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_for_its_condition_and_only_then() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {
        line.split(":", 1)[1].strip()
        for line in RULE_TESTS.read_text().splitlines()
        if line.strip().startswith("alertname:")
    }
    assert tested == set(alert_rules())


def test_every_alert_says_what_to_do() -> None:
    for name, rule in alert_rules().items():
        description = rule["annotations"]["description"]
        assert "`callback-fanout parked " in description, f"{name} names no parked command"
