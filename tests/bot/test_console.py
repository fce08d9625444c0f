"""The console journey, driven through stdin of the real `coursebot demo` process."""

from __future__ import annotations

import subprocess
import sys

JOURNEY = (
    "\n".join(
        [
            "/catalog",
            "1",
            "1",
            "1",
            "1",  # category → course → buy → simulated pay
            "/mycourses",
            "/search Python 入门",
            "/language en",
            "/mycourses",
            "/refund 1",
            "1",  # confirm the refund
            "/mycourses",
            "/quit",
        ]
    )
    + "\n"
)


def test_console_journey_through_stdin(tmp_path):
    """A newcomer browses, buys in test mode, searches, switches language, and refunds."""
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo"],
        input=JOURNEY,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "TMPDIR": str(tmp_path)},
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "1. 编程开发 (4)" in out
    assert "#1" in out and "价格：150 ⭐" in out
    assert "TEST MODE" in out
    assert "支付成功" in out
    my_courses = out.split("🎓 我的课程\n#1")
    assert len(my_courses) == 2, "the bought course shows in /mycourses"
    assert "「Python 入门」的搜索结果" in out
    assert "Refunded payment #1 (150 ⭐)" in out
    after_refund = out.split("Refunded payment #1")[1]
    assert "You don't own any course yet" in after_refund
    assert "You may also like" in after_refund
