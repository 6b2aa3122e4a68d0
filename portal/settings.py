"""The portal's settings: the shared ones plus sessions, rate limits and the public tracker address."""

from __future__ import annotations

from dataclasses import dataclass

from kernel.addresses import TrustedProxies
from kernel.egress import EgressPolicy
from kernel.env import Env
from kernel.settings import Settings

DEFAULT_SESSION_HOURS = 12
DEFAULT_IDLE_MINUTES = 120


@dataclass(frozen=True)
class PortalSettings:
    core: Settings
    tracker_url: str  # public base of tracking links shown to partners (snippets, link builder)
    portal_url: str  # public base of the portal, for password reset links
    session_hours: int  # absolute lifetime of a session
    idle_minutes: int  # a session unused this long expires
    login_per_minute: int  # login attempts per e-mail and per client network per minute
    api_per_minute: int  # API requests per credential per minute
    proxies: TrustedProxies  # whose forwarding headers name the client and scheme (kernel/addresses.py)
    deliver_postbacks: bool  # run the partner postback delivery loop in this process
    egress: EgressPolicy  # what outbound requests (partner postbacks) may call; never our own services

    @classmethod
    def from_env(cls, env: Env | None = None, core: Settings | None = None) -> PortalSettings:
        env = env or Env()
        core = core or Settings.from_env(env)
        listen = (f"http://{_host(core.host)}:{core.tracker_port}", f"http://{_host(core.host)}:{core.portal_port}")
        tracker_url = (env.url("TRACKER_PUBLIC_URL", ("http", "https")) or listen[0]).rstrip("/")
        portal_url = (env.url("PORTAL_PUBLIC_URL", ("http", "https")) or listen[1]).rstrip("/")
        return cls(
            core=core,
            tracker_url=tracker_url,
            portal_url=portal_url,
            session_hours=env.int("SESSION_HOURS", DEFAULT_SESSION_HOURS, lo=1, hi=24 * 30),
            idle_minutes=env.int("SESSION_IDLE_MINUTES", DEFAULT_IDLE_MINUTES, lo=5, hi=24 * 60 * 30),
            login_per_minute=env.int("LOGIN_PER_MINUTE", 10, lo=1, hi=10_000),
            api_per_minute=env.int("API_PER_MINUTE", 1200, lo=1, hi=1_000_000),
            proxies=TrustedProxies.from_env(env),
            deliver_postbacks=env.bool("DELIVER_POSTBACKS", True),
            egress=EgressPolicy.from_env(env, own=(tracker_url, portal_url, *listen)),
        )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
