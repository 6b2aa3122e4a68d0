"""The supervised group: a crashed part is restarted; one that keeps crashing stops the whole group; an embedded
server that dies is started again."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import redis

from clickmint import supervisor
from clickmint.embedded import EmbeddedValkey
from clickmint.supervisor import Part, Supervisor


def _part(name: str, code: str) -> Part:
    return Part(name, [sys.executable, "-c", code], dict(os.environ))


def test_a_part_that_keeps_crashing_takes_the_group_down(monkeypatch) -> None:
    monkeypatch.setattr(supervisor, "MAX_RESTARTS", 2)
    steady = _part("steady", "import time; time.sleep(60)")
    crashing = _part("crashing", "raise SystemExit(3)")
    group = Supervisor([steady, crashing])
    assert group.run_with() == 1
    assert group.failure is not None and "crashing exited with status 3" in group.failure
    assert steady.proc is not None and steady.proc.poll() is not None  # never left half-running


def test_a_crashed_part_is_restarted_and_sigterm_stops_all(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    flaky = _part("flaky", f"open({str(starts)!r}, 'a').write('x'); import time; time.sleep(0.3); raise SystemExit(1)")
    steady = _part("steady", "import time; time.sleep(60)")
    group = Supervisor([steady, flaky])

    def stop_later() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not starts.exists() or len(starts.read_text()) < 2):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_later, daemon=True).start()
    assert group.run_with() == 0
    assert len(starts.read_text()) >= 2  # it was started again after its crash
    for part in (steady, flaky):
        assert part.proc is not None and part.proc.poll() is not None


def test_an_embedded_server_killed_is_started_again_on_its_port(tmp_path: Path, caplog) -> None:
    """kill -9 of the embedded Valkey, twice: each time it is started again on the same port (the URL every
    part holds) with its data, after a growing backoff, and every event is one log line."""
    valkey = EmbeddedValkey(tmp_path, port=0)
    valkey.start()
    port = valkey.port
    client = redis.Redis.from_url(valkey.url, socket_timeout=1)
    client.set("kept", "yes")
    steady = _part("steady", "import time; time.sleep(60)")
    group = Supervisor([steady], (valkey,))
    killed: list[int] = []
    answered_again: list[bool] = []

    def kill_twice() -> None:
        try:
            for _ in range(2):
                while valkey.proc is None or not _pings(client):
                    time.sleep(0.05)
                pid = valkey.proc.pid
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                deadline = time.monotonic() + 20
                # Until the supervisor has seen it answer again (and said so), not only until it answers.
                while valkey.proc.pid == pid or not _pings(client) or group.keepers[0].down_since is not None:
                    assert time.monotonic() < deadline, "valkey was not restarted"
                    time.sleep(0.05)
                answered_again.append(client.get("kept") == b"yes")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    caplog.set_level(logging.INFO, logger="clickmint.up")
    threading.Thread(target=kill_twice, daemon=True).start()
    try:
        assert group.run_with() == 0
        assert valkey.port == port and valkey.proc is not None and valkey.proc.pid not in killed
    finally:
        client.close()
        valkey.stop()
    assert answered_again == [True, True]  # same port, same data (its AOF)
    lines = [r.getMessage() for r in caplog.records if r.name == "clickmint.up"]
    deaths = [line for line in lines if "killed by SIGKILL" in line]
    assert len(deaths) == 2, lines
    assert f"(pid {killed[0]})" in deaths[0] and "restarting it in 0.5s" in deaths[0]
    assert f"(pid {killed[1]})" in deaths[1] and "restarting it in 1.0s" in deaths[1]  # the backoff grows
    assert sum("valkey restarted" in line and f"on port {port}" in line for line in lines) == 2
    assert sum(line.startswith(f"valkey is back on port {port}") for line in lines) == 2


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
