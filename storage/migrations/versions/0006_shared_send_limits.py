"""Shared send limits: per-channel send slots and per-chat turns for several senders

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_slots",
        sa.Column("channel", sa.String(length=16), primary_key=True),
        sa.Column("slot", sa.Integer(), primary_key=True),
        sa.Column("free_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "chat_turns",
        sa.Column("channel", sa.String(length=16), primary_key=True),
        sa.Column("user_ref", sa.String(length=64), primary_key=True),
        sa.Column("free_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_chat_turns_free_at", "chat_turns", ["free_at"])


def downgrade() -> None:
    op.drop_index("ix_chat_turns_free_at", table_name="chat_turns")
    op.drop_table("chat_turns")
    op.drop_table("send_slots")
