"""A dataset's writer lock: an advisory `flock` on local disk, a leased lock object in object storage.

Locally the lock is `<dataset>/.lock`, held with `flock`; the kernel releases it when the writer dies, and any
spelling of the folder reaches the same file. Object storage has no flock, so there the lock is an object
made by a conditional PUT, named after the normalised location (storage/location.py), so that every spelling
of one dataset takes the same lock:

`PUT .lock` with `If-None-Match: *` succeeds for exactly one writer (S3 has honoured it since 2024; so do
MinIO and moto). The holder renews its lease in the background with `If-Match: <etag>` and deletes the
object with `If-Match` when done. A writer that died leaves the object behind; once its lease has run out,
measured on the server's clock (the object's Last-Modified against the Date of the reply), the next
writer deletes it, again with `If-Match`, so two writers cannot both break it and both take it.

Conditional requests are not part of pyarrow's filesystem API, so the lock uses boto3 (the `s3` extra);
data files and manifests are written through pyarrow.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from horizonlens.errors import CorpusError, CorpusLockedError
from horizonlens.storage.location import CorpusPath, ObjectPath, redact

LOCK = ".lock"
DEFAULT_LEASE_S = 120.0


@contextmanager
def writer_lock(root: CorpusPath, timeout_s: float) -> Iterator[ObjectLock | None]:
    """Hold the writer lock of the dataset at `root`; yields the object lock (to check its lease) or None."""
    if isinstance(root, ObjectPath):
        lock = ObjectLock(root / LOCK)
        lock.acquire(timeout_s)
        try:
            yield lock
        finally:
            lock.release()
        return
    with _file_lock(root, timeout_s):
        yield None


@contextmanager
def _file_lock(root: Path, timeout_s: float) -> Iterator[None]:
    path = root / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise CorpusError(f"{root}: read-only for this user; cannot write here "
                              "(import into a copy, or ask the owner)") from exc
        raise CorpusError(f"{path}: cannot open the lock file ({exc.strerror})") from exc
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CorpusLockedError(f"{root}: another writer holds the lock{_holder(fd)}; it did not "
                                            f"finish within {timeout_s:g} s. Try again when it is done.") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} since {now}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock (the kernel also releases it if we are killed)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""


def _client() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise CorpusError("writing to s3:// needs the s3 extra for its lock: pip install 'horizonlens[s3]'") from exc
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client("s3", region_name=region, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class ObjectLock:
    """An exclusive lease on `path` (an object key), held from `acquire()` to `release()`."""

    def __init__(self, path: ObjectPath, lease_s: float = DEFAULT_LEASE_S):
        self.path = path
        self.bucket, _, self.key = path.key.partition("/")
        self.lease_s = lease_s
        self.etag: str | None = None
        self.lost = False  # the lease lapsed (e.g. this process was stopped for longer than it)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._s3 = _client()

    def _body(self) -> bytes:
        holder = {"holder": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lease_s": self.lease_s}
        return json.dumps(holder).encode()

    def acquire(self, timeout_s: float) -> None:
        """Take the lock, breaking one whose lease ran out; CorpusLockedError after `timeout_s`."""
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                reply = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*")
                self.etag = reply["ETag"]
                break
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise CorpusError(redact(f"{self.path}: cannot take the writer lock ({exc})")) from None
            except BotoCoreError as exc:
                raise CorpusError(redact(f"{self.path}: cannot take the writer lock ({exc})")) from None
            holder = self._break_if_stale()
            if time.monotonic() >= deadline:
                raise CorpusLockedError(f"{self.path.parent}: another writer holds the lock ({holder}); it did not "
                                        f"finish within {timeout_s:g} s. Try again when it is done.")
            time.sleep(0.2)
        self._renewer = threading.Thread(target=self._renew, name="horizonlens-lock-lease", daemon=True)
        self._renewer.start()

    def _break_if_stale(self) -> str:
        """Delete the lock if its lease ran out (server clock); returns who holds it, for the message."""
        from botocore.exceptions import ClientError

        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self.key)
            body = json.loads(self._s3.get_object(Bucket=self.bucket, Key=self.key, IfMatch=head["ETag"])
                              ["Body"].read())
        except (ClientError, ValueError):
            return "unknown holder"  # released in between, or not ours to read
        now = parsedate_to_datetime(head["ResponseMetadata"]["HTTPHeaders"]["date"])
        age = (now - head["LastModified"]).total_seconds()
        lease = float(body.get("lease_s") or self.lease_s)
        if age > lease:
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=head["ETag"])
            except ClientError:
                pass  # someone else broke or renewed it first
        return f"pid {body.get('pid')} on {body.get('host')} since {body.get('since')}"

    def _renew(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        while not self._stop.wait(self.lease_s / 3):
            try:
                reply = self._s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), IfMatch=self.etag)
                self.etag = reply["ETag"]
            except (ClientError, BotoCoreError):
                self.lost = True
                return

    def check(self) -> None:
        """Raise CorpusLockedError if the lease was lost (call right before publishing)."""
        if self.lost or self.etag is None:
            raise CorpusLockedError(f"{self.path.parent}: this writer's lock lapsed; nothing was published. "
                                    "Run the command again.")

    def release(self) -> None:
        """Stop renewing and delete the lock (only if it is still ours)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        if self.etag is not None and not self.lost:
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except (ClientError, BotoCoreError):
                pass
        self.etag = None
