"""Locust scenarios: tracker traffic (70% views, 25% clicks, 4% actions, 1% purchases, ~10% bots) and a portal browser.

    python -m loadtests.seed --out out/seed.json
    locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s --csv out/run --host http://127.0.0.1:8000

Options of our own: --seed-file (default out/seed.json, or LOCUST_SEED_FILE), --portal-host (default
http://127.0.0.1:8001, or LOCUST_PORTAL_HOST), --bot-share (default 0.1), --user-throughput (tasks per
second of each tracker user, started as Poisson arrivals on a schedule of the user's own, so users x
throughput is the offered rate whatever the answers take; default 0: think times of 0.05-0.5 s). Name a
class to run only it: `locust -f loadtests/locustfile.py TrackerUser ...`.

Each view and click comes from a fresh visitor address in `X-Forwarded-For`; the tracker believes it
only with CLICKMINT_TRUST_FORWARDED=true, otherwise every request is one visitor from 127.0.0.1 and
most traffic is classed as a burst (bots). Conversions reuse the address and user agent of the click
they convert. A response is a failure when it is not what a browser of a real programme would get:
a refusal header on a view or pixel, or a click that is not a 302 carrying a click id.
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from locust import HttpUser, between, events, task

BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
    "Safari/537.36",
)
BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "curl/8.5.0",
    "python-requests/2.32.3",
)
BROWSER_HEADERS = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Accept-Language": "en-GB,en;q=0.9"}
RECENT_CLICKS = 50  # clicks a user remembers to convert later


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--seed-file", default="out/seed.json", env_var="LOCUST_SEED_FILE", help="links and offers from loadtests.seed"
    )
    parser.add_argument(
        "--portal-host", default="http://127.0.0.1:8001", env_var="LOCUST_PORTAL_HOST", help="base URL of the portal"
    )
    parser.add_argument("--bot-share", type=float, default=0.10, help="share of tracker users with a bot user agent")
    parser.add_argument(
        "--user-throughput",
        type=float,
        default=0.0,
        help="tasks/s of each tracker user, paced (Poisson arrivals); 0: think times of 0.05-0.5 s",
    )


@functools.cache
def _seed(path: str) -> dict[str, Any]:
    """The seed file, read once per process; a clear error when it is missing."""
    try:
        seeded: dict[str, Any] = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RuntimeError(f"no seed file {path}: run `python -m loadtests.seed --out {path}` first") from None
    if not seeded.get("links") or not seeded.get("offers"):
        raise RuntimeError(f"{path} holds no links or offers")
    return seeded


def _option(user: HttpUser, name: str, default: Any) -> Any:
    options = user.environment.parsed_options
    return getattr(options, name, default) if options is not None else default


def _visitor_ip() -> str:
    """A random address of 198.18.0.0/15 (set aside for benchmarks): a new visitor each time."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


