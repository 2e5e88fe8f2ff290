"""A real S3-compatible server for tests: moto in server mode on 127.0.0.1, with planted credentials.

The credentials are random per server and set in the AWS_* environment variables the way a user would;
tests grep every output for them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

from horizonlens.bench.browser import free_port


@dataclass(frozen=True)
class S3Server:
    """A running server, the bucket made for the tests, and the secrets to look for in outputs."""

    endpoint: str
    bucket: str
    key_id: str
    secret: str

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def leaks(self, text: str) -> list[str]:
        """Which planted credentials appear in `text`."""
        return [name for name, value in (("secret", self.secret), ("key id", self.key_id)) if value in text]

    def client(self):  # noqa: ANN201
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start moto's server, set the AWS_* variables, make a bucket; stop it and restore the environment after."""
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{port}", f"hl-test-{uuid.uuid4().hex[:8]}",
                      f"AKIAPLANTED{uuid.uuid4().hex[:9].upper()}", f"planted-secret-{uuid.uuid4().hex}")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                                            "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN")}
    try:
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        os.environ.update(AWS_ACCESS_KEY_ID=server.key_id, AWS_SECRET_ACCESS_KEY=server.secret,
                          AWS_REGION="us-east-1", AWS_ENDPOINT_URL=server.endpoint)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
