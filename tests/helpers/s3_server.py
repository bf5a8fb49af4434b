"""A real S3 endpoint on 127.0.0.1 for the object-storage tests: moto's server in a thread, behind a small
WSGI layer that records every request and can hold checkpoint uploads open (to kill a client mid-upload)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

STEP_UPLOAD = re.compile(r"/checkpoints/step-\d+\.pt$")


class S3Server:
    """moto's S3 app with a record of the requests (``(method, path)`` once each has been answered, in order),
    the step-file uploads begun, and ``upload_delay_s``: how long a step-file upload waits before its body
    is read, so that its client is still sending it for that long."""

    def __init__(self) -> None:
        self.app = DomainDispatcherApplication(create_backend_app)
        self.requests: list[tuple[str, str]] = []
        self.uploads_begun: list[str] = []
        self.upload_delay_s = 0.0
        self.refused_uploads = 0  # how many of the next step-file uploads are refused (403, which is not retried)
        self.url = ""

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if method == "PUT" and STEP_UPLOAD.search(path):
            self.uploads_begun.append(path)
            time.sleep(self.upload_delay_s)
            if self.refused_uploads > 0:
                self.refused_uploads -= 1
                self.requests.append((method, path))
                start_response("403 Forbidden", [("Content-Type", "application/xml")])
                return [b"<Error><Code>AccessDenied</Code><Message>refused by the test</Message></Error>"]
        try:
            return self.app(environ, start_response)
        finally:
            self.requests.append((method, path))


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Serve S3 on a free port of 127.0.0.1; yields the server (its ``url`` set), shuts down on exit."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = S3Server()
    httpd = make_server("127.0.0.1", 0, server, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield server
    finally:
        httpd.shutdown()
        thread.join(timeout=5)
