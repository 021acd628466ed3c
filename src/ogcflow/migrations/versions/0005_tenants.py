"""Tenants: API keys, the owner of each job, and server-wide packages.

- ``api_keys``: one row per key (its id, a SHA-256 of its secret, namespace, role, label, revocation);
- ``jobs.owner``: who submitted the job (the caller's subject), so that executors dismiss their own jobs;
- ``processes.source``/``source_type``: a deployment's request body as sent (an application package), which
  ``GET /processes/{id}/package`` gives back;
- the shipped packages seeded into the ``default`` namespace move to the server-wide scope, visible in every
  namespace.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SHARED = "~shared"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(256)),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("revoked", sa.DateTime),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner", sa.String(256)))
    with op.batch_alter_table("processes") as batch:
        batch.add_column(sa.Column("source", sa.Text))
        batch.add_column(sa.Column("source_type", sa.String(128)))
    seeded = sa.table("seeded_packages", sa.column("namespace", sa.String), sa.column("name", sa.String))
    processes = sa.table("processes", sa.column("namespace", sa.String), sa.column("id", sa.String))
    conn = op.get_bind()
    names = [r[0] for r in conn.execute(sa.select(seeded.c.name).where(seeded.c.namespace == "default"))]
    for name in names:
        conn.execute(processes.update().where(processes.c.namespace == "default", processes.c.id == name)
                     .values(namespace=SHARED))
    conn.execute(seeded.update().where(seeded.c.namespace == "default").values(namespace=SHARED))


def downgrade() -> None:
    conn = op.get_bind()
    seeded = sa.table("seeded_packages", sa.column("namespace", sa.String))
    processes = sa.table("processes", sa.column("namespace", sa.String))
    conn.execute(processes.update().where(processes.c.namespace == SHARED).values(namespace="default"))
    conn.execute(seeded.update().where(seeded.c.namespace == SHARED).values(namespace="default"))
    with op.batch_alter_table("processes") as batch:
        batch.drop_column("source_type")
        batch.drop_column("source")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner")
    op.drop_table("api_keys")
