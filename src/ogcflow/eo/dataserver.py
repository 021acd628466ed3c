"""A small static HTTP server with byte ranges (what GDAL's /vsicurl/ uses for COG windowed reads), for
the demo's synthetic scenes and the tests. Runs in a thread of the calling process.

A GDAL reader in the *same* process must open its files with ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (as
the crop step does): otherwise GDAL lists the file's directory (``GET /dir/``) from a call during which
rasterio keeps Python's GIL, so this server's thread never gets to answer and both wait for each other.
Readers in other processes (the job's steps, a bench's child) are not affected; the server answers a
directory with 404 at once."""

from __future__ import annotations

import mimetypes
import re
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=a-b`` answered 206 (one range)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        path = Path(self.translate_path(self.path))
        return path if path.is_file() else None

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        path = self._file()
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "no such file")
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start = max(size - int(match.group(2)), 0)
            if start >= size or start > end:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        with path.open("rb") as f:
            head_bytes = f.read(4096) if path.suffix == ".json" else b""
            f.seek(start)
            body = f.read(end + 1 - start)
        self.send_response(status)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".json":
            media = "application/geo+json" if b'"Feature"' in head_bytes else "application/json"
        self.send_header("Content-Type", media)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.server.traffic.add(len(body))  # type: ignore[attr-defined]


class Traffic:
    """What a server's readers downloaded: GET responses and their body bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += size


class DataServer:
    """Serves ``root`` on ``http://<host>:<port>/`` (port 0: a free one) until :meth:`stop`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0,
                 handler: type[RangeHandler] = RangeHandler) -> None:
        self.root = Path(root).resolve()
        root_dir = str(self.root)

        class Handler(handler):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=root_dir, **kwargs)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.traffic = Traffic()
        self.httpd.traffic = self.traffic  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="data-server", daemon=True)

    def start(self) -> DataServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
