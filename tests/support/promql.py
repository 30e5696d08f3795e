"""The PromQL the deployment ships: every expression of the Grafana dashboard and of the alert
rules, the ``callback_fanout_*`` metric names they use, and what a rule measures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALERTS",
    "DASHBOARD",
    "DATASOURCES",
    "PROMETHEUS_CONFIG",
    "alert_rules",
    "dashboard",
    "dashboard_expressions",
    "measured",
    "metric_names",
    "substitute",
]

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "callback-fanout.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

_LABEL_VALUES = re.compile(r"label_values\((?P<metric>[^,]+),\s*(?P<label>\w+)\)")
_METRIC = re.compile(r"\bcallback_fanout_[a-z0-9_]+")
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def dashboard_expressions() -> dict[str, str]:
    """``panel title [refId]`` -> expression, for every query of every panel, and each query
    variable's ``label_values(metric, label)`` as the PromQL Grafana runs for it."""
    found: dict[str, str] = {}
    for panel in _panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            found[f"{panel['title']} [{target['refId']}]"] = target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = _LABEL_VALUES.fullmatch(variable["definition"])
            assert query, f"variable {variable['name']}: not label_values(metric, label)"
            found[f"${variable['name']}"] = f"group by ({query['label']}) ({query['metric']})"
    return found


def alert_rules() -> dict[str, dict[str, Any]]:
    """Alert name -> its rule (expr, for, labels, annotations)."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def substitute(expression: str, variables: Mapping[str, str]) -> str:
    """The expression with Grafana's ``$name`` variables replaced; every one must be known."""
    for name in sorted(variables, key=len, reverse=True):
        expression = expression.replace(f"${name}", variables[name])
    assert "$" not in expression, f"unknown variable in {expression!r}"
    return expression


def metric_names(expressions: Mapping[str, str] | list[str]) -> set[str]:
    """Every ``callback_fanout_*`` name the expressions read (as samples: ``_bucket`` too)."""
    texts = expressions.values() if isinstance(expressions, Mapping) else expressions
    return {name for text in texts for name in _METRIC.findall(text)}


def measured(expression: str) -> str:
    """What a rule compares with its threshold: the operand left of the last comparison
    outside brackets and strings (``rate(x[5m]) > 0`` -> ``rate(x[5m])``); a rule without one
    measures itself."""
    depth, quote, cut = 0, "", -1
    i = 0
    while i < len(expression):
        char = expression[i]
        if quote:
            quote = "" if char == quote and expression[i - 1] != "\\" else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            operator = next((op for op in _COMPARISONS if expression.startswith(op, i)), "")
            if operator:
                cut = i
                i += len(operator)
                continue
        i += 1
    return expression[:cut].strip() if cut >= 0 else expression.strip()
