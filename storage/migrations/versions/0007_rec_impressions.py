"""Recommendation impressions: which suggestions a learner was shown (click-through in /stats)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rec_impressions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "learner_id",
            sa.Integer(),
            sa.ForeignKey("learners.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "course_id",
            sa.Integer(),
            sa.ForeignKey("courses.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("learner_id", "course_id", "day", name="uq_rec_impressions_day"),
    )
    op.create_index(
        "ix_rec_impressions_course_shown", "rec_impressions", ["course_id", "shown_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_rec_impressions_course_shown", table_name="rec_impressions")
    op.drop_table("rec_impressions")
