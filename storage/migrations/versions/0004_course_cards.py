"""Course cards: the instructor's short bio and an optional cover image

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("instructor_bio", sa.String(length=280), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("cover_image", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("cover_image")
        batch_op.drop_column("instructor_bio")
