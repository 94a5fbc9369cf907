"""guests and 1:1 SMS (issue 10): who sent a message, guests' opt-out, list indexes

Revision ID: c2d3e4f5a6b7
Revises: c1d2e3f4a5b6
Create Date: 2026-12-03 08:40:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c2d3e4f5a6b7"
down_revision = "c1d2e3f4a5b6"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_by", sa.String(length=120), nullable=True))
        batch_op.create_index(
            "ix_sms_message_customer_created", ["customer_ref", "created_at"], unique=False
        )
    with op.batch_alter_table("guest", schema=None) as batch_op:
        batch_op.add_column(sa.Column("opted_out_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_guest_last_seen_id", ["last_seen", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("guest", schema=None) as batch_op:
        batch_op.drop_index("ix_guest_last_seen_id")
        batch_op.drop_column("opted_out_at")
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_message_customer_created")
        batch_op.drop_column("sent_by")
