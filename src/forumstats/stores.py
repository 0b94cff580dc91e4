"""The output store: whole-object put/get/list/delete on a local directory or an S3 bucket.

Keys are relative, slash-separated paths such as ``"minute/dt=2024-01-01/part-0.parquet"``.
Hostile keys (empty, absolute, with ``..``, ``//``, backslashes or control characters) are
rejected with :class:`~forumstats.errors.StoreError` by every adapter, as defence in depth.

``open_store(url)`` picks the adapter: ``s3://bucket/prefix`` gives :class:`S3Store`, anything
else (``file:///abs/dir`` or a plain path) gives :class:`LocalStore`.

ETags are opaque strings. Both adapters return the quoted MD5 hex of the content for objects
they wrote in one piece, so a put's ETag equals the one later reads report.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlsplit

from .errors import ConfigError, StoreError

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = [
    "LocalStore",
    "S3Store",
    "Store",
    "StoreNotFound",
    "open_store",
    "validate_key",
]

T = TypeVar("T")

_TMP_PREFIX = ".forumstats-tmp-"
_boto_lock = threading.Lock()
_boto_loader: list[object] = []  # botocore's model loader, shared: loading it costs ~0.3 s
_MAX_KEY_BYTES = 1024


class StoreNotFound(StoreError):
    """The requested key does not exist in the store."""


@runtime_checkable
class Store(Protocol):
    """What the pipeline needs from an output store."""

    url: str

    def put(self, key: str, data: bytes,
            content_type: str = "application/octet-stream") -> str:
        """Atomically create or replace the whole object; return its ETag."""
        ...

    def put_if_absent(self, key: str, data: bytes,
                      content_type: str = "application/octet-stream") -> bool:
        """Create the object only if the key is free; False if it already existed."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; StoreNotFound if it does not exist."""
        ...

    def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes | None, str]:
        """(None, etag) if the object still has ``etag``, else (bytes, new etag)."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys (relative to the store root) that start with ``prefix``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """(filesystem, base path) for pyarrow readers of the same root."""
        ...


# --------------------------------------------------------------------------- keys


def validate_key(key: object, *, prefix: bool = False) -> str:
    """Return ``key`` if it is a safe relative object key, else raise StoreError.

    With ``prefix=True`` the empty string and a trailing slash are allowed (list prefixes).
    """
    if not isinstance(key, str):
        raise StoreError(f"store keys must be strings, not {type(key).__name__}")
    if not key:
        if prefix:
            return key
        raise StoreError("store key is empty: use a relative path like 'a/b.parquet'")
    shown = repr(key[:200])
    problems = []
    if key.startswith("/"):
        problems.append("is absolute")
    if ".." in key:
        problems.append("contains '..'")
    if "//" in key:
        problems.append("contains '//'")
    if "\\" in key:
        problems.append("contains a backslash")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        problems.append("contains a NUL or control character")
    if not prefix and key.endswith("/"):
        problems.append("ends with '/'")
    parts = key.split("/")
    if any(part == "." for part in parts):
        problems.append("has a '.' path segment")
    if any(part.startswith(_TMP_PREFIX) for part in parts):
        problems.append(f"uses the reserved name prefix {_TMP_PREFIX!r}")
    if len(key.encode("utf-8", errors="surrogatepass")) > _MAX_KEY_BYTES:
        problems.append(f"is longer than {_MAX_KEY_BYTES} bytes")
    if problems:
        what = "prefix" if prefix else "key"
        raise StoreError(f"rejected store {what} {shown}: it {', '.join(problems)}; "
                         "use a relative path like 'a/b.parquet'")
    return key


def _etag_of(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


# --------------------------------------------------------------------------- local


class LocalStore:
    """A directory tree. Writes go to a temp file in the target directory, are fsynced and
    renamed into place, so readers see either the old or the new object, never a torn one."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _write_temp(self, target: Path, data: bytes) -> Path:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create directory {target.parent}: {exc.strerror}; check "
                             "that the output directory is writable") from exc
        tmp = target.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write {target}: {exc.strerror}; check free space and "
                             "permissions of the output directory") from exc
        return tmp

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def put(self, key: str, data: bytes,
            content_type: str = "application/octet-stream") -> str:
        target = self._path(key)
        tmp = self._write_temp(target, data)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot replace {target}: {exc.strerror}") from exc
        self._fsync_dir(target.parent)
        return _etag_of(data)

    def put_if_absent(self, key: str, data: bytes,
                      content_type: str = "application/octet-stream") -> bool:
        target = self._path(key)
        tmp = self._write_temp(target, data)
        try:
            os.link(tmp, target)  # atomic, fails if the target exists
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot create {target}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._fsync_dir(target.parent)
        return True

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise StoreNotFound(f"{key!r} does not exist in {self.url}") from None
        except IsADirectoryError:
            raise StoreNotFound(f"{key!r} is a directory, not an object, in {self.url}") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc

    def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes | None, str]:
        data = self.get(key)
        current = _etag_of(data)
        if etag is not None and etag == current:
            return None, current
        return data, current

    def list(self, prefix: str = "") -> list[str]:
        validate_key(prefix, prefix=True)
        # Walk only below the deepest directory the prefix names.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort()
        return keys

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StoreError(f"cannot delete {path}: {exc.strerror}") from exc

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        import pyarrow.fs

        return pyarrow.fs.LocalFileSystem(), str(self.root)


