"""WeChat Pay Native orders

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wechat_pay_orders",
        sa.Column("out_trade_no", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("user_ref", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("code_url", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queried_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("out_trade_no"),
        sa.UniqueConstraint("transaction_id"),
    )
    with op.batch_alter_table("wechat_pay_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wechat_pay_orders_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_wechat_pay_orders_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wechat_pay_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wechat_pay_orders_status"))
        batch_op.drop_index(batch_op.f("ix_wechat_pay_orders_order_id"))
    op.drop_table("wechat_pay_orders")
