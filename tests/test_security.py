"""Security options: Redis password and TLS against real servers, Kafka SASL/SSL options, secrets kept out of output."""

import asyncio
import subprocess
import sys

import faust
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from streams.connections import aiokafka_options, faust_broker_options, kafka_options, redis_client
from streams.local_stack import free_port, redis_binary, start_server, stop_pid
from streams.settings import Settings, SettingsError

SECRET = "s3cret-Value"


def test_secrets_never_show_in_repr_errors_or_cli_output(tmp_path):
    s = Settings(redis_url=f"redis://:{SECRET}@127.0.0.1:1/0", kafka_sasl_password=SECRET, redis_password=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s.redacted())
    with pytest.raises(SettingsError) as bad_url:
        Settings(redis_url=f"http://:{SECRET}@127.0.0.1:1")
    assert SECRET not in str(bad_url.value)
    with pytest.raises(SettingsError) as no_user:
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=SECRET)
    assert "KAFKA_SASL_USERNAME" in str(no_user.value) and SECRET not in str(no_user.value)
    result = subprocess.run([sys.executable, "-m", "offline.cli", "recs", "u1"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "STACK_STATE_DIR": str(tmp_path),
                                 "REDIS_URL": f"http://:{SECRET}@127.0.0.1:1"}, timeout=60)
    assert result.returncode == 2 and "REDIS_URL" in result.stderr and SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize("env, message", [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SASL_MECHANISM": "MD5"}, "KAFKA_SASL_MECHANISM must be one of"),
    ({"KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_FILE names"),
    ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"}, "REDIS_TLS_CA_FILE names"),
])
def test_bad_security_settings_are_one_line_errors(env, message, tmp_path):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"STACK_STATE_DIR": str(tmp_path), **env})


def test_sasl_ssl_scram_reaches_every_kafka_client_library(tmp_path):
    ca = make_certificates(tmp_path)["ca"]
    s = Settings(kafka_bootstrap_servers="broker-1:9093,broker-2:9093", kafka_security_protocol="SASL_SSL",
                 kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="recsys", kafka_sasl_password=SECRET,
                 kafka_ssl_ca_file=str(ca))
    options = kafka_options(s)
    assert options["bootstrap_servers"] == ["broker-1:9093", "broker-2:9093"]
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "recsys", SECRET)
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    # aiokafka checks the combination when the client is made (it connects only on start).
    async def make_consumer():
        AIOKafkaConsumer("model-updates", **aiokafka_options(s))

    asyncio.run(make_consumer())
    broker = faust_broker_options(s)
    credentials = broker["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.ssl_context is not None
    app = faust.App("security-check", **broker)
    assert app.conf.broker_credentials is credentials
    assert "broker_credentials" not in faust_broker_options(Settings())  # plaintext by default


def make_certificates(folder):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    paths = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key")}

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=recsys test CA",
            "-keyout", paths["ca-key"], "-out", paths["ca"])
    csr = folder / "server.csr"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", paths["server-key"],
            "-out", csr)
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", paths["ca"], "-CAkey", paths["ca-key"], "-CAcreateserial", "-days",
            "1", "-extfile", ext, "-out", paths["server"])
    return paths


@pytest.fixture
def password_redis(tmp_path):
    port = free_port()
    server = start_server("redis", [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--requirepass", SECRET], port, tmp_path / "redis.log")
    yield port
    stop_pid(server.pid)


def test_redis_with_a_password_from_the_url_or_its_own_setting(password_redis):
    url = f"redis://127.0.0.1:{password_redis}/0"
    assert redis_client(Settings(redis_url=url, redis_password=SECRET)).ping()
    assert redis_client(Settings(redis_url=f"redis://:{SECRET}@127.0.0.1:{password_redis}/0")).ping()
    with pytest.raises(redis.AuthenticationError):
        redis_client(Settings(redis_url=url)).ping()


def redis_supports_tls() -> bool:
    probe = subprocess.run([redis_binary(), "--tls-port", "0", "--port", "0", "--tls-cert-file", "/nonexistent"],
                           capture_output=True, text=True, timeout=10)
    return "not supported" not in (probe.stdout + probe.stderr).lower() and "bad directive" not in (
        probe.stdout + probe.stderr).lower()


def test_redis_over_tls_verifies_the_server_against_the_configured_ca(tmp_path):
    if not redis_supports_tls():
        pytest.skip(f"{redis_binary()} was built without TLS")
    certs = make_certificates(tmp_path)
    port = free_port()
    server = start_server("redis", [
        redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--tls-cert-file", str(certs["server"]), "--tls-key-file", str(certs["server-key"]),
        "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no"], port, tmp_path / "redis.log")
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        client = redis_client(Settings(redis_url=url, redis_tls_ca_file=str(certs["ca"])))
        assert client.set("recs:u1", "[]") and client.get("recs:u1") == b"[]"
        other = tmp_path / "other"
        other.mkdir()
        other_ca = make_certificates(other)["ca"]
        with pytest.raises(redis.ConnectionError):
            redis_client(Settings(redis_url=url, redis_tls_ca_file=str(other_ca))).ping()
    finally:
        stop_pid(server.pid)
