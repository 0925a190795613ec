"""Downloading photos from URLs a shop hands us, without letting those URLs reach into the server's network (SSRF).

Every address a host name resolves to is checked **when the connection is made** and the socket is opened to that
very address, so a name cannot resolve to a public address for the check and to an internal one for the connection
(DNS rebinding). Redirects are followed by hand, a bounded number of times, and each hop is checked the same way.
Bodies are streamed under a byte limit and a total deadline. Only http and https; no proxies from the environment
(they would connect for us, unchecked); no credentials in URLs. Shops whose photos live on an internal host
allow-list it explicitly (``allowed_hosts``: names, addresses or networks).

Built on urllib3 (already the HTTP library under the Elasticsearch client): its connection class is the one seam
needed to connect to a vetted address while TLS still verifies the certificate against the host name.
"""
from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, LocationParseError, MaxRetryError, NewConnectionError, TimeoutError
from urllib3.util import Timeout, parse_url

REDIRECTS = {301, 302, 303, 307, 308}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 64 * 1024


class FetchError(Exception):
    """Why a URL gave no photo; ``code`` is one of: bad_url, refused_address, unreachable, timeout, http_error,
    too_many_redirects, too_large."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 25 * 1024 * 1024
    total_timeout_s: float = 30.0  # the whole download, redirects included
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0  # longest silence between two reads
    max_redirects: int = 5
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)  # names, IPs or CIDR networks

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hosts

    def allows_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        for entry in self.allowed_hosts:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # a host name, not a network
        return is_public(ip)


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address: not loopback, private, link-local, shared, reserved, multicast or
    unspecified, including IPv4 addresses smuggled inside IPv6 (mapped, NAT64, 6to4, Teredo)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
    return ip.is_global and not ip.is_multicast


class _CheckedConnectionMixin:
    policy: FetchPolicy

    def _new_conn(self) -> socket.socket:
        """Resolve, refuse if any address is not allowed, then connect to the checked address itself."""
        try:
            infos = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchError("unreachable", f"{self.host}: the name does not resolve") from exc
        addresses = [info[4][0] for info in infos]
        if not self.policy.allows_host(self.host):
            refused = [a for a in addresses if not self.policy.allows_address(a)]
            if refused:
                where = self.host if self.host == refused[0] else f"{self.host} ({refused[0]})"
                raise FetchError("refused_address", f"{where} is an internal address; allow-list the host if the "
                                 "shop really serves photos from there")
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self.timeout)
            try:
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        raise NewConnectionError(self, f"cannot connect to {self.host}: {last}")


def _pool_class(base_pool, base_connection, policy: FetchPolicy):
    connection = type("CheckedConnection", (_CheckedConnectionMixin, base_connection), {"policy": policy})
    return type("CheckedPool", (base_pool,), {"ConnectionCls": connection})


class Fetcher:
    """Downloads under one policy; reuses connections per host. Safe to share between threads."""

    def __init__(self, policy: FetchPolicy = FetchPolicy(), user_agent: str = "catalog-import/1") -> None:
        self.policy = policy
        self.headers = {"User-Agent": user_agent, "Accept": "image/*"}
        self._pools = {"http": _pool_class(HTTPConnectionPool, HTTPConnection, policy),
                       "https": _pool_class(HTTPSConnectionPool, HTTPSConnection, policy)}

    def fetch(self, url: str) -> bytes:
        """The body of ``url`` (following checked redirects), or FetchError saying why not."""
        deadline = time.monotonic() + self.policy.total_timeout_s
        for _ in range(self.policy.max_redirects + 1):
            response = self._get(url, deadline)
            if response.status in REDIRECTS and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                response.release_conn()
                continue
            try:
                if response.status != 200:
                    raise FetchError("http_error", f"HTTP {response.status} from {_shown(url)}")
                return self._body(response, deadline)
            finally:
                response.release_conn()
        raise FetchError("too_many_redirects", f"more than {self.policy.max_redirects} redirects")

    def _get(self, url: str, deadline: float):
        scheme, host, port, target = _parts(url)
        timeout = Timeout(connect=self.policy.connect_timeout_s,
                          read=max(0.1, min(self.policy.read_timeout_s, deadline - time.monotonic())))
        pool = self._pools[scheme](host, port, timeout=timeout, maxsize=1, retries=False)
        try:
            return pool.urlopen("GET", target, headers=self.headers, redirect=False, retries=False,
                                preload_content=False, timeout=timeout)
        except MaxRetryError as exc:  # urllib3 wraps what the connection raised
            raise _reason(exc.reason, url) from exc
        except (HTTPError, OSError) as exc:
            raise _reason(exc, url) from exc
        finally:
            pool.close()  # the response keeps its own connection until released

    def _body(self, response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise FetchError("too_large", f"{int(declared):,} bytes declared; the limit is {self.policy.max_bytes:,}")
        chunks, size = [], 0
        try:
            # read1: whatever has arrived (not "wait for 64 KiB"), so the deadline is checked while a server drips.
            while chunk := response.read1(_CHUNK):
                size += len(chunk)
                if size > self.policy.max_bytes:
                    raise FetchError("too_large", f"more than {self.policy.max_bytes:,} bytes")
                if time.monotonic() > deadline:
                    raise FetchError("timeout", f"took longer than {self.policy.total_timeout_s:g} s")
                chunks.append(chunk)
        except (HTTPError, OSError) as exc:
            raise _reason(exc, "") from exc
        return b"".join(chunks)


def _parts(url: str) -> tuple[str, str, int, str]:
    try:
        parsed = parse_url(url.strip())
    except LocationParseError as exc:
        raise FetchError("bad_url", f"not a URL: {url[:200]!r}") from exc
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise FetchError("bad_url", f"only http and https URLs are fetched, not {scheme or 'a relative path'!r}")
    if not parsed.host:
        raise FetchError("bad_url", f"no host in {url[:200]!r}")
    if parsed.auth:
        raise FetchError("bad_url", "URLs with credentials are not fetched")
    host = parsed.host.strip("[]")
    return scheme, host, parsed.port or (443 if scheme == "https" else 80), parsed.request_uri


def _reason(exc: BaseException, url: str) -> FetchError:
    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return FetchError("timeout", f"timed out fetching {_shown(url)}")
    return FetchError("unreachable", f"cannot fetch {_shown(url)}: {exc}")


def _shown(url: str) -> str:
    return url if len(url) <= 200 else url[:200] + "…"
