"""Courses: updated_at (indexed), so the search index reads only what changed; created_at
indexed (the newest courses); (category_id, active, created_at) covers the
catalogue's counts and a category's newest courses

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_courses_updated", ["updated_at"])
        batch_op.create_index("ix_courses_created", ["created_at"])
        batch_op.create_index(
            "ix_courses_category_active", ["category_id", "active", "created_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_index("ix_courses_category_active")
        batch_op.drop_index("ix_courses_created")
        batch_op.drop_index("ix_courses_updated")
        batch_op.drop_column("updated_at")
