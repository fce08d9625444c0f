"""`coursebot …` command line (typer)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console

from bot.settings import Settings

app = typer.Typer(
    help="coursebot: a chat-bot storefront for paid live courses.", no_args_is_help=True
)
console = Console()
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


def _settings(**overrides) -> Settings:
    from bot.logging_setup import setup_logging

    settings = load_settings(**overrides)
    setup_logging(settings.log_level, settings.secrets())
    return settings


@app.command()
def demo(
    db: Path | None = typer.Option(None, help="SQLite file to use (default: a fresh temp file)"),
    locale: str = typer.Option("zh", help="Language of the console learner: zh or en"),
) -> None:
    """Chat with the storefront in this terminal, on a fresh SQLite database with demo courses."""
    from bot.channels.console import CONSOLE_USER

    path = db or Path(tempfile.mkdtemp(prefix="coursebot-demo-")) / "demo.db"
    base = load_settings()
    settings = _settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        admins=base.admins | {f"console:{CONSOLE_USER}"},
        log_level="WARNING",
        default_locale=locale,
    )
    console.print(f"[bold]coursebot demo[/bold] — database: {path}")
    console.print(
        "Type /help, /catalog, /search python … ; a number presses an option; "
        "/quit to leave. Payments here are simulated (TEST MODE).\n"
    )
    asyncio.run(_demo(settings, locale))


async def _demo(settings: Settings, locale: str) -> None:
    from bot.bootstrap import build_app
    from bot.channels.console import ConsoleChannel, run_console
    from bot.demo import seed_demo

    app_ = await build_app(settings)
    try:
        async with app_.uow() as uow:
            await seed_demo(uow)
        channel = ConsoleChannel(app_.dispatcher.dispatch, locale=locale)
        app_.channels.add(channel)
        await channel.handle_line("/start")
        await run_console(channel)
    finally:
        await app_.close()


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

    added = asyncio.run(run())
    console.print(f"added {added} demo courses" if added else "courses exist; nothing added")


@app.command()
def migrate() -> None:
    """Upgrade DATABASE_URL to the newest schema (Alembic)."""
    from storage.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print("database is up to date")


@app.command()
def run(
    role: str = typer.Option("all", help="all | bot | scheduler: split the process for scale"),
) -> None:
    """Run every configured channel (and, with later roles, the scheduler) in one process."""
    from bot.runner import run_forever

    settings = _settings()
    asyncio.run(run_forever(settings, role))


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

if __name__ == "__main__":
    app()
