"""Settings, read once from the environment (prefix ``SENTIMENT_``) and passed down as values.

Nested groups use a double underscore: ``SENTIMENT_KAFKA__BOOTSTRAP_SERVERS=broker:9092``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_CATEGORIES",
    "AlertSettings",
    "BatchSettings",
    "EndpointSettings",
    "KafkaSettings",
    "KinesisSettings",
    "LakeSettings",
    "MonitorSettings",
    "ReviewSettings",
    "Settings",
]

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "Dresses",
    "Knits",
    "Blouses",
    "Sweaters",
    "Pants",
    "Jeans",
    "Fine gauge",
    "Skirts",
    "Jackets",
    "Outerwear",
    "Shorts",
    "Lounge",
    "Swim",
    "Sleep",
    "Trend",
    "Legwear",
    "Intimates",
    "Layering",
)


class BatchSettings(BaseModel):
    """Micro-batching and backpressure."""

    max_events: int = Field(
        2000,
        ge=1,
        description="Close a batch at this many records. A batch costs fixed work beside its "
        "records (the monitors' per-category updates, the lake's grouping, a commit): larger "
        "batches move more events a second, smaller ones deliver sooner.",
    )
    max_wait_ms: int = Field(200, ge=1, description="... or when its first record is this old.")
    queue_batches: int = Field(4, ge=1, description="Batches in flight before the source pauses.")


class EndpointSettings(BaseModel):
    """Where reviews are scored. ``mode=inprocess`` runs the model handler in this process."""

    mode: Literal["inprocess", "sagemaker"] = "inprocess"
    name: str = "review-sentiment"
    url: str | None = Field(None, description="Endpoint URL override (the local server).")
    region: str = "us-east-1"
    model_dir: Path | None = Field(None, description="Model directory; default: the shipped one.")
    records_per_request: int = Field(100, ge=1)
    max_in_flight: int = Field(4, ge=1)
    timeout_s: float = Field(10.0, gt=0)
    auth_token: SecretStr | None = Field(
        None,
        description="Bearer token the local endpoint server asks for (its --auth-token-file).",
    )

    @model_validator(mode="after")
    def _token_needs_url(self) -> EndpointSettings:
        if self.auth_token is not None and self.url is None:
            raise ValueError(
                "endpoint.auth_token is for the local endpoint server (endpoint.url); "
                "SageMaker itself authenticates requests with AWS credentials"
            )
        return self


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    reviews_topic: str = "reviews"
    enriched_topic: str = "reviews.enriched"
    dlq_topic: str = "reviews.dlq"
    alerts_topic: str = "sentiment.alerts"
    monitor_feed_topic: str = "sentiment.monitor-feed"
    monitor_state_topic: str = "sentiment.monitor-state"
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    group_id: str = "sentiment-monitor"
    role: Literal["all", "scoring", "monitor"] = Field(
        "all",
        description="What a worker runs: all (scoring and, on the feed's owner, the monitors), "
        "scoring (reviews to the lake, topics and feed; never the monitors) or monitor (only "
        "the monitors on the feed), so the monitors can have a process of their own.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None


class KinesisSettings(BaseModel):
    """Amazon Kinesis Data Streams: the stream ``worker --source kinesis`` reads and
    ``produce --to kinesis`` writes, and where the worker keeps its shard checkpoints."""

    stream_name: str = "reviews"
    region: str = "us-east-1"
    endpoint_url: str | None = Field(
        None, description="Kinesis-API server (kinesalite, kinesis-mock); default: AWS."
    )
    create_stream: bool = Field(True, description="Create the stream when it does not exist.")
    shards: int = Field(4, ge=1, description="Shards of a stream created here.")
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = Field(
        "TRIM_HORIZON", description="Shard iterator type for a stream with no checkpoint yet."
    )
    checkpoint_location: str = Field(
        "./kinesis-checkpoints", description="Directory or s3://bucket/prefix of checkpoints."
    )
    checkpoint_s3_endpoint_url: str | None = Field(
        None, description="S3-compatible server of s3:// checkpoints; default: the lake's."
    )
    poll_interval_s: float = Field(1.0, gt=0, description="Wait after an empty GetRecords.")
    records_per_call: int = Field(1000, ge=1, le=10_000, description="GetRecords Limit.")
    shard_refresh_s: float = Field(60.0, gt=0, description="How often to look for new shards.")
    max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between retries.")


class MonitorSettings(BaseModel):
    window_minutes: int = Field(60, ge=1)
    allowed_lateness_minutes: int = Field(10, ge=0)
    min_count: int = Field(50, ge=1)
    false_alarm_rate: float = Field(0.001, gt=0, lt=1)
    baseline_events: int = Field(2000, ge=1)
    baseline_path: Path | None = None
    state_save_s: float = Field(
        2.0, gt=0, description="Kafka path: save monitor state at least this often while busy."
    )

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    @property
    def allowed_lateness(self) -> timedelta:
        return timedelta(minutes=self.allowed_lateness_minutes)


class LakeSettings(BaseModel):
    """The data lake (``lake_path`` says where: a directory or ``s3://bucket/prefix``)."""

    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible server (SeaweedFS, MinIO); default: AWS."
    )
    region: str = "us-east-1"
    profile: str | None = Field(None, description="AWS profile; default: the usual chain.")
    sse: Literal["none", "AES256", "aws:kms"] = Field(
        "AES256", description="Server-side encryption of lake objects: SSE-S3 or SSE-KMS."
    )
    kms_key_id: str | None = Field(None, description="KMS key for sse=aws:kms.")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    buffer_max_rows: int = Field(50_000, ge=1, description="Write a partition's file at this.")
    buffer_max_bytes: int = Field(64 * 2**20, ge=1, description="... or this many bytes.")
    buffer_max_age_s: float = Field(60.0, gt=0, description="... or when this old.")
    buffer_max_total_bytes: int = Field(256 * 2**20, ge=1, description="All buffers together.")
    max_concurrent_puts: int = Field(4, ge=1)
    rewind_markers: Literal["off", "write", "trust"] = Field(
        "off",
        description="Pending markers: 'write' keeps one per uncommitted lake file; 'trust' "
        "also rewinds from them instead of listing the whole lake (only once every worker "
        "writes them).",
    )
    retry_max_backoff_s: float = Field(30.0, gt=0, description="Longest wait between retries.")
    glue_database: str | None = Field(None, description="Register the S3 lake in this database.")
    glue_endpoint_url: str | None = None
    athena_workgroup: str = "primary"
    athena_output: str | None = Field(None, description="s3:// location for Athena results.")
    athena_endpoint_url: str | None = None

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> LakeSettings:
        if self.kms_key_id is not None and self.sse != "aws:kms":
            raise ValueError("lake.kms_key_id is only used with lake.sse=aws:kms")
        return self


