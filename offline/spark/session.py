"""Starting Spark for the trainer: the master and configuration from the settings, and one-line
errors for what a user can fix (no Java, a master Spark cannot use, PySpark not installed)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterable

from offline.retail_history import HistoryError

# PySpark warns on every task that it does not yet fully support pandas 3; the trainer's tests run
# it with pandas 3 on every path it takes, and the warning would fill the log.
PANDAS_WARNING = "PySpark does not yet fully support pandas"
MASTER_FORMS = re.compile(r"^(local(\[(\d+|\*)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|spark://.+|k8s://.+|yarn)$")
# Small shuffles for a trainer that also runs on one machine; a cluster's SPARK_CONF overrides them.
DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.executorEnv.PYTHONWARNINGS": f"ignore:{PANDAS_WARNING}:FutureWarning",
}
# On one machine (local, local-cluster), the driver and executors talk over loopback only, and
# the driver's heap, which local executors share, is a quarter of the machine's memory (Spark's
# own default, 1 GiB, holds less than a mid-sized shop's shuffles).
MACHINE_MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
ON_ONE_MACHINE = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
                  "spark.driver.memory": f"{max(1, MACHINE_MEMORY // 4 // 2**30)}g"}


# Where iterative jobs cut their lineage: a path every executor can write on a cluster.
CHECKPOINTS = "spark.checkpoint.dir"


class EngineError(HistoryError):
    """Spark cannot start as configured; the message names the fix."""


def parse_conf(pairs: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings (``SPARK_CONF`` split on commas, or ``--conf`` options) as a dict."""
    conf = {}
    for pair in pairs:
        pair = pair.strip()
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise EngineError(f"Spark configuration {pair!r} is not spark.key=value")
        conf[key.strip()] = value.strip()
    return conf


def check_master(master: str) -> str:
    if not MASTER_FORMS.match(master):
        raise EngineError(f"SPARK_MASTER {master!r} is not a Spark master: use local[*], local[N], "
                          "spark://host:port, k8s://https://host:port or yarn")
    return master


def java_home() -> str:
    """Where Java is, or an EngineError saying how to install it."""
    home = os.environ.get("JAVA_HOME", "")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return home
    java = shutil.which("java")
    if java is None:
        raise EngineError("the Spark engine needs Java 17: install it (Debian: apt-get install "
                          "openjdk-17-jre-headless) or set JAVA_HOME")
    return os.path.dirname(os.path.dirname(os.path.realpath(java)))


def start_spark(master: str, conf: dict[str, str], app_name: str = "recsys-trainer"):
    """A SparkSession on ``master`` with the trainer's defaults under ``conf``."""
    check_master(master)
    os.environ.setdefault("JAVA_HOME", java_home())
    # Executors on this machine run the driver's interpreter, with the project's packages; a
    # cluster names its own (spark.pyspark.python, or a packed environment: docs/spark.md).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", PANDAS_WARNING, FutureWarning)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("the Spark engine needs PySpark: pip install 'recsys-streaming[spark]'") from None
    local = master.startswith("local")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local-cluster's executors bind loopback too
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**DEFAULTS, **(ON_ONE_MACHINE if local else {}), **conf}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM's own errors arrive as many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"Spark did not start on {master}: {first}") from None
    if spark.sparkContext.getCheckpointDir() is None:
        # ALS cuts its lineage at checkpoints; without them, its iterations overflow the stack.
        spark.sparkContext.setCheckpointDir(conf.get(CHECKPOINTS) or _temporary_folder())
    return spark


def _temporary_folder() -> str:
    """A folder removed when the process ends."""
    folder = tempfile.mkdtemp(prefix="recsys-spark-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


HISTORY_ERROR = re.compile(r"HistoryError: (.+)")


@contextmanager
def executor_errors():
    """A HistoryError raised on an executor (a bad line in a file read there) arrives on the driver
    wrapped in Spark's own exception, with the executor's traceback: it is raised again as the
    one-line HistoryError it was."""
    try:
        yield
    except HistoryError:
        raise
    except Exception as exc:
        found = HISTORY_ERROR.search(str(exc))
        if found is None:
            raise
        raise HistoryError(found.group(1).strip()) from None


def stop_spark(spark) -> None:
    """Stop the session and the JVM this process started for it."""
    from pyspark import SparkContext

    spark.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    gateway.shutdown()
    SparkContext._gateway = SparkContext._jvm = None
    if process is not None:
        process.terminate()
        process.wait(timeout=30)
