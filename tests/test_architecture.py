"""The shape of the code, as docs/architecture.md draws it: layers that import only downwards, no import loops
inside a package, and no read of a job by id alone on behalf of a request."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "ogcflow"


def test_layers_and_no_import_loops() -> None:
    """import-linter's contracts in pyproject.toml: a lower layer importing a higher one, or two modules of
    a package importing each other (directly or not), fails here with the import chain."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=SRC.parent.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_requests_read_jobs_within_their_namespace() -> None:
    """``JobStore.for_engine`` (a job by id alone) is for engines and workers: the HTTP layer and the services
    that act for a request read jobs with their namespace."""
    offenders = [f"{path.relative_to(SRC)}:{n}" for folder in ("api", "services")
                 for path in sorted((SRC / folder).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bfor_engine\(", line)]
    assert offenders == []
