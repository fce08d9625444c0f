"""The command line: `--help` works whatever is configured; a bad setting is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    # The test suite's own COURSEBOT_* variables would be reported as look-alike settings.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COURSEBOT_")}
    environment = {**clean, **env}
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


def test_check_masks_secrets_and_reports_database_and_channels(tmp_path):
    done = run_cli(
        "check",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/c.db",
        TELEGRAM_BOT_TOKEN="123456:SECRET-never-shown",
        LOG_LEVEL="WARNING",
    )
    assert done.returncode == 0, done.stderr
    assert "SECRET-never-shown" not in done.stdout + done.stderr
    assert "reached" in done.stdout and "needs `coursebot migrate`" in done.stdout
    assert "telegram (aiogram, polling)" in done.stdout


def test_check_says_in_one_line_when_the_database_cannot_be_reached():
    done = run_cli(
        "check", DATABASE_URL="postgresql+asyncpg://u:pw@127.0.0.1:1/x", LOG_LEVEL="WARNING"
    )
    assert done.returncode == 1
    assert "cannot reach postgresql+asyncpg://u:***@127.0.0.1:1/x" in done.stderr
    assert "pw@" not in done.stderr and "Traceback" not in done.stderr


def test_the_demo_script_runs_and_leaves_no_temporary_folder(tmp_path):
    script = tmp_path / "lines.txt"
    script.write_text("/catalog\n/wait 0.2\n/quit\n", encoding="utf-8")
    done = run_cli("demo", "--locale", "en", "--script", str(script), TMPDIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Categories" in done.stdout
    assert not list(tmp_path.glob("coursebot-demo-*"))


def test_an_unwritable_sqlite_path_is_one_line_naming_it(tmp_path):
    done = run_cli("migrate", DATABASE_URL="sqlite+aiosqlite:////proc/nope/x.db")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "/proc/nope/x.db" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_postgresql_is_one_line(tmp_path):
    done = run_cli(
        "migrate", DATABASE_URL="postgresql+asyncpg://u:pw@127.0.0.1:1/x", LOG_LEVEL="WARNING"
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot use postgresql+asyncpg://u:***@127.0.0.1:1/x" in lines[0]


def test_the_demo_shows_the_live_course_loop_reminder_then_link(tmp_path):
    """Buy, schedule a session seconds ahead: the reminder and the link arrive in the console."""
    script = tmp_path / "loop.txt"
    script.write_text(
        "/start course_1\n1\n1\n/schedule 1 +4s https://live.example/demo Demo night\n"
        "/wait 8\n/quit\n",
        encoding="utf-8",
    )
    done = run_cli(
        "demo",
        "--locale",
        "en",
        "--script",
        str(script),
        REMINDER_OFFSETS="2s",
        TMPDIR=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Payment received" in out
    reminder, link = out.find("Reminder:"), out.find("https://live.example/demo")
    assert 0 <= reminder < link, out[-1500:]
    assert "is live now" in out
