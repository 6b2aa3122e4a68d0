"""The tracker's Lua scripts and its commands, packed by hand, and what they do to the keys they touch.

The names are built in kernel/keys.py only (here the commands get them as bytes). What the keys hold
(PREFIX is CLICKMINT_KEY_PREFIX, "cm" by default):

    {PREFIX}:events:{N}          stream, N in 0..shards-1; one entry per event, field "d" = orjson payload.
                                 A click or view the tracker takes for a person's also has field "b" = 1 or
                                 0: a burst or not, decided by Redis as it appends the entry (ingest then
                                 records a burst as bot "burst", never unique). Such a click also has "u" =
                                 1 or 0: unique or not, decided by the same script; for a capped click also
                                 "c" = 1 or 0: within its caps or over cap, decided by the tracker from its
                                 cap lease before the append (ingest applies "c" = 0 as the tracker does:
                                 over_cap, refusal over_cap, no click id). The {N} hash tag lets each shard
                                 live on its own node.
    {PREFIX}:uniq:{N}:L:visitor  string, set NX with the offer's window as TTL, by the same script that
                                 appends the click to shard N (same hash tag, same Cluster slot): the click
                                 of this visitor on link L is unique when the SET succeeds. A click spooled
                                 while Redis could not answer is decided when it is replayed, by the same
                                 SET in UNIQUE_REPLAY_XADD.
    {PREFIX}:burst:address       list of the times (ms, Redis's clock) of the address's last LIMIT + 1 hits,
                                 newest first, expiring WINDOW_S after the last (CLICKMINT_BURST_LIMIT and
                                 _WINDOW_S): counted by the script that appends each hit, whatever its shard.
                                 On a Redis Cluster {PREFIX}:burst:{N}:address instead, in the slot of the
                                 stream it is appended to: there an address's hits are counted per shard.
    {PREFIX}:cap:{o<offer>}:...  integer counters of the caps of one offer (offer-wide and per partner,
                                 daily and lifetime). A conversion's and payout's are checked and
                                 incremented atomically by one script (tracker/caps.py); a click cap's hold
                                 the clicks admitted, as the trackers report them (tracker/leases.py).
    {PREFIX}:lease:{o<offer>}:.. hash beside a click cap's counter: per tracker lease "units:expires_ms", the
                                 units it holds and has not used; an expired lease's go back to the cap.
    {PREFIX}:seen:{o<offer>}:... postback nonces, SET NX with a TTL, so a signed postback is used once.

"address" is a keyed hash of the visitor's address (IPv6: its /64), never the address itself.

The commands are sent by the raw RESP client (kernel/redis/resp.py) on the tracker's hot path.
"""

from __future__ import annotations

import hashlib

# The check of a set of counters, shared by the cap script (tracker/caps.py) and the click script below:
# KEYS[first..]: the counters; from ARGV[at], per counter its limit, its TTL (0: none) and its increment.
# Either every counter has room and all are incremented, or none is. A counter's TTL is set when the
# increment creates it (a daily counter is always created by this function), not again on every event.
CHECK_FUNCTION = b"""
local function capped(first, at)
  local n = #KEYS - first
  for i = 0, n do
    local current = tonumber(redis.call('GET', KEYS[first + i]) or '0')
    if current + tonumber(ARGV[at + 3 * i + 2]) > tonumber(ARGV[at + 3 * i]) then return false end
  end
  for i = 0, n do
    local step = tonumber(ARGV[at + 3 * i + 2])
    local ttl = tonumber(ARGV[at + 3 * i + 1])
    if redis.call('INCRBY', KEYS[first + i], step) == step and ttl > 0 then
      redis.call('EXPIRE', KEYS[first + i], ttl)
    end
  end
  return true
end
"""

# The burst rule, shared by the scripts below: count a hit of the address whose list is `key` and say
# whether it is a burst, i.e. whether the address already made `limit` hits in the `window_ms` before it
# (its hit `limit` places back is less than window_ms old). Redis's clock, so every tracker agrees; the
# list keeps limit + 1 times, so a burst of any length costs the same few commands per hit.
BURST_FUNCTION = b"""
local function burst(key, limit, window_ms)
  local time = redis.call('TIME')
  local now = time[1] * 1000 + math.floor(time[2] / 1000)  -- an integer: passed on as its digits
  local n = redis.call('LPUSH', key, now)
  redis.call('PEXPIRE', key, window_ms)
  if n <= limit then return false end
  local before = tonumber(redis.call('LINDEX', key, limit))
  redis.call('LTRIM', key, 0, limit)
  return now - before < window_ms
end
"""

# KEYS: the address's burst list, the stream; ARGV: the burst limit (hits), its window (ms), the payload.
# A view: counts the hit and appends the event with the verdict; returns 1 (a burst) or 0.
BURST_XADD = (
    BURST_FUNCTION
    + b"""
local b = burst(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
redis.call('XADD', KEYS[2], '*', 'd', ARGV[3], 'b', b and '1' or '0')
return b and 1 or 0
"""
)
BURST_XADD_SHA = hashlib.sha1(BURST_XADD).hexdigest().encode()

# KEYS: the uniqueness key, the burst list, the stream; ARGV: the uniqueness window (s), the burst limit and
# window (ms), the payload. One round trip counts the click's hit, decides its uniqueness (a burst is never
# unique and takes no uniqueness) and appends it with both verdicts; returns 1 (a burst) or 0.
UNIQUE_XADD = (
    BURST_FUNCTION
    + b"""
local b = burst(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
local unique = not b and redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
redis.call('XADD', KEYS[3], '*', 'd', ARGV[4], 'u', unique and '1' or '0', 'b', b and '1' or '0')
return b and 1 or 0
"""
)
UNIQUE_XADD_SHA = hashlib.sha1(UNIQUE_XADD).hexdigest().encode()

