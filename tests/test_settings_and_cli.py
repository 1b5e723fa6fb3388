import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from offline.cli import app

from streams.settings import Settings, SettingsError, settings_env


def test_settings_read_every_field_from_the_environment(tmp_path):
    env = {"TOPIC_CLICKS": "web-clicks", "TOPIC_PARTITIONS": "8", "RECS_TTL_SECONDS": "60",
           "MAX_FUTURE_SKEW_SECONDS": "1.5", "STACK_STATE_DIR": str(tmp_path)}
    s = Settings.from_env(env)
    assert (s.topic_clicks, s.topic_partitions, s.recs_ttl_seconds, s.max_future_skew_seconds) == ("web-clicks", 8, 60, 1.5)
    assert Settings.from_env(settings_env(s)) == s


def test_an_empty_archive_dir_switches_the_archive_off(tmp_path):
    s = Settings.from_env({"STACK_STATE_DIR": str(tmp_path), "ARCHIVE_DIR": ""})
    assert s.archive_dir == ""
    assert Settings.from_env(settings_env(s)).archive_dir == ""
    # Elsewhere an empty value means "not set".
    assert Settings.from_env({"STACK_STATE_DIR": str(tmp_path), "TOPIC_CLICKS": ""}).topic_clicks == "clicks"


def test_local_stack_urls_are_used_unless_the_environment_names_servers(tmp_path):
    (tmp_path / "stack.json").write_text(json.dumps({
        "kafka": {"name": "kafka", "url": "127.0.0.1:1111", "port": 1111},
        "redis": {"name": "redis", "url": "redis://127.0.0.1:2222/0", "port": 2222}}))
    s = Settings.from_env({"STACK_STATE_DIR": str(tmp_path)})
    assert s.kafka_bootstrap_servers == "127.0.0.1:1111" and s.redis_url == "redis://127.0.0.1:2222/0"
    s = Settings.from_env({"STACK_STATE_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:3333/1"})
    assert s.redis_url == "redis://127.0.0.1:3333/1"


@pytest.mark.parametrize("env, message", [
    ({"TOPIC_PARTITIONS": "four"}, "TOPIC_PARTITIONS must be an integer, got 'four'"),
    ({"TOPIC_PARTITIONS": "0"}, "TOPIC_PARTITIONS must be greater than 0"),
    ({"SESSION_GAP_SECONDS": "soon"}, "SESSION_GAP_SECONDS must be a number"),
    ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with redis://"),
    ({"WORKER_WEB_PORT": "70000"}, "WORKER_WEB_PORT must be a TCP port"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be debug"),
])
def test_bad_settings_are_one_line_errors(env, message, tmp_path):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"STACK_STATE_DIR": str(tmp_path), **env})


