"""location and splash page settings (issue 10): splash text and brand colour

Revision ID: c4d5e6f7a8b9
Revises: c3d4e5f6a7b8
Create Date: 2026-12-03 08:40:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "c4d5e6f7a8b9"
down_revision = "c3d4e5f6a7b8"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("location", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), server_default="en", nullable=False)
        )
    with op.batch_alter_table("splash_page", schema=None) as batch_op:
        batch_op.add_column(sa.Column("text", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("brand_color", sa.String(length=7), server_default="#2563eb", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("splash_page", schema=None) as batch_op:
        batch_op.drop_column("brand_color")
        batch_op.drop_column("text")
    with op.batch_alter_table("location", schema=None) as batch_op:
        batch_op.drop_column("language")