# --------------------------------------------------------------------------- S3


_TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "Throttling", "ThrottlingException",
    "ThrottledException", "RequestThrottled", "RequestThrottledException", "SlowDown",
    "TooManyRequestsException", "RequestLimitExceeded", "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded", "InternalError", "ServiceUnavailable", "ServiceUnavailableException",
    "ConditionalRequestConflict", "OperationAborted",
})
_CREDENTIAL_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
    "ExpiredToken", "TokenRefreshRequired", "AuthorizationHeaderMalformed",
    "InvalidClientTokenId", "AllAccessDisabled",
})


class S3Store:
    """An S3 bucket (optionally below a key prefix) reached through boto3.

    Credentials come only from the standard AWS chain (environment, profile, instance role).
    Every attempt has short connect/read timeouts; transient failures (connection errors,
    timeouts, 5xx, throttling) are retried ``retries`` times with exponential backoff and
    jitter, so at most ``1 + retries`` attempts are made. :attr:`max_backoff_total` is the
    longest the retries can sleep in total.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, *,
                 retries: int = 5, region: str | None = None, connect_timeout: float = 2.0,
                 read_timeout: float = 5.0, backoff_base: float = 0.25,
                 backoff_cap: float = 8.0) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"invalid S3 bucket name {bucket!r}: use s3://BUCKET/prefix")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        if retries < 0:
            raise ConfigError("S3 retries must not be negative")
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self.region = (region or os.environ.get("AWS_REGION")
                       or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._client = self._make_client()

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def max_backoff_total(self) -> float:
        """Upper bound of the total sleep between attempts of one operation."""
        return sum(min(self.backoff_cap, self.backoff_base * 2 ** i)
                   for i in range(self.retries))

    def _make_client(self):
        import boto3
        import botocore.session
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
            retries={"total_max_attempts": 1},  # retrying is done here, with our budget
            max_pool_connections=32,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        with _boto_lock:
            # A fresh botocore session per store (so credentials are resolved from the
            # environment as it is now), sharing only the read-only service-model loader.
            session = botocore.session.Session()
            if _boto_loader:
                session.register_component("data_loader", _boto_loader[0])
            else:
                _boto_loader.append(session.get_component("data_loader"))
            return boto3.session.Session(botocore_session=session).client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)

    # -- key mapping
    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self) -> str:
        return f"{self.url} (endpoint {self.endpoint_url or 'AWS default'})"

    # -- retries and error translation
    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** attempt)
        return delay / 2 + random.uniform(0, delay / 2)

    def _call(self, what: str, key: str | None, fn: Callable[[], T],
              on_retry: Callable[[], None] | None = None) -> T:
        """Run ``fn`` with retries on transient errors; translate errors to StoreError."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        attempt = 0
        while True:
            try:
                return fn()
            except ClientError as exc:
                if not self._is_transient_client_error(exc) or attempt >= self.retries:
                    raise self._translate(what, key, exc, attempt + 1) from exc
            except NoCredentialsError as exc:
                raise StoreError(
                    f"S3 {what} on {self._where()} failed: no AWS credentials found; set "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from exc
            except BotoCoreError as exc:
                if not self._is_transient_botocore_error(exc) or attempt >= self.retries:
                    raise self._translate(what, key, exc, attempt + 1) from exc
            time.sleep(self._backoff(attempt))
            attempt += 1
            if on_retry is not None:
                on_retry()

    @staticmethod
    def _is_transient_botocore_error(exc: Exception) -> bool:
        from botocore import exceptions as bex

        transient = (bex.ConnectionError, bex.HTTPClientError, bex.ReadTimeoutError,
                     bex.ConnectTimeoutError, bex.ConnectionClosedError,
                     bex.IncompleteReadError, bex.ResponseStreamingError)
        return isinstance(exc, transient)

    @staticmethod
    def _is_transient_client_error(exc: Exception) -> bool:
        response = getattr(exc, "response", {}) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429 or code in _TRANSIENT_CODES

    def _translate(self, what: str, key: str | None, exc: Exception,
                   attempts: int) -> StoreError:
        """A StoreError that says what to check. Built from safe fields only: error code,
        HTTP status, endpoint and bucket; never from request headers or credentials."""
        from botocore.exceptions import BotoCoreError, ClientError

        target = f"{key!r} in {self._where()}" if key is not None else self._where()
        tries = f" after {attempts} attempt{'s' if attempts > 1 else ''}"
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket"):
                return StoreNotFound(f"{key!r} does not exist in {self.url}")
            if code == "NoSuchBucket":
                hint = (f"bucket {self.bucket!r} does not exist at this endpoint: create it or "
                        "fix the output URL / endpoint")
            elif code in _CREDENTIAL_CODES or status == 403:
                hint = ("check the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                        "or AWS_PROFILE) and that they may access this bucket")
            elif self._is_transient_client_error(exc):
                hint = "the S3 service kept failing; check its health and try again"
            else:
                hint = "check the endpoint, bucket and request"
            return StoreError(f"S3 {what} of {target} failed{tries}: {code} (HTTP {status}); "
                              f"{hint}")
        assert isinstance(exc, BotoCoreError)
        if self._is_transient_botocore_error(exc):
            hint = (f"check that the S3 endpoint {self.endpoint_url or '(AWS default)'} is "
                    "reachable and running")
        else:
            hint = "check the endpoint URL, region and bucket"
        return StoreError(f"S3 {what} of {target} failed{tries}: {type(exc).__name__}: "
                          f"{exc}; {hint}")

    # -- operations
    def put(self, key: str, data: bytes,
            content_type: str = "application/octet-stream") -> str:
        full = self._full(key)
        data = bytes(data)
        response = self._call("put", key, lambda: self._client.put_object(
            Bucket=self.bucket, Key=full, Body=data, ContentType=content_type))
        return response.get("ETag") or _etag_of(data)

    def put_if_absent(self, key: str, data: bytes,
                      content_type: str = "application/octet-stream") -> bool:
        """Create-only put (``If-None-Match: *``).

        If an earlier attempt of this same call may have landed before a transient error
        and the retry then finds the key taken, the stored bytes are compared with ``data``:
        equal bytes count as our own write (True).
        """
        from botocore.exceptions import ClientError

        full = self._full(key)
        data = bytes(data)
        retried = False

        def mark_retry() -> None:
            nonlocal retried
            retried = True

        try:
            self._call("put_if_absent", key, lambda: self._client.put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentType=content_type,
                IfNoneMatch="*"), on_retry=mark_retry)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and (
                    cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412
                    or cause.response.get("Error", {}).get("Code") == "PreconditionFailed"):
                if retried:
                    try:
                        return self.get(key) == data
                    except StoreNotFound:
                        return False
                return False
            raise
        return True

    def _get_object(self, key: str, **extra: str) -> tuple[bytes, str]:
        full = self._full(key)

        def fetch() -> tuple[bytes, str]:
            response = self._client.get_object(Bucket=self.bucket, Key=full, **extra)
            with contextlib.closing(response["Body"]) as body:
                payload = body.read()
            return payload, response.get("ETag") or _etag_of(payload)

        return self._call("get", key, fetch)

    def get(self, key: str) -> bytes:
        return self._get_object(key)[0]

    def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes | None, str]:
        from botocore.exceptions import ClientError

        if etag is None:
            return self._get_object(key)
        try:
            return self._get_object(key, IfNoneMatch=etag)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and (
                    cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304
                    or str(cause.response.get("Error", {}).get("Code")) in ("304",
                                                                             "NotModified")):
                return None, etag
            raise

    def list(self, prefix: str = "") -> list[str]:
        validate_key(prefix, prefix=True)
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": root + prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix,
                              lambda kwargs=kwargs: self._client.list_objects_v2(**kwargs))
            for item in page.get("Contents", []):
                name = item["Key"]
                if name.startswith(root):
                    keys.append(name[len(root):])
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                break
        keys.sort()
        return keys

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._call("delete", key, lambda: self._client.delete_object(
                Bucket=self.bucket, Key=full))
        except StoreNotFound:
            return

    def arrow_filesystem(self) -> tuple[pyarrow.fs.FileSystem, str]:
        """A pyarrow S3FileSystem on the same endpoint; credentials from the environment."""
        import pyarrow.fs

        options: dict[str, object] = {
            "region": self.region,
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.read_timeout,
            "retry_strategy": pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=self.retries + 1),
        }
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            options["endpoint_override"] = parts.netloc
            options["scheme"] = parts.scheme or "https"
        base = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        return pyarrow.fs.S3FileSystem(**options), base


# --------------------------------------------------------------------------- factory


def open_store(url: str, endpoint_url: str | None = None, retries: int = 5) -> Store:
    """The store for ``url``: ``s3://bucket/prefix``, ``file:///abs/dir`` or a plain path.

    ``endpoint_url`` (S3 only) overrides AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, e.g. for
    SeaweedFS or MinIO. Malformed URLs raise ConfigError.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("the output store URL is empty: use s3://bucket/prefix or a directory")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"S3 URL {url!r} has no bucket: use s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ConfigError(f"S3 URL {url!r} must not have a query or fragment")
        try:
            return S3Store(parts.netloc, unquote(parts.path), endpoint_url, retries=retries)
        except StoreError as exc:
            raise ConfigError(f"invalid S3 URL {url!r}: {exc}") from exc
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL {url!r} names a remote host: use file:///abs/dir")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ConfigError(f"file URL {url!r} is not absolute: use file:///abs/dir")
        return LocalStore(path)
    if scheme and len(scheme) > 1:  # one letter would be a Windows drive
        raise ConfigError(f"unsupported output store URL {url!r}: use s3://bucket/prefix, "
                          "file:///abs/dir or a directory path")
    return LocalStore(url)
