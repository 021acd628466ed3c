"""Shipped application packages deployed by default are remembered.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seeded_packages",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("seeded", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("seeded_packages")