def recsys(*args, env=None, tmp_path=None):
    full_env = {"PATH": "/usr/bin:/bin", "STACK_STATE_DIR": str(tmp_path), **(env or {})}
    return subprocess.run([sys.executable, "-m", "offline.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=60)


@pytest.mark.parametrize("command", [[], ["stack"], ["stack", "up"], ["stack", "down"], ["stack", "status"],
                                     ["worker"], ["replay"], ["recs"], ["demo"], ["train"], ["evaluate"],
                                     ["eda"], ["segment"], ["prequential"], ["online-segments"], ["api"]])
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_bad_arguments_and_settings_get_one_line_errors(tmp_path):
    result = recsys("replay", "--source", "tape", tmp_path=tmp_path)
    assert result.returncode == 2 and "must be auto, retail or simulator" in result.stderr
    result = recsys("replay", "--limit", "0", tmp_path=tmp_path)
    assert result.returncode == 2 and "--limit" in result.stderr
    result = recsys("stack", "status", env={"TOPIC_PARTITIONS": "x"}, tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: TOPIC_PARTITIONS must be an integer, got 'x'"
    assert "Traceback" not in result.stderr


def test_bad_dates_and_unknown_commands_are_one_line_errors_with_status_2(tmp_path):
    for args, message in ((("replay", "--start", "2011-13-45"), "'2011-13-45' is not a date"),
                          (("evaluate", "--cut", "soon"), "'soon' is not a date"), (("nosuch",), "No such command")):
        result = recsys(*args, tmp_path=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_an_unreachable_broker_is_reported_within_seconds(tmp_path):
    started = time.monotonic()
    result = recsys("replay", "--source", "simulator", "--limit", "5", env={"KAFKA_BOOTSTRAP_SERVERS": "nonsense"},
                    tmp_path=tmp_path)
    assert result.returncode == 2 and "Kafka at nonsense did not answer within 10 s" in result.stderr
    assert time.monotonic() - started < 40  # loading the simulated history comes first


@pytest.mark.integration
def test_stack_status_redacts_the_redis_password_and_its_record_is_private(tmp_path, kafka_server, redis_server):
    from streams.local_stack import LocalStack

    url = redis_server.url.replace("redis://", "redis://:pw-s3cret@")
    LocalStack(tmp_path).up(environ={"REDIS_URL": url, "KAFKA_BOOTSTRAP_SERVERS": kafka_server.url})  # adopted
    assert (tmp_path / "stack.json").stat().st_mode & 0o077 == 0
    result = recsys("stack", "status", tmp_path=tmp_path)
    assert result.returncode == 0 and "redis://:***@" in result.stdout and "pw-s3cret" not in result.stdout


def test_stack_status_without_a_stack_says_so(tmp_path):
    result = recsys("stack", "status", tmp_path=tmp_path)
    assert result.returncode == 0 and "no local stack recorded" in result.stdout


@pytest.mark.integration
def test_recs_command_reads_the_stored_list(tmp_path, redis_server, redis_client):
    from streams.recommendation_store import build_list, encode_list
    redis_client.set("recs:17850", encode_list(build_list("17850", [("85123A", 0.9)], "v7")))
    redis_client.set("product:85123A", b'{"item_id":"85123A","title":"WHITE HANGING HEART"}')
    result = recsys("recs", "17850", env={"REDIS_URL": redis_server.url}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WHITE HANGING HEART" in result.stdout and "v7" in result.stdout
    # Each item's reason, with the titles it names.
    from models.explanations import Reason
    redis_client.set("recs:12347", encode_list(build_list("12347", [("22632", 0.9), ("85123A", 0.5)], "v7", reasons=[
        Reason("similar_to", "85123A"), Reason("bought_before", "3|2011-11-29")])))
    result = recsys("recs", "12347", env={"REDIS_URL": redis_server.url, "COLUMNS": "160"}, tmp_path=tmp_path)
    assert "Because you bought or viewed WHITE HANGING HEART" in result.stdout, result.stdout
    assert "You bought this 3 times, last on 2011-11-29" in result.stdout
    result = recsys("recs", "nobody", env={"REDIS_URL": redis_server.url}, tmp_path=tmp_path)
    assert result.returncode == 1 and "no recommendations" in result.stdout
    # Data that looks like console markup is printed as it is.
    redis_client.set("recs:[/x]", encode_list(build_list("[/x]", [("ODD", 0.5)], "v7")))
    redis_client.set("product:ODD", b'{"item_id":"ODD","title":"LAMP [/evil] [bold]"}')
    result = recsys("recs", "[/x]", env={"REDIS_URL": redis_server.url}, tmp_path=tmp_path)
    assert result.returncode == 0 and "LAMP [/evil] [bold]" in result.stdout, result.stderr
    # Items the catalog has no title for show their id, and are counted.
    redis_client.set("recs:gaps", encode_list(build_list("gaps", [("ODD", 0.9), ("23439", 0.5), ("23355", 0.4)], "v7")))
    redis_client.set("product:23355", b'{"item_id":"23355","title":"  "}')
    result = recsys("recs", "gaps", env={"REDIS_URL": redis_server.url}, tmp_path=tmp_path)
    assert result.returncode == 0 and "2 of 3 items have no title in the catalog" in result.stdout, result.stdout
    assert result.stdout.count("23439") == 2 and result.stdout.count("23355") == 2


def test_every_setting_is_documented_in_the_readme():
    import dataclasses
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [f.name.upper() for f in dataclasses.fields(Settings) if f"| `{f.name.upper()}` |" not in readme]
    assert missing == []


# Records the spin count each OpenMP library meets when it is first imported, then imports the
# trainer's and the worker's entry points.
FIRST_OPENMP_IMPORTS = """
import importlib.abc, os, sys
met = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in ("lightgbm", "sklearn", "implicit"):
            met.setdefault(name, os.environ.get("GOMP_SPINCOUNT"))
sys.meta_path.insert(0, Watch())
import offline.selection, offline.cli, streams.app
print(sorted(met.items()))
"""


@pytest.mark.parametrize("operators", [None, "300000"])
def test_openmp_threads_spin_briefly_before_they_sleep_unless_the_operator_says_otherwise(operators):
    env = {name: value for name, value in os.environ.items() if name != "GOMP_SPINCOUNT"}
    if operators:
        env["GOMP_SPINCOUNT"] = operators
    shown = subprocess.run([sys.executable, "-c", FIRST_OPENMP_IMPORTS], capture_output=True, text=True,
                           env=env, check=True).stdout
    spins = operators or "20000"
    assert shown.strip() == repr([("implicit", spins), ("lightgbm", spins), ("sklearn", spins)])
