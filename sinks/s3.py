"""The lake on S3 (or any S3-compatible store): a :class:`~sinks.lake.LakeWriter` over
awswrangler.

The sink encodes; this module only moves bytes: ``PutObject`` with the session's S3 client,
listing and deleting with awswrangler. Each call runs synchronously in a worker thread
(``asyncio.to_thread``). Outages are retried twice over: botocore retries each request
(``standard`` mode, a few attempts), and around it :func:`stream.retry.retrying` with capped
exponential backoff and jitter that never gives up while the writer runs, so a store that is
down makes ``put`` wait, the sink's ``write`` wait, and the pipeline's bounded queues stop the
source: backpressure, nothing dropped. :meth:`S3LakeWriter.stop` ends the waiting (the pending
call raises :class:`~stream.errors.LakeUnavailable`). Errors that waiting cannot fix (access
denied, no such bucket, a bad KMS key) are raised at once.

``endpoint_url`` points the clients at an S3-compatible server (SeaweedFS, MinIO, moto). It is
applied per session (:class:`EndpointSession`), not through awswrangler's process-wide
``wr.config``, so two lakes on two servers can live in one process.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import awswrangler as wr
import boto3
from botocore.config import Config

from stream.errors import LakeUnavailable, redact_url
from stream.retry import Backoff as _Backoff
from stream.retry import RetryStopped, retrying

__all__ = [
    "Backoff",
    "Encryption",
    "EndpointSession",
    "S3LakeWriter",
    "parse_s3_url",
    "s3_session",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, prefix.strip("/")


@dataclass(frozen=True, slots=True)
class Encryption:
    """Server-side encryption of every object written: ``none``, SSE-S3 (``AES256``) or
    SSE-KMS (``aws:kms`` with ``kms_key_id``; without one the bucket's default key)."""

    mode: Literal["none", "AES256", "aws:kms"] = "none"
    kms_key_id: str | None = None

    def __post_init__(self) -> None:
        if self.kms_key_id is not None and self.mode != "aws:kms":
            raise ValueError("kms_key_id is only used with mode 'aws:kms'")

    def s3_additional_kwargs(self) -> dict[str, str]:
        """What awswrangler passes on to ``PutObject``."""
        if self.mode == "none":
            return {}
        out: dict[str, str] = {"ServerSideEncryption": self.mode}
        if self.kms_key_id is not None:
            out["SSEKMSKeyId"] = self.kms_key_id
        return out


@dataclass(frozen=True, slots=True)
class Backoff(_Backoff):
    """The outer retry loop's waits (see :class:`stream.retry.Backoff`), plus botocore's own
    retry count for one request (``attempts_per_call``) and its timeouts."""

    attempts_per_call: int = 3
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0

    def botocore_config(self) -> Config:
        return Config(
            retries={"total_max_attempts": self.attempts_per_call, "mode": "standard"},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
        )


class EndpointSession(boto3.Session):
    """A boto3 session whose clients default to given endpoints per service (``s3``, ``glue``,
    ``athena``) and to a given botocore config, for the awswrangler calls that create their
    own clients from the session."""

    def __init__(
        self,
        *,
        endpoints: Mapping[str, str] | None = None,
        botocore_config: Config | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoints = dict(endpoints or {})
        self.botocore_config = botocore_config

    def client(self, *args: Any, **kwargs: Any) -> Any:
        service = kwargs.get("service_name", args[0] if args else None)
        if kwargs.get("endpoint_url") is None and service in self.endpoints:
            kwargs["endpoint_url"] = self.endpoints[service]
        if self.botocore_config is not None:
            given = kwargs.get("config")
            kwargs["config"] = (
                self.botocore_config if given is None else given.merge(self.botocore_config)
            )
        return super().client(*args, **kwargs)


def s3_session(
    *,
    region: str | None = None,
    profile: str | None = None,
    s3_endpoint_url: str | None = None,
    glue_endpoint_url: str | None = None,
    athena_endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    backoff: Backoff | None = None,
) -> EndpointSession:
    """The session every lake call uses. Credentials come from the usual AWS chain unless
    given."""
    endpoints = {
        name: url
        for name, url in (
            ("s3", s3_endpoint_url),
            ("glue", glue_endpoint_url),
            ("athena", athena_endpoint_url),
        )
        if url
    }
    return EndpointSession(
        endpoints=endpoints,
        botocore_config=(backoff or Backoff()).botocore_config(),
        region_name=region,
        profile_name=profile,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )


class S3LakeWriter:
    """Writes lake files to ``s3://bucket/prefix/<path>`` with awswrangler."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        session: boto3.Session,
        encryption: Encryption | None = None,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._session = session
        self._encryption = encryption or Encryption()
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._stop = asyncio.Event()
        self._s3: Any = None
        self.retries = 0

    @property
    def base_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"

    def url(self, path: str) -> str:
        return self.base_url + path

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = self._session.client("s3")
        return self._s3

    def stop(self) -> None:
        """Stop waiting for the store: pending and later calls that fail raise
        :class:`LakeUnavailable`. Idempotent; call it from the event loop's thread."""
        self._stop.set()

    async def put(self, path: str, data: bytes) -> None:
        key = self.key(path)
        extra = self._encryption.s3_additional_kwargs()

        def upload() -> None:
            # One PutObject with the session's client. (wr.s3.upload wraps it in a file object
            # that, when the upload fails, tries again from __del__ at garbage collection.)
            self._client().put_object(Bucket=self.bucket, Key=key, Body=data, **extra)

        await self._retrying(f"put into {redact_url(self.base_url)} ({len(data)} bytes)", upload)

    async def list_files(self, prefix: str, suffix: str = ".parquet") -> list[str]:
        url = self.url(prefix.strip("/") + "/")
        base = len(self.base_url)

        def listing() -> list[str]:
            found = wr.s3.list_objects(url, suffix=suffix, boto3_session=self._session)
            return sorted(str(p)[base:] for p in found)

        return await self._retrying(f"list in {redact_url(self.base_url)}", listing)

    async def delete_files(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        urls = [self.url(p) for p in paths]

        def delete() -> None:
            wr.s3.delete_objects(urls, use_threads=False, boto3_session=self._session)

        await self._retrying(f"delete {len(urls)} objects in {redact_url(self.base_url)}", delete)

    async def _retrying(self, what: str, call: Callable[[], _T]) -> _T:
        def count(err: BaseException, delay: float) -> None:
            self.retries += 1

        try:
            return await retrying(
                lambda: asyncio.to_thread(call),
                what=what,
                backoff=self._backoff,
                stop=self._stop,
                rng=self._rng.random,
                on_retry=count,
                log=_log,
            )
        except RetryStopped as stopped:
            raise LakeUnavailable(f"{what}: store unavailable, writer stopped") from (
                stopped.__cause__
            )
