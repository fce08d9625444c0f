"""Fuzz benchmark: hostile updates through the real aiogram adapter and the fake Bot API, then a
crash test with kill -9 of a real `coursebot run` process in the middle of traffic.

    python bench/fuzz.py [--updates 2000] [--crash-users 300] [--seed 17]

Prints: handler exceptions, replies Telegram rejected, unanswered callbacks, unanswered
pre-checkouts, unparsable updates skipped, whether the process is alive (answers /help after
the storm); then the crash test's lost and duplicated replies.
Goal: 0, 0, 0, 0, yes; 0 lost and 0 duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.bootstrap import build_app  # noqa: E402
from bot.channels.telegram_aiogram import AiogramChannel  # noqa: E402
from bot.core import SystemClock  # noqa: E402
from bot.demo import seed_demo  # noqa: E402
from bot.runner import start_channels  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes.telegram_api import FakeTelegram, has  # noqa: E402

ADMIN = 900001
COMMANDS = [
    "start", "help", "catalog", "search", "mycourses", "recommend", "ask", "rate", "language",
    "stop", "mydata", "addcourse", "schedule", "announce", "answer", "refund", "stats", "faq",
    "reviews", "sessions", "reschedule", "cancelsession", "replay", "coupon", "export", "nope",
]  # fmt: skip
PREFIXES = ["buy", "course", "cat", "pay", "rate", "lang", "faq", "page", "sess", "rev", "zz"]
WEIRD = [
    "²", "٣", "１２", "9" * 30, "2147483648", "-1", "0", "#1", "1", "<b>", "</i>", "&", "<x>",
    "\ud800", "\udfff", "0001-01-01T00:00", "9999-12-31T23:59", "2020-01-01T10:00", "a" * 300,
    "at", "all", "https://x.org", "\u202e", "\x00", "🙂", "'; drop table learners; --",
]  # fmt: skip


class Counter(logging.Handler):
    """Counts log lines by what they say."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.handler_errors = 0
        self.rejected = 0
        self.locked = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.name == "bot.core" and "failed on" in text:
            self.handler_errors += 1
        if "not delivered (failed)" in text or "rejected" in text:
            self.rejected += 1
        if "database is locked" in text:
            self.locked += 1


def words(rng: random.Random, n: int) -> str:
    pool = WEIRD + ["python", "课程", "hello", "1", "2", "3"]
    return " ".join(rng.choice(pool) for _ in range(n))


def fuzzed(rng: random.Random, user: dict, n: int) -> dict:
    """One hostile update (its update_id is assigned by the fake)."""
    chat = {"id": user["id"], "type": "private"}
    base = {"message_id": n, "date": 1_790_000_000, "chat": chat, "from": user}
    roll = rng.random()
    if roll < 0.35:
        command = rng.choice(COMMANDS)
        return {"message": {**base, "text": f"/{command} {words(rng, rng.randint(0, 4))}"}}
    if roll < 0.55:
        return {"message": {**base, "text": words(rng, rng.randint(1, 6))}}
    if roll < 0.75:
        data = ":".join([rng.choice(PREFIXES), *(rng.choice(WEIRD) for _ in range(2))])
        query = {
            "id": f"cb{n}",
            "from": user,
            "chat_instance": "1",
            "data": data.encode("utf-8", "replace").decode()[:64],
            "message": {**base, "from": {"id": 1, "is_bot": True, "first_name": "bot"}},
        }
        return {"callback_query": query}
    if roll < 0.83:
        query = {
            "id": f"pcq{n}",
            "from": user,
            "currency": rng.choice(["XTR", "USD"]),
            "total_amount": rng.choice([1, 150, 0, 2**40]),
            "invoice_payload": rng.choice(["order:1", f"order:{rng.choice(WEIRD)}", "x"]),
        }
        return {"pre_checkout_query": query}
    if roll < 0.93:
        paid = {
            "currency": "XTR",
            "total_amount": rng.choice([1, 150, 250]),
            "invoice_payload": rng.choice(["order:1", f"order:{rng.choice(WEIRD)}", ""]),
            "telegram_payment_charge_id": f"fuzz-{n}",
            "provider_payment_charge_id": "",
        }
        return {"message": {**base, "successful_payment": paid}}
    broken = dict(base)
    broken.pop(rng.choice(["chat", "date"]))
    if rng.random() < 0.5:
        broken["date"] = "yesterday"
    return {"message": broken}


