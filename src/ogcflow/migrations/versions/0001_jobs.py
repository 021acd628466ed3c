"""Jobs and callbacks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("process_id", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("progress", sa.Integer),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("started", sa.DateTime),
        sa.Column("finished", sa.DateTime),
        sa.Column("updated", sa.DateTime, nullable=False),
        sa.Column("duration", sa.Float),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON),
        sa.Column("error", sa.JSON),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("worker", sa.String(256)),
        sa.Column("heartbeat", sa.DateTime),
        sa.Column("run_ref", sa.String(256)),
    )
    op.create_index("ix_jobs_ns_created", "jobs", ["namespace", "created"])
    op.create_index("ix_jobs_ns_status_created", "jobs", ["namespace", "status", "created"])
    op.create_index("ix_jobs_ns_process_created", "jobs", ["namespace", "process_id", "created"])
    op.create_index("ix_jobs_engine_status_created", "jobs", ["engine", "status", "created"])
    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.DateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_callbacks_job_id", "callbacks", ["job_id"])
    op.create_index("ix_callbacks_state_next", "callbacks", ["state", "next_at"])


def downgrade() -> None:
    op.drop_table("callbacks")
    op.drop_table("jobs")
