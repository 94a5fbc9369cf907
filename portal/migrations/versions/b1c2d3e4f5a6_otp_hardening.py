"""OTP hardening (issue 9): guest codes kept encrypted beside their masked message text

Revision ID: b1c2d3e4f5a6
Revises: 8da4a5900c8d
Create Date: 2026-12-03 07:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b1c2d3e4f5a6"
down_revision = "8da4a5900c8d"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_sealed", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.drop_column("code_sealed")
