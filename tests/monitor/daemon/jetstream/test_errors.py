"""Bad set-ups of a JetStream source each end the start with one line naming the key and the fix."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest

from monitor import cli, config
from monitor.daemon.monitor import Monitor
from monitor.errors import BrokerError, ConfigError, PlantwatchError
from simulator.local_broker import free_port, wait_for_port
from tests.monitor.daemon.jetstream.helpers import Stream
from tests.nats_cluster import NatsCluster, nats_server


def _start(model: Path, env: dict[str, str]) -> str:
    mon = Monitor(config.load(flags={"model": str(model), "metrics_port": 0}, environ=env))
    with pytest.raises(PlantwatchError) as err:
        mon.start()
    text = str(err.value)
    assert "\n" not in text
    return text


def test_missing_stream_buckets_and_a_partition_count_mismatch_are_refused_at_start(
    nats_cluster: NatsCluster, model_dir: Path
) -> None:
    stream = Stream(nats_cluster, parts=4, replicas=1, bucket=False)
    env = stream.env(0, 1)
    assert "no stream 'NOPE'" in _start(model_dir, {**env, "PLANTWATCH_SOURCE_STREAM": "NOPE"})
    assert f"no KV bucket '{stream.bucket}'" in _start(model_dir, env)
    no_leases = {**env, "PLANTWATCH_SOURCE_CHECKPOINT_INTERVAL": "0", "PLANTWATCH_SOURCE_LEASES": "nope"}
    assert "source.leases: no KV bucket 'nope'" in _start(model_dir, no_leases)
    text = _start(model_dir, {**env, "PLANTWATCH_SOURCE_PARTITIONS": "6"})
    assert (
        text
        == f"source.partitions: 6, but stream '{stream.name}' has 4 partitions (its subject transform); they must be equal"
    )


def test_an_instance_index_out_of_range_is_a_config_error_exit_2(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str], cli_logging: None
) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[models]\ndefault = "{model_dir}"\n[source]\nkind = "jetstream"\ninstances = 3\ninstance_index = 3\n'
    )
    assert cli.main(["check-config", str(cfg)]) == 2
    assert "source.instance_index: 3 is out of range for instances = 3 (0-2)" in capsys.readouterr().err


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[str]:
    """One nats-server with JetStream that only lets user 'monitor' with password 's3cret' in."""
    exe = nats_server()
    assert exe is not None
    port = free_port()
    conf = tmp_path / "auth.conf"
    conf.write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        "authorization { users: [ { user: monitor, password: s3cret } ] }\n"
    )
    with open(tmp_path / "auth.log", "wb") as log:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_for_port(port, proc=proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_wrong_credentials_are_refused_with_one_line(auth_server: str, model_dir: Path) -> None:
    env = {
        "PLANTWATCH_SOURCE_KIND": "jetstream",
        "PLANTWATCH_SOURCE_SERVERS": auth_server,
        "PLANTWATCH_SOURCE_USER": "monitor",
        "PLANTWATCH_SOURCE_PASSWORD_ENV": "PW_TEST_NATS_PASSWORD",
        "PW_TEST_NATS_PASSWORD": "wrong",
    }
    os.environ["PW_TEST_NATS_PASSWORD"] = "wrong"
    try:
        assert _start(model_dir, env) == "source.user: the NATS servers refused the credentials of monitor"
    finally:
        del os.environ["PW_TEST_NATS_PASSWORD"]


def test_a_refusal_followed_by_a_reset_is_still_reported_as_the_credentials() -> None:
    """A server closes right after its -ERR, so a try can end in a reset: any refusal among the tries decides."""
    from monitor.daemon.jetstream_session import start_failure

    servers = ["nats://127.0.0.1:4222"]
    reset = ConnectionResetError(104, "Connection reset by peer")
    refused = nats.errors.AuthorizationError()
    err = start_failure([refused, reset], nats.errors.NoServersError(), servers, "monitor")
    assert (
        isinstance(err, ConfigError) and str(err) == "source.user: the NATS servers refused the credentials of monitor"
    )
    err = start_failure([reset], nats.errors.NoServersError(), servers, "monitor")  # never refused: unreachable
    assert isinstance(err, BrokerError)
    assert str(err) == "source.servers: cannot connect to nats://127.0.0.1:4222: [Errno 104] Connection reset by peer"
    err = start_failure([], TimeoutError(), servers, "monitor")
    assert str(err) == "source.servers: cannot connect to nats://127.0.0.1:4222: TimeoutError"
