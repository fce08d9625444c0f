"""`python -m bot` is `coursebot`."""

from bot.cli import app

app()
