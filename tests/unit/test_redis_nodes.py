"""CLICKMINT_REDIS_URL naming several nodes, CLICKMINT_REDIS_CLUSTER, and the expected states of a cluster."""

from __future__ import annotations

import logging
from pathlib import Path

import hiredis
import pytest

from kernel.env import Env, SettingsError
from kernel.redis.client import Redis
from kernel.redis.nodes import node_url, node_urls
from kernel.redis.resp import RedisUnavailable
from kernel.redis.states import Throttled, expected_state
from kernel.settings import Settings


@pytest.mark.parametrize(
    ("url", "nodes"),
    [
        ("redis://127.0.0.1:6379/0", ["redis://127.0.0.1:6379/0"]),
        ("unix:///run/valkey.sock", ["unix:///run/valkey.sock"]),
        ("redis://a:7000,b:7001", ["redis://a:7000", "redis://b:7001"]),
        (  # credentials, database and TLS settings of the one URL go to every host
            "rediss://u:p%40ss@a:7000,b:7001,c:7002/0?ssl_cert_reqs=none",
            [
                "rediss://u:p%40ss@a:7000/0?ssl_cert_reqs=none",
                "rediss://u:p%40ss@b:7001/0?ssl_cert_reqs=none",
                "rediss://u:p%40ss@c:7002/0?ssl_cert_reqs=none",
            ],
        ),
        ("redis://a:7000, redis://x@b:7001 ,", ["redis://a:7000", "redis://x@b:7001"]),  # whole URLs, as given
        ("redis://[::1]:7000,[::2]:7001", ["redis://[::1]:7000", "redis://[::2]:7001"]),
    ],
)
def test_a_url_may_name_several_nodes(url: str, nodes: list[str]) -> None:
    assert node_urls(url) == nodes


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "names no node"),
        ("http://a:1", "not http://"),
        ("redis://a:1,b:x", "Port could not be cast"),
        ("redis://a:1,http://b:2", "not http://"),
        ("redis://a:1,,:2", "names no host"),
        ("unix:///a.sock,unix:///b.sock", "names one server"),
    ],
)
def test_a_malformed_node_list_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        node_urls(url)


def test_another_node_keeps_the_credentials_and_tls_settings() -> None:
    base = "rediss://user:secret@seed:7000/0?ssl_ca_certs=/ca.pem"
    assert node_url(base, "10.0.0.2", 7003) == "rediss://user:secret@10.0.0.2:7003?ssl_ca_certs=/ca.pem"
    assert node_url("redis://seed:1", "::1", 7003) == "redis://[::1]:7003"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"REDIS_CLUSTER": "maybe"}, "CLICKMINT_REDIS_CLUSTER='maybe' must be one of auto, yes, no"),
        ({"REDIS_URL": "redis://a:1,b:x"}, "CLICKMINT_REDIS_URL: Port could not be cast"),
        ({"REDIS_URL": "redis://a:1,ftp://b:2"}, "CLICKMINT_REDIS_URL: a node of a Redis URL list is redis://"),
    ],
)
def test_bad_redis_settings_are_refused(tmp_path: Path, values: dict[str, str], message: str) -> None:
    env = Env({"CLICKMINT_DATA_DIR": str(tmp_path), **{f"CLICKMINT_{k}": v for k, v in values.items()}})
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


def test_the_cluster_mode_defaults_to_auto_and_is_read(tmp_path: Path) -> None:
    env = {"CLICKMINT_DATA_DIR": str(tmp_path), "CLICKMINT_REDIS_URL": "redis://a:7000,b:7001"}
    assert Settings.from_env(Env(env)).redis_cluster == "auto"
    assert Settings.from_env(Env({**env, "CLICKMINT_REDIS_CLUSTER": "YES"})).redis_cluster == "yes"
    with pytest.raises(ValueError, match="cluster mode"):
        Redis("redis://a:7000", "sometimes")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (RedisUnavailable("cannot connect to Redis: refused"), "unreachable (cannot connect to Redis: refused)"),
        (ConnectionRefusedError("refused"), "unreachable (refused)"),
        (hiredis.ReplyError("CLUSTERDOWN The cluster is down"), "clusterdown (CLUSTERDOWN The cluster is down)"),
        (hiredis.ReplyError("TRYAGAIN Multiple keys request during rehashing"), "tryagain (TRYAGAIN Multiple"),
        (hiredis.ReplyError("MOVED 3999 127.0.0.1:7001"), "moved (MOVED 3999 127.0.0.1:7001)"),
        (hiredis.ReplyError("LOADING Redis is loading the dataset in memory"), "loading (LOADING"),
        (hiredis.ReplyError("ERR wrong number of arguments"), None),
        (ValueError("a bug"), None),
    ],
)
def test_expected_states_of_a_cluster_are_told_apart(exc: BaseException, reason: str | None) -> None:
    found = expected_state(exc)
    assert (found is None) if reason is None else (found is not None and found.startswith(reason))


def test_warnings_are_rate_limited_per_key_and_count_what_they_left_out(caplog: pytest.LogCaptureFixture) -> None:
    throttled = Throttled(logging.getLogger("clickmint.test"), every_s=3600)
    with caplog.at_level(logging.WARNING, "clickmint.test"):
        assert throttled.warn("a", "shard %d down", 1)
        assert not throttled.warn("a", "shard %d down", 1)
        assert not throttled.warn("a", "shard %d down", 1)
        assert throttled.warn("b", "shard %d down", 2)
    assert [r.getMessage() for r in caplog.records] == ["shard 1 down", "shard 2 down"]
    assert all(r.exc_info is None for r in caplog.records)
    throttled = Throttled(logging.getLogger("clickmint.test"), every_s=0)
    with caplog.at_level(logging.WARNING, "clickmint.test"):
        throttled.warn("a", "again")
        throttled._last["a"] = (throttled._last["a"][0], 4)  # four left out since
        throttled.warn("a", "again")
    assert caplog.records[-1].getMessage().startswith("again (4 more like it in the last")
