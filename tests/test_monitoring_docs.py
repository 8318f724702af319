"""docs/monitoring: the example scrape configuration and the alert rules hold together, and
every metric the rules use exists in a real scrape of a Server and a Manager. promtool is not
here, so the rules file is checked for what `promtool check rules` checks first: its shape,
durations, label and annotation maps, balanced brackets in each expression."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import yaml

from farmkit import TestFarm, wait_until
from metricskit import family_names

MONITORING = Path(__file__).resolve().parents[1] / "docs" / "monitoring"
RULES = MONITORING / "flamenco-alerts.yml"
SCRAPES = MONITORING / "prometheus.yml"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
METRIC = re.compile(r"\b(flamenco_[a-z0-9_]+)\b")


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["flamenco"]
    return groups[0]["rules"]


def _balanced(expr: str) -> bool:
    depth: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"[^"]*"', '""', expr):  # brackets inside label values do not count
        if char in "([{":
            depth.append(char)
        elif char in pairs and (not depth or depth.pop() != pairs[char]):
            return False
    return not depth


def test_the_rules_file_has_the_shape_promtool_takes() -> None:
    rules = _rules()
    assert len(rules) >= 5
    names = [r["alert"] for r in rules]
    assert len(set(names)) == len(names)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description"} <= set(rule["annotations"])
        assert _balanced(rule["expr"]), rule["expr"]
        for duration in re.findall(r"\[([^\]]+)\]", rule["expr"]):
            assert DURATION.match(duration), duration


def test_the_scrape_configuration_names_the_rules_and_a_token_file() -> None:
    config = yaml.safe_load(SCRAPES.read_text())
    assert config["rule_files"] == [RULES.name]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"flamenco-server", "flamenco-manager"}
    for job in jobs.values():
        assert job["authorization"]["type"] == "Bearer"
        assert job["authorization"]["credentials_file"].startswith("/")
        assert job["static_configs"][0]["targets"]
    # The rules' up{job=...} name jobs of this configuration.
    for rule in _rules():
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, rule["alert"]


def test_every_metric_in_the_rules_exists_in_a_real_scrape(tmp_path: Path) -> None:
    used = {name for rule in _rules() for name in METRIC.findall(rule["expr"])}
    assert used  # the rules read the farm's own metrics
    with TestFarm(tmp_path / "farm") as farm:
        farm.start_server()
        manager_url = farm.start_manager()
        made = farm.cli("metrics", "token")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()

        def manager_synced() -> bool:
            answer = httpx.get(
                f"{manager_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            return answer.status_code == 200 and "last_server_sync_age_seconds" in answer.text

        wait_until(manager_synced, 30, "the Manager's /metrics after a sync")
        scraped = family_names(farm.server_url, token) | family_names(manager_url, token)
    assert used <= scraped, f"not in a scrape: {sorted(used - scraped)}"
