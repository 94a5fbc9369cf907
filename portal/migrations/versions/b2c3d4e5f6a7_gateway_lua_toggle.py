"""gateway Lua toggle (issue 9): sms_gateway.lua_enabled

A custom gateway's Lua script now runs only while "Use custom Lua script" is on. Gateways that
already have a script had it running, so they start with the toggle on.

Revision ID: b2c3d4e5f6a7
Revises: b1c2d3e4f5a6
Create Date: 2026-12-03 07:20:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "b2c3d4e5f6a7"
down_revision = "b1c2d3e4f5a6"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sms_gateway", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lua_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    gateways = sa.table(
        "sms_gateway",
        sa.column("id", sa.Integer),
        sa.column("settings", sa.JSON),
        sa.column("lua_enabled", sa.Boolean),
    )
    connection = op.get_bind()
    scripted = [
        row.id
        for row in connection.execute(sa.select(gateways.c.id, gateways.c.settings))
        if str((row.settings or {}).get("lua_script") or "").strip()
    ]
    if scripted:
        connection.execute(
            gateways.update().where(gateways.c.id.in_(scripted)).values(lua_enabled=True)
        )


def downgrade():
    with op.batch_alter_table("sms_gateway", schema=None) as batch_op:
        batch_op.drop_column("lua_enabled")
