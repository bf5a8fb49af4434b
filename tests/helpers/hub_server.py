"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, enough for ``snapshot_download``: a
repository's file list at a revision, and each file's metadata (HEAD) and bytes (GET) at a commit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from helpers.http_server import local_server

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@contextmanager
def hub_server(repos: dict[str, Path], requests: list[str]) -> Iterator[str]:
    """Serve each ``OWNER/NAME -> folder`` as a public model repository whose ``main`` is :data:`COMMIT`;
    every request's method and path is appended to ``requests``. Yields the endpoint for ``HF_ENDPOINT``."""

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            requests.append(f"{self.command} {self.path}")
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 4:  # /api/models/OWNER/NAME[/revision|tree/REV]
                repo = "/".join(parts[2:4])
                if repo not in repos:
                    return self._missing()
                files = {path.name: path.read_bytes() for path in sorted(repos[repo].iterdir())}
                if parts[4:5] == ["tree"]:
                    answer: object = [{"type": "file", "path": name, "size": len(data), "oid": _blob_id(data)}
                                      for name, data in files.items()]
                else:
                    answer = {"id": repo, "sha": COMMIT, "private": False,
                              "siblings": [{"rfilename": name} for name in files]}
                return self._send(json.dumps(answer).encode(), "application/json", body)
            if len(parts) == 5 and parts[2] == "resolve":  # /OWNER/NAME/resolve/REV/FILE
                repo, name = "/".join(parts[:2]), parts[4]
                if repo not in repos or not (repos[repo] / name).is_file():
                    return self._missing()
                data = (repos[repo] / name).read_bytes()
                return self._send(data, "application/octet-stream", body, etag=_blob_id(data))
            self._missing()

        def _send(self, data: bytes, kind: str, body: bool, etag: str | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Repo-Commit", COMMIT)
            if etag is not None:
                self.send_header("ETag", f'"{etag}"')
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _missing(self) -> None:
            message = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(message)

    with local_server(Hub) as url:
        yield url


def _blob_id(data: bytes) -> str:
    """git's object id of a file, which the Hub reports for files not kept in LFS."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