# KEYS: the uniqueness key, the burst list, the stream; ARGV: the uniqueness window (s), the burst limit and
# window (ms), the click's cap verdict ("1" within its caps, "0" over cap: decided by the tracker from its cap
# lease, tracker/leases.py), the payload. UNIQUE_XADD with the verdict appended as field "c"; touches no cap.
CAPPED_UNIQUE_XADD = (
    BURST_FUNCTION
    + b"""
local b = burst(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
local unique = not b and redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
redis.call('XADD', KEYS[3], '*', 'd', ARGV[5], 'u', unique and '1' or '0', 'c', ARGV[4], 'b', b and '1' or '0')
return b and 1 or 0
"""
)
CAPPED_UNIQUE_XADD_SHA = hashlib.sha1(CAPPED_UNIQUE_XADD).hexdigest().encode()
# KEYS: the uniqueness key, the stream; ARGV: the uniqueness window (s), the payload. The replay of a spooled
# click whose uniqueness Redis could not decide when it was answered (tracker/recorder.py): decided now, by the
# same SET NX, and appended with it as "u" (its burst verdict was the tracker's own, flagged degraded).
UNIQUE_REPLAY_XADD = b"""
local unique = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'd', ARGV[2], 'u', unique and '1' or '0')
return unique and 1 or 0
"""
UNIQUE_REPLAY_XADD_SHA = hashlib.sha1(UNIQUE_REPLAY_XADD).hexdigest().encode()
SCRIPTS = (BURST_XADD, UNIQUE_XADD, CAPPED_UNIQUE_XADD, UNIQUE_REPLAY_XADD)  # loaded at every connect


# The commands of every event, packed by hand: the bytes pack() makes, at a quarter of its cost.
_XADD_HEAD = b"*5\r\n$4\r\nXADD\r\n"
_XADD_FIELD = b"\r\n$1\r\n*\r\n$1\r\nd\r\n"
_BURST_XADD_HEAD = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n" + BURST_XADD_SHA + b"\r\n$1\r\n2\r\n"
_UNIQUE_XADD_HEAD = b"*10\r\n$7\r\nEVALSHA\r\n$40\r\n" + UNIQUE_XADD_SHA + b"\r\n$1\r\n3\r\n"


def xadd_command(stream: bytes, payload: bytes) -> bytes:
    """XADD stream * d payload."""
    return b"%s$%d\r\n%s%s$%d\r\n%s\r\n" % (_XADD_HEAD, len(stream), stream, _XADD_FIELD, len(payload), payload)


def burst_args(limit: int, window_s: int) -> bytes:
    """The burst limit (hits) and window (converted to ms) as the scripts take them: two packed arguments."""
    hits, window_ms = b"%d" % limit, b"%d" % (window_s * 1000)
    return b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(hits), hits, len(window_ms), window_ms)


def burst_xadd_command(burst_key: bytes, stream: bytes, args: bytes, payload: bytes) -> bytes:
    """EVALSHA of BURST_XADD: count the hit of a view's address and append the view with the verdict."""
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        _BURST_XADD_HEAD,
        len(burst_key),
        burst_key,
        len(stream),
        stream,
        args,
        len(payload),
        payload,
    )


def unique_xadd_command(
    unique_key: bytes, burst_key: bytes, stream: bytes, window_s: int, args: bytes, payload: bytes
) -> bytes:
    """EVALSHA of UNIQUE_XADD: count the click's hit, decide its uniqueness and append it in one call."""
    middle = _MIDDLES.get((stream, window_s, args))
    if middle is None:  # stream, window and burst arguments, packed once per shard and window
        window = b"%d" % window_s
        middle = _MIDDLES[stream, window_s, args] = b"$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
            len(stream),
            stream,
            len(window),
            window,
            args,
        )
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        _UNIQUE_XADD_HEAD,
        len(unique_key),
        unique_key,
        len(burst_key),
        burst_key,
        middle,
        len(payload),
        payload,
    )


_MIDDLES: dict[tuple[bytes, int, bytes], bytes] = {}


def capped_unique_xadd_command(
    unique_key: bytes, burst_key: bytes, stream: bytes, window_s: int, args: bytes, within: bool, payload: bytes
) -> bytes:
    """EVALSHA of CAPPED_UNIQUE_XADD: UNIQUE_XADD's call with the click's cap verdict ("c") before the payload."""
    middle = _MIDDLES.get((stream, window_s, args))
    if middle is None:
        unique_xadd_command(unique_key, burst_key, stream, window_s, args, payload)
        middle = _MIDDLES[stream, window_s, args]
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s%s$%d\r\n%s\r\n" % (
        _CAPPED_UNIQUE_XADD_HEAD,
        len(unique_key),
        unique_key,
        len(burst_key),
        burst_key,
        middle,
        _WITHIN if within else _OVER,
        len(payload),
        payload,
    )


_CAPPED_UNIQUE_XADD_HEAD = b"*11\r\n$7\r\nEVALSHA\r\n$40\r\n" + CAPPED_UNIQUE_XADD_SHA + b"\r\n$1\r\n3\r\n"
_WITHIN, _OVER = b"$1\r\n1\r\n", b"$1\r\n0\r\n"
