"""The tracker's settings: the shared ones plus what only the redirect and pixel service needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kernel.addresses import TrustedProxies
from kernel.env import Env, SettingsError
from kernel.settings import Settings
from tracker.bots import DEFAULT_BURST_LIMIT, DEFAULT_BURST_WINDOW_S
from tracker.leases import DEFAULT_BLOCK_MAX, DEFAULT_LEASE_MS

DEFAULT_BUDGET_MS = 20
DEFAULT_COOKIE = "cm_click"
DEFAULT_METRICS_HOST = "127.0.0.1"
DEFAULT_METRICS_PORT = 8003


@dataclass(frozen=True)
class TrackerSettings:
    core: Settings
    geo_db: str | None  # a MaxMind-format .mmdb; None: country unknown
    redis_budget_ms: int  # a batch slower than this goes to the spool
    spool_dir: Path  # where this machine's trackers spool events while Redis cannot take them
    cookie_name: str  # first-party cookie holding the last click id
    proxies: TrustedProxies  # whose forwarding headers name the client and scheme (kernel/addresses.py)
    # A click or view is a burst when its address already made burst_limit hits (a count) in the
    # burst_window_s seconds before it; per address, across every worker and tracker (docs/VISITORS.md).
    burst_limit: int
    burst_window_s: int
    # Click caps by lease (tracker/leases.py): a lease nobody renews goes back to the cap after cap_lease_ms, and
    # a block holds at most cap_block_max units; under-delivery while leases live <= processes x cap_block_max.
    cap_lease_ms: int = DEFAULT_LEASE_MS
    cap_block_max: int = DEFAULT_BLOCK_MAX
    metrics_host: str = DEFAULT_METRICS_HOST  # the admin address /metrics is served on, never the click port
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no admin listener
    metrics_token: str | None = field(default=None, repr=False)  # set: /metrics also on the click port, with it

    @classmethod
    def from_env(cls, env: Env | None = None, core: Settings | None = None) -> TrackerSettings:
        env = env or Env()
        core = core or Settings.from_env(env)
        token = env.raw("METRICS_TOKEN")
        if token is not None and len(token) < 24:
            raise SettingsError("CLICKMINT_METRICS_TOKEN is too short: use at least 24 characters")
        geo = env.raw("GEOIP_DB")
        if geo is not None and not Path(geo).is_file():
            raise SettingsError(f"CLICKMINT_GEOIP_DB={geo!r} is not a readable file")
        return cls(
            core=core,
            geo_db=geo,
            redis_budget_ms=env.int("REDIS_BUDGET_MS", DEFAULT_BUDGET_MS, lo=1, hi=10_000),
            spool_dir=Path(env.str("SPOOL_DIR", str(core.data_dir / "spool"))).absolute(),
            cookie_name=env.str("COOKIE_NAME", DEFAULT_COOKIE),
            proxies=TrustedProxies.from_env(env),
            burst_limit=env.int("BURST_LIMIT", DEFAULT_BURST_LIMIT, lo=1, hi=1_000_000),
            burst_window_s=env.int("BURST_WINDOW_S", DEFAULT_BURST_WINDOW_S, lo=1, hi=3600),
            cap_lease_ms=env.int("CAP_LEASE_MS", DEFAULT_LEASE_MS, lo=200, hi=3_600_000),
            cap_block_max=env.int("CAP_BLOCK_MAX", DEFAULT_BLOCK_MAX, lo=1, hi=1_000_000),
            metrics_host=env.str("METRICS_HOST", DEFAULT_METRICS_HOST),
            metrics_port=env.int("METRICS_PORT", DEFAULT_METRICS_PORT, lo=0, hi=65_535),
            metrics_token=token,
        )
