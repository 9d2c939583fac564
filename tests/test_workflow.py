"""The leaderboard workflow passes the GitHub workflow schema (vendored in check-jsonschema: no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "leaderboard.yml"


def lint(path: Path) -> subprocess.CompletedProcess:
    offline = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True, text=True, env=offline, timeout=120,
    )


def test_workflow_is_valid(tmp_path):
    result = lint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("    runs-on: ubuntu-latest\n", "", 1))
    assert "'runs-on' is a required property" in lint(broken).stdout  # the linter does check


def test_workflow_publishes_on_main_and_diffs_pull_requests():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    steps = workflow["jobs"]["measure"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "pip install -e ." in commands and "bench run --suite" in commands
    assert "bench leaderboard diff" in commands
    uses = {step.get("uses", "").split("@")[0] for step in steps}
    assert {"actions/upload-pages-artifact", "actions/github-script"} <= uses
    assert workflow["jobs"]["publish"]["steps"][0]["uses"].startswith("actions/deploy-pages@")