class AlertSettings(BaseModel):
    """Where the monitors' alerts go besides the alert log and the lake: a signed webhook and
    an SNS topic, each optional. Review texts and evidence terms (words from reviews) reach a
    receiver only with its ``include_text``."""

    webhook_url: SecretStr | None = Field(
        None, description="POST each alert here (JSON); secret: its path often is a token."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the X-Sentiment-Signature header."
    )
    webhook_include_text: bool = Field(
        False, description="Send review texts and terms to the webhook."
    )
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(6, ge=1, description="Tries per alert (with backoff).")
    sns_topic_arn: str | None = Field(None, description="Publish each alert to this topic.")
    sns_region: str = "us-east-1"
    sns_endpoint_url: str | None = Field(None, description="SNS-API server; default: AWS.")
    sns_include_text: bool = Field(False, description="Send review texts and terms to SNS.")


class ReviewSettings(BaseModel):
    """Human review in Label Studio: which reviews go to people, and where."""

    enabled: bool = Field(False, description="Select reviews for people while the pipeline runs.")
    url: str = Field("http://127.0.0.1:8080", description="Label Studio server.")
    token: SecretStr | None = Field(None, description="Label Studio API token.")
    token_file: Path | None = Field(None, description="... or a file holding it (a secret).")
    project: str = Field("Review sentiment", description="Title of the labeling project.")
    state_path: Path = Field(
        Path("./review-state.sqlite"), description="Outbox and sent/synced record (SQLite)."
    )
    threshold: float = Field(0.6, ge=0, le=1, description="Low confidence: top probability below.")
    audit_rate: float = Field(0.01, ge=0, le=1, description="Random audit sample per category.")
    budget_per_hour: int = Field(20, ge=0, description="Most tasks per category and hour.")
    seed: int = Field(13, description="Key of the audit draw.")
    max_outbox: int = Field(100_000, ge=1, description="Selected, not yet sent: at most this.")
    send_batch: int = Field(100, ge=1, description="Tasks per import request.")
    send_interval_s: float = Field(5.0, gt=0, description="How often the outbox is sent.")
    sync_interval_s: float = Field(60.0, gt=0, description="How often annotations are pulled.")
    recent_rows: int = Field(
        20_000, ge=0, description="Recent reviews kept to find the examples of a firing alert."
    )
    annotator_salt: SecretStr | None = Field(
        None,
        description="Secret mixed into the lake's annotator hashes (default: the project title).",
    )

    def hash_salt(self) -> str:
        """What annotator ids are hashed with: ``annotator_salt``, else the project title. The
        title is no secret: anyone who knows a Label Studio user id could recompute its hash,
        so set a salt where the lake's readers must not link labels to people."""
        return self.annotator_salt.get_secret_value() if self.annotator_salt else self.project

    def api_token(self) -> str | None:
        """The token, from ``token`` or else from ``token_file`` (stripped)."""
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return None


class Settings(BaseSettings):
    """Everything the monitor can be told. Every field can be set as ``SENTIMENT_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="SENTIMENT_", env_nested_delimiter="__", extra="ignore"
    )

    lake_path: str = Field("./lake", description="Local directory or s3://bucket/prefix.")
    alerts_path: Path = Path("./alerts.jsonl")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65535)
    max_text_bytes: int = Field(5_000, ge=1, description="Longer review texts: oversize_text.")
    # What a record may hold (stream.validation.DecodeLimits, fields of the same names).
    max_record_bytes: int = Field(
        1024 * 1024, ge=1, description="Larger records are dead letters unread (oversize_record)."
    )
    max_unknown_fields: int = Field(32, ge=0, description="More unknown fields: oversize_record.")
    max_unknown_bytes: int = Field(
        16 * 1024, ge=0, description="Unknown fields' JSON over this: oversize_record."
    )
    max_category_bytes: int = Field(
        64, ge=1, le=79, description="product_category in UTF-8 bytes (names a lake directory)."
    )
    max_event_time_ahead: timedelta = Field(
        timedelta(days=1), description="event_time further ahead of arrival: out of range."
    )
    min_event_time: AwareDatetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC), description="event_time before this: out of range."
    )
    max_dead_letter_raw_bytes: int = Field(
        64 * 1024, ge=0, description="A dead letter keeps this much of the raw record."
    )
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    batch: BatchSettings = BatchSettings()
    endpoint: EndpointSettings = EndpointSettings()
    kafka: KafkaSettings = KafkaSettings()
    kinesis: KinesisSettings = KinesisSettings()
    monitor: MonitorSettings = MonitorSettings()
    lake: LakeSettings = LakeSettings()
    alerts: AlertSettings = AlertSettings()
    review: ReviewSettings = ReviewSettings()
