"""Deploy the model to a real SageMaker endpoint with the ``sagemaker`` SDK (v3).

What a deployment does, in order (:func:`plan_deployment` computes it, offline)::

    S3 PutObject            the artifact (endpoint.artifact.build_artifact) to
                            <s3-uri>/models/<model-name>/model.tar.gz, with its SHA-256
    CreateModel             the scikit-learn framework container (image URI from the SDK's
                            image_uris.retrieve), SAGEMAKER_PROGRAM=inference.py from
                            /opt/ml/model/code, the execution role
    CreateEndpointConfig    one production variant (instance type and count) and data capture
                            (S3 destination, sampling percentage, request and/or response)
    CreateEndpoint          when the endpoint does not exist,
    or UpdateEndpoint       when it does (a blue/green switch to the new endpoint config)

Model and endpoint config names are derived from content: ``<endpoint>-<artifact sha256[:12]>``
and ``...-<config sha256[:8]>``, so deploying the same artifact with the same options again
creates nothing new, and any change gets fresh names (SageMaker models and endpoint configs are
immutable).

The SDK (v3: ``sagemaker-core``) supplies the container image URI (``image_uris.retrieve``),
the request shapes (``ContainerDefinition``, ``ProductionVariant``, ``DataCaptureConfig``, ...)
and their serialisation into API requests. :func:`execute` sends those serialised requests as
they are through boto3, so the dry run (the same requests as JSON, no credentials, no network)
is exactly what a deployment sends. sagemaker-core's resource classes (``Model.create`` and so
on) were not used for sending: they merge defaults from the SDK's config files into the
requests and describe every resource after creating it, so what they send can differ from the
plan.

The handler needs Python 3.10 or later and numpy, so the default container is the scikit-learn
image built on Python 3.12 (``--framework-version 1.4-2-py312``).

Public API::

    DeployOptions(s3_uri, role_arn, endpoint_name="review-sentiment", region="us-east-1", ...)
    plan_deployment(options) -> DeploymentPlan          # offline; .to_json() is the dry run
    execute(plan, session=None, *, wait=True, echo=print) -> str   # "created", "updated", ...
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .artifact import build_artifact
from .inference import default_model_dir, model_fn
from .model import ModelInfo

__all__ = [
    "DEFAULT_FRAMEWORK_VERSION",
    "DeployOptions",
    "DeploymentPlan",
    "Step",
    "execute",
    "plan_deployment",
]

DEFAULT_FRAMEWORK_VERSION = "1.4-2-py312"
VARIANT = "AllTraffic"
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_S3 = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/.*)?$")
_CAPTURE_JSON_TYPES = ["application/json", "application/jsonlines"]
_CAPTURE_CSV_TYPES = ["text/csv"]

Action = Literal["auto", "create", "update"]


@dataclass(frozen=True)
class DeployOptions:
    """What to deploy where. ``s3_uri`` (``s3://bucket/prefix``) receives the artifact and,
    unless ``capture_s3_uri`` says otherwise, the captured data under ``data-capture/``.
    ``action``: ``auto`` looks the endpoint up and creates or updates it."""

    s3_uri: str
    role_arn: str
    endpoint_name: str = "review-sentiment"
    region: str = "us-east-1"
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    framework_version: str = DEFAULT_FRAMEWORK_VERSION
    capture: bool = True
    capture_s3_uri: str | None = None
    capture_percent: int = 100
    capture_input: bool = True
    capture_output: bool = True
    model_dir: Path | None = None
    action: Action = "auto"
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not _S3.match(self.s3_uri):
            problems.append(f"s3_uri must be s3://bucket[/prefix], got {self.s3_uri!r}")
        if self.capture_s3_uri is not None and not _S3.match(self.capture_s3_uri):
            problems.append(
                f"capture_s3_uri must be s3://bucket[/prefix], got {self.capture_s3_uri!r}"
            )
        if not _ROLE.match(self.role_arn):
            problems.append(
                f"role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), "
                f"got {self.role_arn!r}"
            )
        if not _NAME.match(self.endpoint_name):
            problems.append(
                "endpoint_name must be 1-63 letters, digits and hyphens, "
                f"got {self.endpoint_name!r}"
            )
        if not self.instance_type.startswith("ml."):
            problems.append(
                f"instance_type must be a SageMaker type (ml.*), got {self.instance_type!r}"
            )
        if self.instance_count < 1:
            problems.append("instance_count must be at least 1")
        if not 1 <= self.capture_percent <= 100:
            problems.append("capture_percent must be between 1 and 100")
        if self.capture and not (self.capture_input or self.capture_output):
            problems.append("data capture needs the request, the response or both")
        if self.action not in ("auto", "create", "update"):
            problems.append("action must be auto, create or update")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def bucket(self) -> str:
        return _split_s3(self.s3_uri)[0]

    @property
    def prefix(self) -> str:
        return _split_s3(self.s3_uri)[1]

    @property
    def capture_destination(self) -> str:
        return self.capture_s3_uri or _join_s3(self.s3_uri, "data-capture")


@dataclass(frozen=True)
class Step:
    """One API request of a deployment. ``condition``: when it is sent (None: always)."""

    service: Literal["s3", "sagemaker"]
    operation: str
    request: dict[str, Any]
    condition: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.service, "operation": self.operation}
        if self.condition is not None:
            out["condition"] = self.condition
        out["request"] = self.request
        return out


@dataclass(frozen=True)
class DeploymentPlan:
    """Everything a deployment sends, computed without touching AWS."""

    options: DeployOptions
    artifact: bytes = field(repr=False)
    sha256: str
    model_version: str
    image_uri: str
    artifact_s3_uri: str
    model_name: str
    endpoint_config_name: str
    steps: tuple[Step, ...]

    def step(self, operation: str) -> Step:
        return next(s for s in self.steps if s.operation == operation)

    def to_json(self) -> dict[str, Any]:
        """The dry run: the requests, as the SDK serialises them for the service."""
        return {
            "endpoint_name": self.options.endpoint_name,
            "region": self.options.region,
            "artifact": {
                "s3_uri": self.artifact_s3_uri,
                "bytes": len(self.artifact),
                "sha256": self.sha256,
                "model_version": self.model_version,
            },
            "image_uri": self.image_uri,
            "steps": [s.to_json() for s in self.steps],
        }


@contextlib.contextmanager
def _sdk_import() -> Iterator[None]:
    """Import the SDK without its import-time noise (invalid escape sequences in docstrings,
    deprecations of its own dependencies), which is not ours to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        yield


def _split_s3(uri: str) -> tuple[str, str]:
    match = _S3.match(uri)
    if match is None:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return match.group(1), (match.group(2) or "").strip("/")


def _join_s3(uri: str, *parts: str) -> str:
    bucket, prefix = _split_s3(uri)
    key = "/".join(p for p in (prefix, *parts) if p)
    return f"s3://{bucket}/{key}"


def _name(base: str, *suffixes: str) -> str:
    """``base-suffix...`` within SageMaker's 63 characters (``base`` shortened if needed)."""
    tail = "".join(f"-{s}" for s in suffixes)
    return base[: 63 - len(tail)].rstrip("-") + tail


def image_uri(options: DeployOptions) -> str:
    """The scikit-learn framework inference image for the region and instance type."""
    with _sdk_import():
        from sagemaker.core import image_uris

    uri: str = image_uris.retrieve(
        framework="sklearn",
        region=options.region,
        version=options.framework_version,
        py_version="py3",
        instance_type=options.instance_type,
        image_scope="inference",
    )
    return uri


def plan_deployment(options: DeployOptions) -> DeploymentPlan:
    """Build the artifact and compute every request of the deployment (no AWS calls)."""
    o = options
    model_dir = o.model_dir or default_model_dir()
    model = model_fn(model_dir)
    artifact = _artifact_bytes(model_dir)
    digest = hashlib.sha256(artifact).hexdigest()
    model_name = _name(o.endpoint_name, digest[:12])
    key = "/".join(p for p in (o.prefix, "models", model_name, "model.tar.gz") if p)
    artifact_s3_uri = f"s3://{o.bucket}/{key}"
    image = image_uri(o)
    tags = _tags(o, model)
    model_args = _model_args(o, model_name, image, artifact_s3_uri, tags)
    config_args = _endpoint_config_args(o, model_name, tags)
    config_name = _name(o.endpoint_name, digest[:12], _args_digest(config_args)[:8])
    config_args = {"endpoint_config_name": config_name, **config_args}
    upload = Step(
        "s3",
        "PutObject",
        {
            "Bucket": o.bucket,
            "Key": key,
            "ContentType": "application/gzip",
            "ContentLength": len(artifact),
            "ChecksumSHA256": base64.b64encode(hashlib.sha256(artifact).digest()).decode(),
            "Metadata": {"model-version": model.version, "sha256": digest},
        },
    )
    create_model = Step(
        "sagemaker",
        "CreateModel",
        _request(model_args),
        condition="no model of this name yet (the name carries the artifact's SHA-256)",
    )
    create_config = Step(
        "sagemaker",
        "CreateEndpointConfig",
        _request(config_args),
        condition="no endpoint config of this name yet (the name carries the config's hash)",
    )
    return DeploymentPlan(
        options=o,
        artifact=artifact,
        sha256=digest,
        model_version=model.version,
        image_uri=image,
        artifact_s3_uri=artifact_s3_uri,
        model_name=model_name,
        endpoint_config_name=config_name,
        steps=(upload, create_model, create_config, *_endpoint_steps(o, config_name, tags)),
    )


def _artifact_bytes(model_dir: Path) -> bytes:
    """The SageMaker artifact (``model.tar.gz``) of ``model_dir``, built in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="sentiment-artifact-") as tmp:
        return build_artifact(Path(tmp) / "model.tar.gz", model_dir).read_bytes()


def _tags(options: DeployOptions, model: ModelInfo) -> list[Any]:
    """The tags of every resource: the project's, the model's, then the caller's (sorted)."""
    with _sdk_import():
        from sagemaker.core.shapes import Tag

    return [
        Tag(key="project", value="sentiment-monitor"),
        Tag(key="model-name", value=model.name),
        Tag(key="model-version", value=model.version),
        *(Tag(key=k, value=v) for k, v in sorted(options.tags.items())),
    ]


def _model_args(
    options: DeployOptions, model_name: str, image: str, artifact_s3_uri: str, tags: list[Any]
) -> dict[str, Any]:
    """The CreateModel arguments: the framework container running ``code/inference.py``."""
    with _sdk_import():
        from sagemaker.core.shapes import ContainerDefinition

    return {
        "model_name": model_name,
        "primary_container": ContainerDefinition(
            image=image,
            mode="SingleModel",
            model_data_url=artifact_s3_uri,
            environment={
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                "SAGEMAKER_REGION": options.region,
            },
        ),
        "execution_role_arn": options.role_arn,
        "tags": tags,
    }


def _endpoint_config_args(
    options: DeployOptions, model_name: str, tags: list[Any]
) -> dict[str, Any]:
    """The CreateEndpointConfig arguments but its name (which is derived from their hash):
    one production variant and, when asked for, data capture."""
    with _sdk_import():
        from sagemaker.core.shapes import ProductionVariant

    o = options
    args: dict[str, Any] = {
        "production_variants": [
            ProductionVariant(
                variant_name=VARIANT,
                model_name=model_name,
                initial_instance_count=o.instance_count,
                instance_type=o.instance_type,
                initial_variant_weight=1.0,
            )
        ],
    }
    if o.capture:
        args["data_capture_config"] = _data_capture(o)
    args["tags"] = tags
    return args


def _data_capture(options: DeployOptions) -> Any:
    """The endpoint's data capture: where, how much, and requests and/or responses."""
    with _sdk_import():
        from sagemaker.core.shapes import (
            CaptureContentTypeHeader,
            CaptureOption,
            DataCaptureConfig,
        )

    o = options
    modes = [m for m, on in (("Input", o.capture_input), ("Output", o.capture_output)) if on]
    return DataCaptureConfig(
        enable_capture=True,
        initial_sampling_percentage=o.capture_percent,
        destination_s3_uri=o.capture_destination,
        capture_options=[CaptureOption(capture_mode=m) for m in modes],
        capture_content_type_header=CaptureContentTypeHeader(
            json_content_types=list(_CAPTURE_JSON_TYPES),
            csv_content_types=list(_CAPTURE_CSV_TYPES),
        ),
    )


def _args_digest(args: Mapping[str, Any]) -> str:
    """SHA-256 of resource arguments as the SDK serialises them (key order does not count)."""
    with _sdk_import():
        from sagemaker.core.utils.utils import serialize

    return hashlib.sha256(json.dumps(serialize(args), sort_keys=True).encode()).hexdigest()


def _endpoint_steps(options: DeployOptions, config_name: str, tags: list[Any]) -> list[Step]:
    """CreateEndpoint and/or UpdateEndpoint, as ``action`` asks (``auto``: both, each with
    the condition under which :func:`execute` sends it)."""
    o = options
    endpoint_args = {"endpoint_name": o.endpoint_name, "endpoint_config_name": config_name}
    steps = []
    if o.action in ("auto", "create"):
        steps.append(
            Step(
                "sagemaker",
                "CreateEndpoint",
                _request({**endpoint_args, "tags": tags}),
                condition="the endpoint does not exist" if o.action == "auto" else None,
            )
        )
    if o.action in ("auto", "update"):
        steps.append(
            Step(
                "sagemaker",
                "UpdateEndpoint",
                _request(endpoint_args),
                condition="the endpoint exists with another endpoint config"
                if o.action == "auto"
                else None,
            )
        )
    return steps


_PASCAL = {
    "model_name": "ModelName",
    "primary_container": "PrimaryContainer",
    "execution_role_arn": "ExecutionRoleArn",
    "tags": "Tags",
    "endpoint_config_name": "EndpointConfigName",
    "production_variants": "ProductionVariants",
    "data_capture_config": "DataCaptureConfig",
    "endpoint_name": "EndpointName",
}


def _request(args: Mapping[str, Any]) -> dict[str, Any]:
    """The request the SDK sends for these resource arguments (its own serialiser)."""
    with _sdk_import():
        from sagemaker.core.utils.utils import serialize

    out: dict[str, Any] = serialize({_PASCAL[k]: v for k, v in args.items()})
    return out


#: error codes of a Describe* call on a resource that does not exist
_NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NotFound"})


def _missing(err: Exception) -> bool:
    """Whether a Describe* call failed because the resource does not exist.

    SageMaker answers a missing model, endpoint configuration or endpoint with its generic
    ``ValidationException``, and only the message (``Could not find ...``) tells that apart from
    a malformed request, so for that one code the message decides. (This package imports
    nothing else of the project, since its artifact runs alone in the model container, so it
    keeps this small check of its own instead of using :mod:`stream.retry`.)"""
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError):
        return False
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in _NOT_FOUND_CODES:
        return True
    message = str(error.get("Message", ""))
    return code == "ValidationException" and message.startswith("Could not find")


