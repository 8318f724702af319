"""A notification receiver for tests: a real HTTP server on 127.0.0.1 in the test process that
checks each POST's signature as a studio's receiver would (core.notify.verify) and fails the
attempts it is told to fail."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flamenco.core.notify import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class Received:
    delivery: str
    body: bytes
    signed: bool  # the signature checked out with the receiver's secret
    answer: str  # "200", "500", "drop", "401"

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """Answers POSTs in order of `failures` ("500": an error answer, "drop": the connection
    closed without an answer), then 200 to each correctly signed one (401 otherwise). While
    `refusing` is set it answers 503 to everything (a receiver that is down). With `hold`,
    each POST waits for `release` before its answer (a slow receiver)."""

    def __init__(self, failures: tuple[str, ...] = ()) -> None:
        self.failures = list(failures)
        self.secret = ""
        self.refusing = threading.Event()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        # With `hold` set, each POST is answered only once `release` is set (a slow
        # receiver); `arrived` is set when the first one is in.
        self.hold = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = verify(
                    receiver.secret,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(SIGNATURE_HEADER, ""),
                    now=time.time(),
                )
                receiver.arrived.set()
                if receiver.hold:
                    receiver.release.wait(timeout=60)
                answer = receiver._answer(signed)
                with receiver.lock:
                    receiver.received.append(
                        Received(self.headers.get(DELIVERY_HEADER, ""), body, signed, answer)
                    )
                if answer == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, signed: bool) -> str:
        if self.refusing.is_set():
            return "503"
        with self.lock:
            if self.failures:
                return self.failures.pop(0)
        return "200" if signed else "401"

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.answer == "200"]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
