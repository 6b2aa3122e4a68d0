"""The event contract: what the tracker writes to the event streams and ingest stores, as a typed record.

Its JSON Schema is schemas/events/event.schema.json (the payload "d") and entry.schema.json (the stream
entry); `Event` names the same fields (tests/unit/test_event_contract.py keeps the two equal). The
tracker builds events as plain dicts typed `Event` (orjson writes them without a conversion), ingest
decodes them with `decode`. Pure: no I/O library.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

import orjson

TYPES = frozenset(("view", "click", "action", "purchase", "refund"))
Kind = Literal["view", "click", "action", "purchase", "refund"]
MAX_AHEAD_MS = 5 * 60 * 1000  # an event dated later than this past ingest's clock is refused
_STEP_TOLERANCE_MS = 1000  # an id later than its ts by less than this is ordinary (a slow request body)


class _ItemBase(TypedDict):
    sku: str
    qty: int
    price: int


class Item(_ItemBase, total=False):
    """One line of a purchase: `qty` units of `sku` at `price` minor units each, maybe with its `category`."""

    category: str  # the shop's category of the SKU, which loyalty's category rules match


class Event(TypedDict, total=False):
    """One event as the tracker writes it (the stream payload "d"); the schema says which type needs which field."""

    id: str  # UUIDv7, the idempotency key all the way to the ledger
    ts: int  # the tracker's wall clock when it answered, ms since the epoch (UTC)
    ts_tracker: int  # set by ingest only: the ts the tracker wrote when its clock had stepped back
    type: Kind
    link: int
    partner: int
    offer: int
    country: str  # ISO 3166-1 alpha-2, empty when unknown
    ip: str  # the client address truncated to its /24 or /48
    ua: str
    bot: str | None
    refusal: str
    unique: bool
    over_cap: bool
    degraded: bool
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    source: str
    click_id: str
    via: Literal["postback", "tune", "pixel", "cookie"]
    auth: Literal["signature", "token", "none"]
    order_id: str
    action: str
    amount: int  # minor units of `currency`, never a float
    currency: str
    items: list[Item]
    customer: str
    coupon: str  # the code the conversion carried (pixel/postback `coupon`, TUNE `promo_code`), upper-cased
    credited_by: Literal["click", "cookie", "coupon"]  # a coupon-credited conversion has no click_id
    email_sha256: str  # the customer's hashed e-mail, for the self-referral rule only
    first_click: str  # a first-click offer's repeat click: the visitor's first click id, which it keeps
    referrer: str  # a click's referring host, for the forbidden-referrer rule
    smart: int  # a click through a smart link: that link's id
    variant: str  # the variant the smart link's rules chose


def event_time(event_id: str, ts: int, now_ms: int | None = None) -> int:
    """When an event happened, for its day partition and its statement period; raises BadEvent if unknowable.

    The rule for tracker clock jumps:
    - The period is the UTC month of the event's time, the tracker's wall clock when it answered.
      Arriving late (a spool replayed after a Redis outage, ingest lagging) never changes it.
    - Backwards: a tracker's UUIDv7 ids never go backwards (tracker/ids.py carries them on by the
      monotonic clock when the wall clock steps back), so an id later than the event's `ts` (by more
      than a second) means the clock stepped back after the request: the id's time is the event's time.
    - Forwards: an event more than MAX_AHEAD_MS ahead of ingest's own clock cannot have happened yet;
      it is refused with the reason (to the dead-letter stream, nothing stored or paid, the payload kept
      for an operator to re-date), never filed into a future period. Refusing rather than clamping keeps
      ingest deterministic: a clamped time would depend on when the entry was read, and the primary key
      (id, ts) would then store a redelivered entry twice; an event accepted once is accepted again later.
    """
    if len(event_id) == 36 and event_id[14] == "7" and event_id[19] in "89abAB":
        try:
            id_ms = int(event_id[:8] + event_id[9:13], 16)
        except ValueError:
            id_ms = ts
        if id_ms - ts > _STEP_TOLERANCE_MS:
            ts = id_ms
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if ts - now_ms > MAX_AHEAD_MS:
        ahead = (ts - now_ms) / 3_600_000
        raise BadEvent(f"ts is {ahead:.2f} h ahead of ingest's clock: the tracker's clock jumped forward")
    return ts


class BadEvent(ValueError):
    """An entry that can never be stored: it goes to the dead-letter stream with this reason."""


def decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as its event: the payload "d", with what Redis decided ("u", "c", "b") merged in."""
    return load(fields.get(b"d", b""), fields.get(b"u"), fields.get(b"c"), fields.get(b"b"))


def load(data: bytes, flag: bytes | None, within: bytes | None = None, burst: bytes | None = None) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"payload is not JSON: {exc}") from None
    if type(event) is not dict:
        raise BadEvent("payload is not an object")
    if flag is not None:
        event["unique"] = flag == b"1"
    if within == b"0":  # over cap, as the tracker answered it: to the fallback, without its click id
        event["over_cap"] = True
        event["refusal"] = "over_cap"
        event.pop("click_id", None)
    if burst == b"1" and event.get("bot") is None:  # Redis counted its address past the burst limit
        event["bot"] = "burst"
        if "unique" in event:
            event["unique"] = False
    return event
