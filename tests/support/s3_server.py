"""A real S3-compatible server for tests: moto in server mode on 127.0.0.1, with planted credentials.

The credentials are random per server and set in the AWS_* environment variables the way a user would;
tests grep every output for them.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

from horizonlens.bench.scaleout import local_s3


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
    bucket, key_id = f"hl-test-{uuid.uuid4().hex[:8]}", f"AKIAPLANTED{uuid.uuid4().hex[:9].upper()}"
    secret = f"planted-secret-{uuid.uuid4().hex}"
    with local_s3(bucket, key_id, secret) as endpoint:
        yield S3Server(endpoint, bucket, key_id, secret)
