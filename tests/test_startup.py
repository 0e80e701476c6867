"""What a command imports: only what it runs (docs/performance.md §14)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_tool, tool_environment

# Runs one command the way the console script does, then writes the names of the
# modules it loaded to the file named by the first argument.
RUNNER = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["git-gpu-proof", *sys.argv[2:]]
from gitproof.cli.main import main
main()
"""
NEVER_FOR_QUICK_COMMANDS = ("pydantic", "http.client", "rich", "pytest", "_pytest", "gitproof.cli.run",
                            "gitproof.trust.github", "securesystemslib", "google.protobuf", "gitproof.demo")


def loaded_modules(cwd: Path, tmp_path: Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    out = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", RUNNER, str(out), *args], cwd=cwd, env=tool_environment(),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return set(json.loads(out.read_text())), result


@pytest.mark.parametrize("args", [("status",), ("verify",), ("show",), ("log", "-n", "3")])
def test_quick_commands_import_only_what_they_run(cli_project, tmp_path, args):
    modules, result = loaded_modules(cli_project, tmp_path, *args)
    assert result.returncode in (0, 1), result.stderr
    assert {m for m in modules if m.split(".")[0] == "gitproof" and m.startswith("gitproof.cli.")} <= {
        "gitproof.cli.main", "gitproof.cli.common", "gitproof.cli.describe", f"gitproof.cli.{args[0]}"}
    assert [m for m in NEVER_FOR_QUICK_COMMANDS if m in modules] == []


def test_the_pre_push_hook_never_imports_typer(cli_project, tmp_path):
    modules, result = loaded_modules(cli_project, tmp_path, "hook", "pre-push", "origin")
    assert result.returncode == 0, result.stderr
    assert "typer" not in modules and "gitproof.cli.main" in modules


@pytest.mark.parametrize("args", [("-h",), ("-h", "status")])  # git answers `git gpu-proof --help` itself
def test_top_level_help_still_lists_every_command(cli_project, args):
    result = run_tool(cli_project, *args)
    assert result.returncode == 0
    for name in ("run", "verify", "plan", "show", "log", "export", "status", "push", "fetch", "install",
                 "uninstall", "doctor", "hook", "demo", "signers", "migrate"):
        assert f"\n  {name} " in result.stdout


def test_a_command_registered_by_another_module_runs(cli_project):
    result = run_tool(cli_project, "uninstall", "--help")
    assert result.returncode == 0 and "Usage: git gpu-proof uninstall" in result.stdout


def test_an_unknown_command_is_a_usage_error_naming_it(cli_project):
    result = run_tool(cli_project, "nosuch")
    assert result.returncode == 2 and "No such command 'nosuch'" in result.stderr
