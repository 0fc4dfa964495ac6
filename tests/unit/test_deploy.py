"""``sentiment-monitor endpoint deploy --dry-run``: the exact requests a deployment sends,
computed offline (no credentials, no sockets), valid for the services' own API models; and
those requests sent to ``moto_server`` (S3 and SageMaker over HTTP, a subprocess), which
implements everything but UpdateEndpoint."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from typer.testing import CliRunner

from endpoint.artifact import build_artifact
from endpoint.deploy import DeployOptions, _missing, execute, plan_deployment
from endpoint.inference import default_model_dir
from endpoint.model import SentimentModel
from stream.cli import app
from tests.servers.moto import MotoServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
TAGS = [
    {"Key": "project", "Value": "sentiment-monitor"},
    {"Key": "model-name", "Value": "review-sentiment"},
]


@pytest.fixture(autouse=True)
def offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """No AWS credentials anywhere, and any attempt to open a connection fails the test
    (except in the one test that sends a plan to a real server)."""
    if request.node.get_closest_marker("integration") is not None:
        return
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the dry run opened a connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_artifact(tmp_path_factory.mktemp("artifact") / "model.tar.gz").read_bytes()


def dry_run(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["endpoint", "deploy", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def steps(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["operation"]: s for s in plan["steps"]}


def test_dry_run_prints_every_request_exactly(artifact: bytes) -> None:
    plan = dry_run(
        "--s3-uri", "s3://ml-artifacts/sentiment/prod",
        "--role", ROLE,
        "--endpoint-name", "reviews-prod",
        "--region", "eu-west-1",
        "--instance-type", "ml.c5.xlarge",
        "--instance-count", "2",
        "--capture-s3-uri", "s3://ml-capture/reviews",
        "--capture-percent", "25",
        "--no-capture-output",
    )  # fmt: skip
    sha = hashlib.sha256(artifact).hexdigest()
    version = SentimentModel.load(default_model_dir()).version
    model_name = f"reviews-prod-{sha[:12]}"
    key = f"sentiment/prod/models/{model_name}/model.tar.gz"
    image = (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
    )
    tags = [*TAGS, {"Key": "model-version", "Value": version}]
    by_op = steps(plan)
    config_name = by_op["CreateEndpointConfig"]["request"]["EndpointConfigName"]
    assert re.fullmatch(rf"reviews-prod-{sha[:12]}-[0-9a-f]{{8}}", config_name)

    assert plan == {
        "endpoint_name": "reviews-prod",
        "region": "eu-west-1",
        "artifact": {
            "s3_uri": f"s3://ml-artifacts/{key}",
            "bytes": len(artifact),
            "sha256": sha,
            "model_version": version,
        },
        "image_uri": image,
        "steps": [
            {
                "service": "s3",
                "operation": "PutObject",
                "request": {
                    "Bucket": "ml-artifacts",
                    "Key": key,
                    "ContentType": "application/gzip",
                    "ContentLength": len(artifact),
                    "ChecksumSHA256": base64.b64encode(hashlib.sha256(artifact).digest()).decode(),
                    "Metadata": {"model-version": version, "sha256": sha},
                },
            },
            {
                "service": "sagemaker",
                "operation": "CreateModel",
                "condition": "no model of this name yet (the name carries the artifact's SHA-256)",
                "request": {
                    "ModelName": model_name,
                    "PrimaryContainer": {
                        "Image": image,
                        "Mode": "SingleModel",
                        "ModelDataUrl": f"s3://ml-artifacts/{key}",
                        "Environment": {
                            "SAGEMAKER_PROGRAM": "inference.py",
                            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                            "SAGEMAKER_REGION": "eu-west-1",
                        },
                    },
                    "ExecutionRoleArn": ROLE,
                    "Tags": tags,
                },
            },
            {
                "service": "sagemaker",
                "operation": "CreateEndpointConfig",
                "condition": "no endpoint config of this name yet (the name carries the config's hash)",
                "request": {
                    "EndpointConfigName": config_name,
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": model_name,
                            "InitialInstanceCount": 2,
                            "InstanceType": "ml.c5.xlarge",
                            "InitialVariantWeight": 1.0,
                        }
                    ],
                    "DataCaptureConfig": {
                        "EnableCapture": True,
                        "InitialSamplingPercentage": 25,
                        "DestinationS3Uri": "s3://ml-capture/reviews",
                        "CaptureOptions": [{"CaptureMode": "Input"}],
                        "CaptureContentTypeHeader": {
                            "CsvContentTypes": ["text/csv"],
                            "JsonContentTypes": ["application/json", "application/jsonlines"],
                        },
                    },
                    "Tags": tags,
                },
            },
            {
                "service": "sagemaker",
                "operation": "CreateEndpoint",
                "condition": "the endpoint does not exist",
                "request": {
                    "EndpointName": "reviews-prod",
                    "EndpointConfigName": config_name,
                    "Tags": tags,
                },
            },
            {
                "service": "sagemaker",
                "operation": "UpdateEndpoint",
                "condition": "the endpoint exists with another endpoint config",
                "request": {"EndpointName": "reviews-prod", "EndpointConfigName": config_name},
            },
        ],
    }


def test_defaults_capture_everything_beside_the_artifact(artifact: bytes) -> None:
    plan = dry_run("--s3-uri", "s3://bucket", "--role", ROLE)
    sha = hashlib.sha256(artifact).hexdigest()
    by_op = steps(plan)
    assert plan["region"] == "us-east-1"
    assert plan["image_uri"] == (
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
    )
    assert by_op["PutObject"]["request"]["Key"] == (
        f"models/review-sentiment-{sha[:12]}/model.tar.gz"
    )
    config = by_op["CreateEndpointConfig"]["request"]
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 1
    capture = config["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == "s3://bucket/data-capture"
    assert capture["InitialSamplingPercentage"] == 100
    assert capture["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]


def test_every_request_is_valid_for_the_service_api() -> None:
    plan = dry_run("--s3-uri", "s3://bucket/p", "--role", ROLE, "--capture-percent", "10")
    session = botocore.session.get_session()
    validator = ParamValidator()
    for step in plan["steps"]:
        model = session.get_service_model(step["service"]).operation_model(step["operation"])
        assert model.input_shape is not None
        report = validator.validate(step["request"], model.input_shape)
        assert not report.has_errors(), (step["operation"], report.generate_report())


@pytest.mark.parametrize(
    ("action", "operations"),
    [("create", ["CreateEndpoint"]), ("update", ["UpdateEndpoint"])],
)
def test_an_explicit_action_sends_one_endpoint_request(action: str, operations: list[str]) -> None:
    plan = dry_run("--s3-uri", "s3://bucket", "--role", ROLE, "--action", action)
    ops = [s["operation"] for s in plan["steps"]]
    assert ops == ["PutObject", "CreateModel", "CreateEndpointConfig", *operations]
    assert "condition" not in plan["steps"][-1]


def test_without_data_capture_the_config_has_none() -> None:
    plan = dry_run("--s3-uri", "s3://bucket", "--role", ROLE, "--no-capture")
    assert "DataCaptureConfig" not in steps(plan)["CreateEndpointConfig"]["request"]


def test_names_follow_the_content() -> None:
    base = DeployOptions(s3_uri="s3://bucket/p", role_arn=ROLE)
    first, again = plan_deployment(base), plan_deployment(base)
    assert (first.model_name, first.endpoint_config_name) == (
        again.model_name,
        again.endpoint_config_name,
    )
    bigger = plan_deployment(DeployOptions(s3_uri="s3://bucket/p", role_arn=ROLE, instance_count=3))
    assert bigger.model_name == first.model_name  # same artifact: the same model
    assert bigger.endpoint_config_name != first.endpoint_config_name
    long = plan_deployment(
        DeployOptions(s3_uri="s3://bucket", role_arn=ROLE, endpoint_name="e" * 63)
    )
    assert len(long.model_name) <= 63 and len(long.endpoint_config_name) <= 63


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--s3-uri", "bucket/prefix", "--role", ROLE], "s3_uri must be"),
        (["--s3-uri", "s3://bucket", "--role", "SageMakerRole"], "role_arn must be"),
        (
            ["--s3-uri", "s3://bucket", "--role", ROLE, "--endpoint-name", "bad_name"],
            "endpoint_name",
        ),
        (
            [
                "--s3-uri",
                "s3://bucket",
                "--role",
                ROLE,
                "--no-capture-input",
                "--no-capture-output",
            ],
            "data capture needs",
        ),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["endpoint", "deploy", *args, "--dry-run"])
    assert result.exit_code == 2
    assert message in result.output.replace("\n", " ").replace("│", "")


@pytest.mark.integration
def test_the_plan_sent_to_a_server_creates_the_endpoint_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with MotoServer() as moto:
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
        session = moto.session()
        session.client("s3").create_bucket(Bucket="bucket")
        plan = plan_deployment(
            DeployOptions(s3_uri="s3://bucket/models", role_arn=ROLE, capture_percent=30)
        )
        said: list[str] = []
        assert execute(plan, session, echo=said.append) == "created"
        assert any("created model" in line for line in said)

        s3, sm = session.client("s3"), session.client("sagemaker")
        key = plan.step("PutObject").request["Key"]
        assert s3.get_object(Bucket="bucket", Key=key)["Body"].read() == plan.artifact
        model = sm.describe_model(ModelName=plan.model_name)
        sent = plan.step("CreateModel").request
        assert model["PrimaryContainer"]["Image"] == sent["PrimaryContainer"]["Image"]
        assert model["PrimaryContainer"]["Environment"] == sent["PrimaryContainer"]["Environment"]
        config = sm.describe_endpoint_config(EndpointConfigName=plan.endpoint_config_name)
        wanted = plan.step("CreateEndpointConfig").request
        assert config["DataCaptureConfig"] == wanted["DataCaptureConfig"]
        assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
        endpoint = sm.describe_endpoint(EndpointName="review-sentiment")
        assert endpoint["EndpointConfigName"] == plan.endpoint_config_name
        assert endpoint["EndpointStatus"] == "InService"

        # The same artifact and options again: nothing new to create.
        assert execute(plan, session, echo=said.append) == "unchanged"
        assert len(sm.list_models()["Models"]) == 1
        assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1


def test_only_a_missing_resource_counts_as_missing() -> None:
    def error(code: str, message: str) -> ClientError:
        response: Any = {"Error": {"Code": code, "Message": message}}
        return ClientError(response, "DescribeModel")

    assert _missing(error("ValidationException", 'Could not find model "arn:aws:x".'))
    assert _missing(error("ValidationException", "Could not find endpoint configuration 'c'."))
    assert _missing(error("ResourceNotFound", "anything"))
    # a malformed request, or another service's words, are not "missing"
    assert not _missing(error("ValidationException", "1 validation error detected: ..."))
    assert not _missing(error("AccessDeniedException", "model x does not exist or no access"))
    assert not _missing(error("ThrottlingException", "Could not find capacity"))
    assert not _missing(ValueError("Could not find"))