def execute(
    plan: DeploymentPlan,
    session: Any = None,
    *,
    wait: bool = True,
    echo: Callable[[str], None] = print,
) -> str:
    """Send the plan's requests, exactly as the dry run prints them, with credentials from
    ``session`` (a ``boto3.Session``) or the usual chain. Returns what happened to the
    endpoint: ``created``, ``updated`` or ``unchanged``."""
    import boto3

    o = plan.options
    session = session or boto3.Session(region_name=o.region)
    s3 = session.client("s3", region_name=o.region)
    sm = session.client("sagemaker", region_name=o.region)

    s3.put_object(Body=plan.artifact, **plan.step("PutObject").request)
    echo(f"uploaded {plan.artifact_s3_uri} ({len(plan.artifact)} bytes, sha256 {plan.sha256})")
    if _describe(sm.describe_model, ModelName=plan.model_name) is None:
        sm.create_model(**plan.step("CreateModel").request)
        echo(f"created model {plan.model_name}")
    else:
        echo(f"model {plan.model_name} exists")
    config = plan.endpoint_config_name
    if _describe(sm.describe_endpoint_config, EndpointConfigName=config) is None:
        sm.create_endpoint_config(**plan.step("CreateEndpointConfig").request)
        echo(f"created endpoint config {config}")
    else:
        echo(f"endpoint config {config} exists")

    outcome = _switch_endpoint(plan, sm)
    if outcome == "unchanged":
        echo(f"endpoint {o.endpoint_name} already runs {config}")
        return outcome
    echo(f"{outcome} endpoint {o.endpoint_name} with {config}")
    if wait:
        echo(f"waiting for {o.endpoint_name} to be InService (several minutes)...")
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName=o.endpoint_name, WaiterConfig={"Delay": 15, "MaxAttempts": 120}
        )
        echo(f"endpoint {o.endpoint_name} is InService")
    return outcome


def _describe(call: Callable[..., dict[str, Any]], **kwargs: str) -> dict[str, Any] | None:
    """The answer of a Describe* call, or None when the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return call(**kwargs)
    except ClientError as err:
        if _missing(err):
            return None
        raise


def _switch_endpoint(plan: DeploymentPlan, sm: Any) -> str:
    """Create the endpoint, or point it at the plan's endpoint config, as ``action`` allows:
    ``created``, ``updated``, or ``unchanged`` when it already runs that config."""
    o = plan.options
    endpoint = _describe(sm.describe_endpoint, EndpointName=o.endpoint_name)
    if endpoint is None:
        if o.action == "update":
            raise ValueError(f"endpoint {o.endpoint_name} does not exist: nothing to update")
        sm.create_endpoint(**plan.step("CreateEndpoint").request)
        return "created"
    if o.action == "create":
        raise ValueError(f"endpoint {o.endpoint_name} exists: use --action update or auto")
    if endpoint.get("EndpointConfigName") == plan.endpoint_config_name:
        return "unchanged"
    sm.update_endpoint(**plan.step("UpdateEndpoint").request)
    return "updated"
