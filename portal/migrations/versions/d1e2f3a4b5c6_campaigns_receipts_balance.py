"""campaigns, opt-outs, delivery receipts and balance checks (issues 11 and 12)

Revision ID: d1e2f3a4b5c6
Revises: c4d5e6f7a8b9
Create Date: 2026-12-03 10:45:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "d1e2f3a4b5c6"
down_revision = "c4d5e6f7a8b9"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "sms_campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column("window_start", sa.SmallInteger(), nullable=True),
        sa.Column("window_end", sa.SmallInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expanded", sa.Boolean(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("exclusions", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["sms_template.id"],
            name=op.f("fk_sms_campaign_template_id_sms_template"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_campaign")),
    )
    op.create_index("ix_sms_campaign_status_scheduled", "sms_campaign", ["status", "scheduled_at"])
    op.create_table(
        "sms_opt_out",
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["sms_gateway.id"],
            name=op.f("fk_sms_opt_out_gateway_id_sms_gateway"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_sms_opt_out")),
    )
    op.create_table(
        "sms_pending_receipt",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["sms_gateway.id"],
            name=op.f("fk_sms_pending_receipt_gateway_id_sms_gateway"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_pending_receipt")),
    )
    op.create_index(
        "ix_sms_pending_receipt_provider",
        "sms_pending_receipt",
        ["gateway_id", "provider_message_id"],
    )
    op.create_index("ix_sms_pending_receipt_received", "sms_pending_receipt", ["received_at"])
    op.create_table(
        "sms_balance_reading",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("gateway_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("value", sa.Numeric(precision=14, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["sms_gateway.id"],
            name=op.f("fk_sms_balance_reading_gateway_id_sms_gateway"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_balance_reading")),
    )
    op.create_index(
        "ix_sms_balance_reading_gateway_checked",
        "sms_balance_reading",
        ["gateway_id", "checked_at"],
    )
    with op.batch_alter_table("sms_gateway", schema=None) as batch_op:
        batch_op.add_column(sa.Column("currency", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("price_per_part", sa.Numeric(precision=12, scale=5), nullable=True)
        )
        batch_op.add_column(
            sa.Column("balance_check", sa.JSON(), server_default="{}", nullable=False)
        )
        batch_op.add_column(sa.Column("balance_alert", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("balance_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("hook_token", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hooks", sa.JSON(), server_default="{}", nullable=False))
        batch_op.create_unique_constraint(batch_op.f("uq_sms_gateway_hook_token"), ["hook_token"])
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("error_code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("receipt_at", sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_sms_message_campaign_id_sms_campaign"),
            "sms_campaign",
            ["campaign_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_sms_message_campaign_status", ["campaign_id", "status"])
        batch_op.create_unique_constraint("uq_sms_message_campaign_to", ["campaign_id", "to"])


def downgrade():
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.drop_constraint("uq_sms_message_campaign_to", type_="unique")
        batch_op.drop_index("ix_sms_message_campaign_status")
        batch_op.drop_constraint(
            batch_op.f("fk_sms_message_campaign_id_sms_campaign"), type_="foreignkey"
        )
        batch_op.drop_column("receipt_at")
        batch_op.drop_column("error_code")
        batch_op.drop_column("campaign_id")
    with op.batch_alter_table("sms_gateway", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_sms_gateway_hook_token"), type_="unique")
        batch_op.drop_column("hooks")
        batch_op.drop_column("hook_token")
        batch_op.drop_column("balance_failures")
        batch_op.drop_column("balance_alert")
        batch_op.drop_column("balance_check")
        batch_op.drop_column("price_per_part")
        batch_op.drop_column("currency")
    op.drop_index("ix_sms_balance_reading_gateway_checked", table_name="sms_balance_reading")
    op.drop_table("sms_balance_reading")
    op.drop_index("ix_sms_pending_receipt_received", table_name="sms_pending_receipt")
    op.drop_index("ix_sms_pending_receipt_provider", table_name="sms_pending_receipt")
    op.drop_table("sms_pending_receipt")
    op.drop_table("sms_opt_out")
    op.drop_index("ix_sms_campaign_status_scheduled", table_name="sms_campaign")
    op.drop_table("sms_campaign")
