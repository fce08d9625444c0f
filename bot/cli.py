"""`coursebot …` command line (typer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from bot.settings import Settings

app = typer.Typer(
    help="coursebot: a chat-bot storefront for paid live courses.", no_args_is_help=True
)
console = Console(soft_wrap=True)
DRIVERS = ("asyncpg", "psycopg", "aiosqlite")
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def load_settings(**overrides) -> Settings:
    """Settings from the environment; a bad value is one clear line per setting and exit 2."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        for problem in error.errors():
            name = "_".join(str(part) for part in problem["loc"]).upper() or "settings"
            message = problem["msg"].removeprefix("Value error, ")
            errors.print(f"configuration error: {name}: {message} (see .env.example)")
        raise typer.Exit(code=2) from None


@contextlib.contextmanager
def database_errors(settings: Settings):
    """Turn a missing driver or an unreachable database into one line (traceback at DEBUG)."""
    from storage.db import sqlite_path_problem

    problem = sqlite_path_problem(settings.database_url)
    if problem:
        errors.print(f"configuration error: DATABASE_URL: {problem}")
        raise typer.Exit(code=2)
    try:
        yield
    except ModuleNotFoundError as error:
        if settings.log_level.upper() == "DEBUG" or error.name not in DRIVERS:
            raise
        errors.print(
            f"configuration error: DATABASE_URL needs the {error.name} driver: "
            "pip install 'coursebot[postgres]'"
        )
        raise typer.Exit(code=2) from None
    except (OSError, SQLAlchemyError) as error:
        if settings.log_level.upper() == "DEBUG":
            raise
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        errors.print(f"database error: cannot use {_safe_url(settings)}: {reason}")
        raise typer.Exit(code=1) from None


def _settings(**overrides) -> Settings:
    from bot.logging_setup import setup_logging

    settings = load_settings(**overrides)
    setup_logging(settings.log_level, settings.secrets())
    for problem in settings.problems():
        logging.getLogger("coursebot.settings").warning("%s", problem)
    return settings


@app.command()
def demo(
    db: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Start from a copy of this SQLite file (the file itself is never changed)",
    ),
    locale: str = typer.Option("zh", help="Language of the console learner: zh or en"),
    script: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Read the typed lines from this file"
    ),
) -> None:
    """Chat with the storefront in this terminal: demo courses, reminders, announcements."""
    from bot.channels.console import CONSOLE_USER

    with tempfile.TemporaryDirectory(prefix="coursebot-demo-") as folder:
        path = Path(folder) / "demo.db"
        if db is not None:
            shutil.copyfile(db, path)
        base = load_settings()
        settings = _settings(
            database_url=f"sqlite+aiosqlite:///{path}",
            admins=base.admins | {f"console:{CONSOLE_USER}"},
            log_level="WARNING",
            default_locale=locale,
            recommender_model_path=str(Path(folder) / "model.npz"),
            scheduler_jobstore_url=None,
        )
        console.print(f"[bold]coursebot demo[/bold] — {'copy of ' + str(db) if db else 'fresh'}")
        console.print(
            "Type /help, /catalog, /search python … ; a number presses an option; "
            "/wait 5 waits five seconds; /quit leaves. Payments are simulated (TEST MODE). "
            "Reminders, links and announcements arrive here as they would on Telegram.\n"
        )
        lines = script.open(encoding="utf-8") if script else sys.stdin
        try:
            with database_errors(settings):
                asyncio.run(_demo(settings, locale, lines))
        finally:
            if script:
                lines.close()


async def _demo(settings: Settings, locale: str, lines) -> None:
    from bot.bootstrap import build_app
    from bot.channels.console import ConsoleChannel, run_console
    from bot.demo import seed_demo
    from bot.runner import start_scheduler_and_sender

    app_ = await build_app(settings)
    services = []
    try:
        async with app_.uow() as uow:
            await seed_demo(uow)
        channel = ConsoleChannel(app_.dispatcher.dispatch, locale=locale)
        app_.channels.add(channel)
        services = await start_scheduler_and_sender(app_)
        await channel.handle_line("/start")
        await run_console(channel, lines)
    finally:
        for service in reversed(services):
            await service.stop()
        await app_.close()


