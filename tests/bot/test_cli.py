"""The command line: `--help` works whatever is configured; a bad setting is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_works_with_a_bad_setting():
    done = run_cli("--help", TIMEZONE="Mars/Base")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_a_bad_setting_is_one_line_naming_it_and_exit_code_2(tmp_path):
    done = run_cli(
        "migrate", TIMEZONE="Mars/Base", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db"
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "TIMEZONE" in lines[0] and "Mars/Base" in lines[0]
    assert "Traceback" not in done.stderr
