"""A local Spark Connect server on 127.0.0.1, for the Spark tests and the Spark benchmark.

Started with Spark's own launcher (``spark-submit`` of the ``pyspark`` package, running
``SparkConnectServer``), the machine's JDK 17 and the jars ``.ci/fetch-spark-jars`` put in
``.cache/spark-jars/`` (Iceberg's Spark runtime, hadoop-aws and the AWS SDK classes it
needs). Nothing is downloaded here: a missing jar is an error naming that script.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JARS_DIR = REPO / ".cache" / "spark-jars"
JARS = (  # keep in step with .ci/fetch-spark-jars
    "iceberg-spark-runtime-4.1_2.13-1.12.0.jar",
    "iceberg-aws-bundle-1.12.0.jar",
    "hadoop-aws-3.4.2.jar",
    "s3-transfer-manager-2.54.17.jar",
    "apache-client-2.54.17.jar",
)
JDKS = (Path("/usr/lib/jvm/java-17-openjdk-amd64"),)
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# For short-lived JVMs that answer small queries (the tests): the first JIT tier only and the
# serial collector, about half the CPU of the defaults to start and to answer a few queries.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def java_home() -> str:
    """``JAVA_HOME`` if set, else the machine's JDK 17."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    for jdk in JDKS:
        if (jdk / "bin" / "java").exists():
            return str(jdk)
    raise RuntimeError("no JDK 17 found: set JAVA_HOME")


def jar_paths() -> list[Path]:
    missing = [name for name in JARS if not (JARS_DIR / name).is_file()]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)} in {JARS_DIR}: run "
                           "bash .ci/fetch-spark-jars first")
    return [JARS_DIR / name for name in JARS]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SparkServer:
    """A running Spark Connect server: its ``sc://`` URL, process and start-up time."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    start_seconds: float

    def stop(self) -> None:
        stop_process(self.process.pid)
        self.process.wait(timeout=30)


def start(workdir: Path, *, cores: int = 2, driver_memory: str = "1g",
          timeout: float = 120.0, java_options: str = "") -> SparkServer:
    """Start a local Spark Connect server and wait until it answers a query.

    ``java_options`` go to every JVM the launcher starts (``JDK_JAVA_OPTIONS``): the tests
    pass ``QUICK_JVM`` for less start-up work; the benchmark keeps the JDK's defaults.
    """
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "spark-connect.log"
    env = {**os.environ, "SPARK_HOME": str(spark_home), "JAVA_HOME": java_home(),
           "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": "python"}
    if java_options:
        env["JDK_JAVA_OPTIONS"] = java_options
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.catalogImplementation": "in-memory",
        "spark.sql.shuffle.partitions": str(max(2, cores)),
        "spark.sql.extensions":
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
    }
    command = [str(spark_home / "bin" / "spark-submit"), "--class", SERVER_CLASS,
               "--master", f"local[{cores}]", "--driver-memory", driver_memory,
               "--jars", ",".join(str(jar) for jar in jar_paths())]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    command.append("spark-internal")
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    url = f"sc://127.0.0.1:{port}"
    try:
        _wait_answering(url, process, log_path, started + timeout)
    except BaseException:
        stop_process(process.pid)
        raise
    return SparkServer(url, process, log_path, time.perf_counter() - started)


def stop_process(pid: int) -> None:
    """End the server's process group (spark-submit and its JVM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)


def _wait_answering(url: str, process: subprocess.Popen[bytes], log_path: Path,
                    until: float) -> None:
    port = int(url.rsplit(":", 1)[1])
    while True:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the Spark Connect server exited ({process.returncode}):\n{tail}")
        if time.perf_counter() > until:
            raise RuntimeError(f"the Spark Connect server did not answer; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(url).create()
    try:
        spark.sql("SELECT 1").collect()
    finally:
        spark.stop()


def main() -> None:
    """``python -m benchmarks.spark_server``: a local server for trying the Spark engine."""
    server = start(Path(".cache") / "spark-server")
    print(f"Spark Connect at {server.url} (started in {server.start_seconds:.1f} s); "
          "Ctrl-C stops it", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