def channel_names(settings: Settings) -> list[str]:
    """The channels `coursebot run` would start with these settings."""
    names = []
    if settings.telegram_bot_token:
        names.append(
            f"telegram ({settings.telegram_runtime}, "
            f"{'webhook' if settings.telegram_webhook_url else 'polling'})"
        )
    if getattr(settings, "wechat_token", None) and settings.wechat_app_id:
        names.append("wechat")
    return names


@app.command()
def check() -> None:
    """Print the configuration as the bot sees it (secrets masked), the database and channels."""
    from rich.table import Table

    settings = _settings()
    table = Table("setting", "value", title="configuration")
    for name, value in settings.model_dump().items():
        shown = "**********" if isinstance(value, SecretStr) and value else value
        table.add_row(name.upper(), "" if shown is None else str(shown))
    console.print(table)
    try:
        current, head = asyncio.run(_database_revision(settings.database_url))
    except Exception as error:  # noqa: BLE001 - reported as one line, whatever the driver
        errors.print(f"database: cannot reach {_safe_url(settings)}: {error.__class__.__name__}")
        raise typer.Exit(code=1) from None
    state = "up to date" if current == head else "needs `coursebot migrate`"
    console.print(
        f"database: {_safe_url(settings)} reached; migration {current} (code {head}), {state}"
    )
    names = channel_names(settings)
    console.print(f"channels: {', '.join(names) if names else 'none (console demo only)'}")


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


async def _database_revision(url: str) -> tuple[str | None, str]:
    from storage.db import make_engine
    from storage.migrate import revisions

    engine = make_engine(url)
    try:
        return await revisions(engine)
    finally:
        await engine.dispose()


@app.command("seed-demo")
def seed_demo_command() -> None:
    """Load the demo catalog into DATABASE_URL (does nothing if courses exist)."""

    async def run() -> int:
        from bot.bootstrap import build_app
        from bot.demo import seed_demo

        app_ = await build_app(_settings())
        try:
            async with app_.uow() as uow:
                return await seed_demo(uow)
        finally:
            await app_.close()

    with database_errors(load_settings()):
        added = asyncio.run(run())
    console.print(f"added {added} demo courses" if added else "courses exist; nothing added")


@app.command()
def migrate() -> None:
    """Upgrade DATABASE_URL to the newest schema (Alembic)."""
    from storage.migrate import upgrade

    settings = _settings()
    with database_errors(settings):
        upgrade(settings.database_url)
    console.print("database is up to date")


@app.command()
def run(
    role: str = typer.Option(
        "all", help="all | web | scheduler | sender (bot = web): split the process for scale"
    ),
) -> None:
    """Run every configured channel, the scheduler and the sender, or one role of them."""
    from bot.channels.base import ChannelConfigError
    from bot.runner import run_forever

    settings = _settings()
    try:
        with database_errors(settings):
            asyncio.run(run_forever(settings, role))
    except ChannelConfigError as problem:
        errors.print(f"configuration error: {problem}")
        raise typer.Exit(code=2) from None


def _mount_recommender() -> None:
    from recommender.cli import recommender_app, set_train_loader

    def load_from_database():
        async def read():
            from bot.bootstrap import build_app
            from services.recommendations import training_data

            app_ = await build_app(_settings())
            try:
                async with app_.uow() as uow:
                    return await training_data(uow)
            finally:
                await app_.close()

        return asyncio.run(read())

    try:
        model_path = Path(Settings().recommender_model_path)
    except ValidationError:  # reported when a command runs; `--help` works whatever is set
        model_path = None
    set_train_loader(load_from_database, model_path)
    app.add_typer(recommender_app, name="recommender")


_mount_recommender()


def _mount_wechat() -> None:
    from bot.wechat_cli import wechat_app

    app.add_typer(wechat_app, name="wechat")


_mount_wechat()

if __name__ == "__main__":
    app()
