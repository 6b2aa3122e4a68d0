"""Where Redis is: the nodes `CLICKMINT_REDIS_URL` names, and whether they form a Redis Cluster.

`CLICKMINT_REDIS_URL` names one server or several nodes of one deployment, comma-separated, either
as hosts of one URL (`redis://user:pass@10.0.0.1:7000,10.0.0.2:7000/0?ssl_cert_reqs=none`) or as
whole URLs (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`). A host without a scheme takes the first
URL's scheme, credentials, database and query. `CLICKMINT_REDIS_CLUSTER` says whether they are a
cluster: `yes`, `no`, or `auto` (default): asked of the nodes in turn, the first that answers says
(every node of one deployment gives the same answer); none answering leaves it undecided, never
"not a cluster".
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

CLUSTER_MODES = ("auto", "yes", "no")
DEFAULT_CLUSTER_MODE = "auto"
SCHEMES = ("redis", "rediss", "unix")


def node_urls(url: str) -> list[str]:
    """The URL of every node `url` names, in its order; raises ValueError on a malformed list."""
    items = [item.strip() for item in url.split(",") if item.strip()]
    if not items:
        raise ValueError("the Redis URL names no node")
    first = urlsplit(items[0])
    if first.scheme not in SCHEMES:
        raise ValueError(f"a Redis URL is redis://, rediss:// (TLS) or unix://, not {first.scheme}://")
    if first.scheme == "unix":
        if len(items) > 1:
            raise ValueError("a unix:// Redis URL names one server")
        return items
    auth = first.netloc.rsplit("@", 1)[0] + "@" if "@" in first.netloc else ""
    path, query = first.path, first.query
    hosts: list[tuple[str, str] | str] = [(first.netloc.rsplit("@", 1)[-1], "")]
    for item in items[1:]:
        if "://" in item:
            hosts.append(item)
            continue
        parts = urlsplit("//" + item)
        if parts.path or parts.query:  # the database and the TLS settings follow the last host
            path, query = parts.path, parts.query
        hosts.append((parts.netloc, ""))
    urls: list[str] = []
    for host in hosts:
        if isinstance(host, str):
            whole = urlsplit(host)
            if whole.scheme not in SCHEMES or whole.scheme == "unix":
                raise ValueError(f"a node of a Redis URL list is redis:// or rediss://, not {whole.scheme}://")
            whole.port  # noqa: B018 - raises ValueError on a port that is not a number
            urls.append(host)
            continue
        netloc = host[0]
        if urls and not urlsplit("//" + netloc).hostname:  # the first may leave it out: 127.0.0.1
            raise ValueError("a node of the Redis URL names no host")
        urlsplit("//" + netloc).port  # noqa: B018 - raises ValueError on a port that is not a number
        urls.append(urlunsplit((first.scheme, auth + netloc, path, query, "")))
    return items if len(items) == 1 else urls  # one URL: exactly as given


def node_url(base: str, host: str, port: int) -> str:
    """`base` (credentials, TLS settings) pointed at another node; the database is 0 on a cluster."""
    parts = urlsplit(base)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return urlunsplit((parts.scheme, f"{auth}{host}:{port}", "", parts.query, ""))


def address(url: str) -> tuple[str, int]:
    """A node URL's (host, port)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379
