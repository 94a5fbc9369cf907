"""gateway limits: max_per_second and max_in_flight

Revision ID: 8da4a5900c8d
Revises: 4a51ea62feaf
Create Date: 2026-12-02 18:10:48

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "8da4a5900c8d"
down_revision = "4a51ea62feaf"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sms_gateway", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_per_second", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_in_flight", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("sms_gateway", schema=None) as batch_op:
        batch_op.drop_column("max_in_flight")
        batch_op.drop_column("max_per_second")
