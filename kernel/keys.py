"""Every Redis key Clickmint uses, built here and nowhere else.

All keys start with the deployment's prefix (CLICKMINT_KEY_PREFIX, "cm" by default). A part in braces is
the Redis Cluster hash tag: keys that one script touches together share it, so they live in one slot.

    {prefix}:events:{N}                    stream of shard N (tracker XADD, ingest's consumer group "billing")
    {prefix}:dead:{N}                      dead-letter stream of shard N (entries ingest can never store)
    {prefix}:uniq:{N}:{link}:{visitor}     a click's uniqueness marker, in the slot of its shard's stream
    {prefix}:burst:[{N}:]{address}         hits of one address, for bursts (per shard on a Cluster)
    {prefix}:seen:{o<offer>}:{nonce}       a spent postback signature (replay protection)
    {prefix}:cap:{o<offer>}:[p<partner>:]{metric}:{d<YYYYMMDD>|life}   cap counters of an offer
    {prefix}:lease:{o<offer>}:[p<partner>:]clicks:{d<YYYYMMDD>|life}  trackers' leases on a click cap
    {prefix}:rl:{bucket}:{client}          the portal's rate-limit windows

Pure: builds strings, talks to no server.
"""

from __future__ import annotations


def stream_key(prefix: str, shard: int) -> str:
    """The event stream of a shard."""
    return f"{prefix}:events:{{{shard}}}"


def dead_key(prefix: str, shard: int) -> str:
    """The dead-letter stream of a shard."""
    return f"{prefix}:dead:{{{shard}}}"


def unique_prefix(prefix: str, shard: int, link_id: int) -> str:
    """The start of a link's uniqueness markers: the visitor's digest follows."""
    return f"{prefix}:uniq:{{{shard}}}:{link_id}:"


def burst_prefix(prefix: str, shard: int | None) -> str:
    """The start of the burst lists of hits: the address follows. `shard` None: one list per address for
    every shard (a single Redis); else one per address and shard, in the slot of the shard's stream."""
    return f"{prefix}:burst:" if shard is None else f"{prefix}:burst:{{{shard}}}:"


def seen_key(prefix: str, offer_id: int, nonce: str) -> str:
    """A spent postback signature of an offer."""
    return f"{prefix}:seen:{{o{offer_id}}}:{nonce}"


def cap_key(prefix: str, offer_id: int, partner_id: int | None, metric: str, day: str | None) -> str:
    """A cap counter of an offer (`partner_id` None: the offer's own); `day` (YYYYMMDD, UTC) names a daily
    counter's day, None a lifetime counter."""
    who = "" if partner_id is None else f"p{partner_id}:"
    when = "life" if day is None else f"d{day}"
    return f"{prefix}:cap:{{o{offer_id}}}:{who}{metric}:{when}"


def lease_key(prefix: str, offer_id: int, partner_id: int | None, metric: str, day: str | None) -> str:
    """The trackers' leases on a cap (tracker/leases.py): beside its counter, in the same Cluster slot."""
    who = "" if partner_id is None else f"p{partner_id}:"
    when = "life" if day is None else f"d{day}"
    return f"{prefix}:lease:{{o{offer_id}}}:{who}{metric}:{when}"


def rate_key(prefix: str, bucket: str, client: str) -> str:
    """A rate-limit window of the portal: a bucket (login, public...) and a client (address or account)."""
    return f"{prefix}:rl:{bucket}:{client}"
