"""Secrets in the settings never show in ``repr``, ``str`` or a JSON dump, and reach the
clients that need them as plain values."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from stream.kafka_app import _credentials
from stream.producer import kafka_client_options
from stream.settings import EndpointSettings, LakeSettings, Settings

SECRETS = {
    "SENTIMENT_KAFKA__SASL_PASSWORD": "kafka-pw-7f3a91",
    "SENTIMENT_ALERTS__WEBHOOK_SECRET": "hmac-key-2b8c44",
    "SENTIMENT_ALERTS__WEBHOOK_URL": "https://user:hook-pw-91d0@hooks.example/T0/B1/tok-5e6f7a",
    "SENTIMENT_ENDPOINT__AUTH_TOKEN": "bearer-tok-c0ffee",
}
PASSWORD = SECRETS["SENTIMENT_KAFKA__SASL_PASSWORD"]
MARKERS = ("kafka-pw-7f3a91", "hmac-key-2b8c44", "hook-pw-91d0", "tok-5e6f7a", "bearer-tok-c0ffee")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SENTIMENT_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SENTIMENT_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("SENTIMENT_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SENTIMENT_ENDPOINT__URL", "http://127.0.0.1:8080")
    return Settings()


def test_no_secret_in_repr_str_or_json(settings: Settings) -> None:
    shown = [repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())]
    shown += [repr(settings.kafka), repr(settings.alerts), repr(settings.endpoint)]
    for text in shown:
        for marker in MARKERS:
            assert marker not in text


def test_every_secret_field_is_a_secret_str(settings: Settings) -> None:
    assert isinstance(settings.kafka.sasl_password, SecretStr)
    assert isinstance(settings.alerts.webhook_secret, SecretStr)
    assert isinstance(settings.alerts.webhook_url, SecretStr)
    assert isinstance(settings.endpoint.auth_token, SecretStr)
    assert (
        settings.alerts.webhook_url.get_secret_value() == SECRETS["SENTIMENT_ALERTS__WEBHOOK_URL"]
    )


def test_kafka_clients_get_the_plain_password(settings: Settings) -> None:
    opts = kafka_client_options(settings.kafka)
    assert opts["sasl_plain_password"] == PASSWORD
    assert opts["sasl_plain_username"] == "svc"
    creds = _credentials(settings)
    assert creds.password == PASSWORD
    assert creds.username == "svc"


def test_the_endpoint_token_is_only_for_a_local_endpoint_url() -> None:
    with pytest.raises(ValidationError, match="local endpoint server"):
        EndpointSettings(mode="sagemaker", auth_token=SecretStr("x"))


def test_lake_objects_are_encrypted_server_side_by_default() -> None:
    assert LakeSettings().sse == "AES256"