class TrackerUser(HttpUser):
    """Partner-site traffic: banner views, clicks, and the merchant's conversion pixel."""

    weight = 9
    _think = between(0.05, 0.5)
    _due = 0.0  # paced: when the next task is due (time.monotonic)

    def wait_time(self) -> float:
        """Think time between tasks, or the pause that keeps this user at --user-throughput tasks/s."""
        throughput = float(_option(self, "user_throughput", 0.0))  # read each time: a driver may change it
        if throughput <= 0:
            return float(self._think())
        # Poisson arrivals at the user's rate, on a schedule of their own: users spawned in one batch do not
        # fire together (locust's constant_throughput keeps them in step, so they came in bursts), a slow
        # answer does not lower the rate, and a user more than a second behind starts again from now.
        now = time.monotonic()
        self._due = (max(self._due, now - 1.0) if self._due else now) + random.expovariate(throughput)
        return max(0.0, self._due - now)

    def on_start(self) -> None:
        seeded = _seed(str(_option(self, "seed_file", "out/seed.json")))
        self.links: list[dict[str, Any]] = seeded["links"]
        self.offers = {offer["id"]: offer for offer in seeded["offers"]}
        self.bot = random.random() < float(_option(self, "bot_share", 0.10))
        self.user_agent = random.choice(BOTS if self.bot else BROWSERS)
        # (offer id, click id, visitor address) of recent clicks, to convert later
        self.clicks: deque[tuple[int, str, str]] = deque(maxlen=RECENT_CLICKS)

    def _headers(self, ip: str) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "X-Forwarded-For": ip}
        if not self.bot:
            headers.update(BROWSER_HEADERS)
        return headers

    @task(70)
    def view(self) -> None:
        link = random.choice(self.links)
        with self.client.get(
            f"/v/{link['code']}", headers=self._headers(_visitor_ip()), name="/v/[link]", catch_response=True
        ) as response:
            refusal = response.headers.get("x-clickmint-refusal")
            if response.status_code != 200 or refusal:
                response.failure(f"view: {response.status_code} {refusal or ''}")

    @task(25)
    def click(self) -> None:
        self._click(random.choice(self.links))

    def _click(self, link: dict[str, Any]) -> str | None:
        ip = _visitor_ip()
        with self.client.get(
            f"/c/{link['code']}",
            params={"sub1": "locust"},
            headers=self._headers(ip),
            name="/c/[link]",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"click: {response.status_code}, not a redirect")
                return None
            click_id = _click_id(response.headers.get("location", ""), response.cookies.get(f"cm_{link['offer_id']}"))
            if not click_id:
                response.failure("click: no click id in the Location or the cookie")
                return None
        self.client.cookies.clear()  # the next request is another visitor; a pixel names its cookie itself
        self.clicks.append((link["offer_id"], click_id, ip))
        return click_id

    def _recent_click(self, kind: str) -> tuple[int, str, str] | None:
        """A click of an offer of this kind (else any offer) to convert; clicks one first when there is none."""
        for offer_id, click_id, ip in reversed(self.clicks):
            if self.offers[offer_id]["kind"] == kind:
                return offer_id, click_id, ip
        links = [link for link in self.links if self.offers[link["offer_id"]]["kind"] == kind] or self.links
        link = random.choice(links)
        if self._click(link) is None:
            return None
        return self.clicks[-1]

    def _pixel(self, kind: str, params: dict[str, str]) -> None:
        converted = self._recent_click(kind)
        if converted is None:
            return
        offer_id, click_id, ip = converted
        # Half the pixels carry the click id, half rely on the first-party cookie the click set.
        headers = self._headers(ip)
        if random.random() < 0.5:
            params = {**params, "click_id": click_id}
        else:
            headers["Cookie"] = f"cm_{offer_id}={click_id}"
        with self.client.get(
            f"/a/{offer_id}", params=params, headers=headers, name=f"/a/[offer] {kind}", catch_response=True
        ) as response:
            refusal = response.headers.get("x-clickmint-refusal")
            if response.status_code != 200 or refusal:
                response.failure(f"{kind} pixel: {response.status_code} {refusal or ''}")

    @task(4)
    def action(self) -> None:
        self._pixel("cpa", {"action": "signup"})

    @task(1)
    def purchase(self) -> None:
        offer = next((o for o in self.offers.values() if o["kind"] == "cps"), None)
        currency = offer["currency"] if offer else "USD"
        amount = f"{random.randint(5, 500)}.{random.randint(0, 99):02d}"
        self._pixel("cps", {"order_id": uuid.uuid4().hex, "amount": amount, "currency": currency})


def _click_id(location: str, cookie: str | None) -> str | None:
    """The click id from the destination's `cid` macro, else from the `cm_<offer>` cookie."""
    found = parse_qs(urlsplit(location).query).get("cid")
    return found[0] if found and found[0] else cookie


class PortalUser(HttpUser):
    """A partner browsing the portal (only the pages that exist today: the home page and the health check)."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.client.base_url = str(_option(self, "portal_host", "http://127.0.0.1:8001")).rstrip("/")
        self.client.headers["User-Agent"] = random.choice(BROWSERS)

    @task(3)
    def home(self) -> None:
        self.client.get("/", name="portal /")

    @task(1)
    def healthz(self) -> None:
        self.client.get("/healthz", name="portal /healthz")
