"""portal tables: locations, splash pages, guests, guest sessions, admins

Revision ID: 93ff6dcd286d
Revises: 78450b3b02e5
Create Date: 2026-11-22 01:10:45.653459

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "93ff6dcd286d"
down_revision = "78450b3b02e5"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "admin",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin")),
        sa.UniqueConstraint("username", name=op.f("uq_admin_username")),
    )
    op.create_table(
        "guest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=True),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("marketing_consent", sa.Boolean(), nullable=False),
        sa.Column("consent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest")),
        sa.UniqueConstraint("phone", name=op.f("uq_guest_phone")),
    )
    op.create_table(
        "location",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=2), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_location")),
        sa.UniqueConstraint("slug", name=op.f("uq_location_slug")),
    )
    op.create_table(
        "guest_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guest_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("client_mac", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("ap", sa.String(length=64), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("verified_by_otp", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"],
            ["guest.id"],
            name=op.f("fk_guest_session_guest_id_guest"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["location.id"],
            name=op.f("fk_guest_session_location_id_location"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_session")),
    )
    with op.batch_alter_table("guest_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_guest_session_guest_id"), ["guest_id"], unique=False)
        batch_op.create_index(
            "ix_guest_session_location_started", ["location_id", "started_at"], unique=False
        )

    op.create_table(
        "splash_page",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("otp_enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"],
            ["location.id"],
            name=op.f("fk_splash_page_location_id_location"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_splash_page")),
        sa.UniqueConstraint("location_id", name=op.f("uq_splash_page_location_id")),
    )


def downgrade():
    op.drop_table("splash_page")
    with op.batch_alter_table("guest_session", schema=None) as batch_op:
        batch_op.drop_index("ix_guest_session_location_started")
        batch_op.drop_index(batch_op.f("ix_guest_session_guest_id"))

    op.drop_table("guest_session")
    op.drop_table("location")
    op.drop_table("guest")
    op.drop_table("admin")