async def storm(n_updates: int, seed: int, folder: Path) -> dict:
    rng = random.Random(seed)
    counter = Counter()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.INFO)
    async with FakeTelegram() as tg:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{folder / 'fuzz.db'}",
            telegram_bot_token=tg.token,
            telegram_api_url=tg.base_url,
            admins=frozenset({f"telegram:{ADMIN}"}),
            web_port=0,
            _env_file=None,
        )
        app = await build_app(settings, clock=SystemClock())
        async with app.uow() as uow:
            await seed_demo(uow)
        channel = AiogramChannel(app)
        await start_channels(app, [channel])
        users = [tg.user(ADMIN, language_code="en")] + [
            tg.user(700_000 + i, language_code=rng.choice(["en", "zh", "de"])) for i in range(50)
        ]
        callbacks, pre_checkouts = [], []
        for n in range(n_updates):
            user = rng.choice(users)
            update = fuzzed(rng, user.user_dict, n)
            if "callback_query" in update:
                callbacks.append(update["callback_query"]["id"])
            if "pre_checkout_query" in update:
                pre_checkouts.append(update["pre_checkout_query"]["id"])
                tg._precheckout_queries[update["pre_checkout_query"]["id"]] = tg.clock()
            await tg.push_update(update)
        started = time.monotonic()
        await tg.wait_until(lambda: not tg.pending_updates, 600, what="every update taken")
        probe = tg.user(799_999, language_code="en")
        await probe.send("/help")
        try:
            await probe.wait_for_message(has("Commands"), timeout=600)
            alive = channel._polling is not None and not channel._polling.done()
        except TimeoutError:
            alive = False
        elapsed = time.monotonic() - started
        answered = {c.get("callback_query_id") for c in tg.calls("answerCallbackQuery")}
        result = {
            "updates": n_updates,
            "seconds": elapsed,
            "handler exceptions": counter.handler_errors + channel.failed_updates,
            "rejected replies": counter.rejected,
            "unanswered callbacks": sum(1 for c in callbacks if c not in answered),
            "unanswered pre-checkouts": sum(
                1 for q in pre_checkouts if q not in tg.precheckout_answers
            ),
            "unparsable updates skipped": channel.skipped_updates,
            "database is locked": counter.locked,
            "process alive": "yes" if alive else "no",
        }
        await channel.stop()
        await app.close()
    logging.getLogger().removeHandler(counter)
    return result


def spawn(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/coursebot"), "run"],
        env=env,
        cwd=str(ROOT),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def crash_test(n_users: int, folder: Path) -> dict:
    """n users each send /help; kill -9 the bot when about half got their reply; restart."""
    db = folder / "crash.db"
    async with FakeTelegram() as tg:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_URL": tg.base_url,
            "WEB_PORT": "0",
            "RECOMMENDER_MODEL_PATH": str(folder / "none.npz"),
            "LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [str(ROOT / ".venv/bin/coursebot"), "seed-demo"],
            env=env, cwd=str(ROOT), check=True, capture_output=True,
        )  # fmt: skip
        users = [tg.user(800_000 + i, language_code="en") for i in range(n_users)]
        for user in users:
            await user.send("/help")
        log = folder / "crash.log"
        proc = spawn(env, log)

        def replies(user) -> int:
            return sum("Commands" in (m.get("text") or "") for m in tg.messages_for(user.id))

        with contextlib.suppress(TimeoutError):
            await tg.wait_until(
                lambda: sum(replies(u) > 0 for u in users) >= n_users // 2, 120, what="half"
            )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = sum(replies(u) > 0 for u in users)
        # Restart like a supervisor (systemd Restart=always): the dead poller's lease may make
        # the new process refuse to start for up to SCHEDULER_LEASE_SECONDS; try again.
        proc = spawn(env, log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(replies(u) > 0 for u in users):
            await asyncio.sleep(1)
            if proc.poll() is not None:
                proc = spawn(env, log)
        with contextlib.suppress(TimeoutError):
            await tg.wait_until(lambda: all(replies(u) > 0 for u in users), 300, what="all")
        await asyncio.sleep(3)  # anything sent twice would arrive now
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        counts = [replies(u) for u in users]
        locked = log.read_text(errors="replace").count("database is locked")
    return {
        "users": n_users,
        "answered before kill -9": at_kill,
        "lost replies": sum(c == 0 for c in counts),
        "duplicated replies": sum(c > 1 for c in counts),
        "database is locked (bot log)": locked,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--crash-users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        result = await storm(args.updates, args.seed, folder)
        logging.disable(logging.CRITICAL)
        print(f"fuzz: {result['updates']} updates in {result['seconds']:.1f} s")
        for key, value in result.items():
            if key not in ("updates", "seconds"):
                print(f"  {key:28} {value}")
        crash = await crash_test(args.crash_users, folder)
        print(f"crash test: kill -9 during /help from {crash['users']} users, then restart")
        for key, value in crash.items():
            if key != "users":
                print(f"  {key:28} {value}")


if __name__ == "__main__":
    asyncio.run(main())
