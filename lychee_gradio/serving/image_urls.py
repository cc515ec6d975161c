"""Fetching image URLs for `/v1/rerank` and MCP, when the operator allows it (`--allow-image-urls`).

A URL from an untrusted caller must not become a way into the server's own network. Each hop
(the URL and every redirect, at most `max_redirects`):

1. http or https only; the host is resolved here, and **every** address it resolves to must be a
   public one: loopback, private, link-local, carrier-grade NAT, multicast, reserved and
   unspecified addresses are refused, IPv4 and IPv6 alike, IPv4 embedded in IPv6 (mapped, 6to4,
   Teredo, NAT64) included; numeric spellings (`2130706433`, `0x7f.1`, `127.1`) resolve to what
   they mean and are refused the same way. Hosts in `allowed_hosts` (an internal CDN) skip this
   check: the operator vouched for them.
2. The connection goes to the address that was checked (no second lookup that DNS could answer
   differently), with the URL's host name for TLS (SNI and certificate) and the `Host` header.
3. Proxies from the environment are not used (they would resolve the host themselves).

One deadline covers the whole fetch (lookups, connects, redirects, the body): a server that sends
a byte every few seconds is cut off at the deadline, not per read. Fetching is asynchronous, on
the event loop, never on a worker thread or under the model's lock. The slots are shared fairly: at
most `MAX_CONCURRENT_FETCHES` run at once in the process, `FETCHES_PER_CLIENT` of them for one
client address and `FETCHES_PER_REQUEST` for one request (`requests.fetch_urls`), and a request's
other fetches are cancelled as soon as one fails or the request ends. Every failure reads the same to the caller
("could not be fetched"), whatever the low-level reason (refused address, closed port, timeout,
HTTP error), so answers do not map the network; the reason goes to the server's log.

This is the approach of vLLM's `--allowed-media-domains` and of `safehttpx` (which Gradio uses),
with a stricter address rule, no DNS-over-HTTPS fallback and a total deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

import httpx

from ..contract import InputError, WordedError

logger = logging.getLogger(__name__)

MAX_CONCURRENT_FETCHES = 16
FETCHES_PER_CLIENT = 8
FETCHES_PER_REQUEST = 4
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv6 ranges that carry an IPv4 address and may reach it through translation on some networks.
_EMBEDDING_IPV4 = [ipaddress.ip_network(net) for net in ("::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48")]


@dataclass(frozen=True)
class UrlPolicy:
    """What the operator allows: whether URLs are fetched at all, hosts exempt from the address
    rule, the total deadline per URL, the size cap and the number of redirects followed."""

    allow: bool = False
    allowed_hosts: tuple[str, ...] = ()
    timeout: float = 10.0
    max_bytes: int = 20 * 2**20
    max_redirects: int = 3

    def host_allowed(self, host: str) -> bool:
        """`host` is on the operator's list: an exact name or address, or `*.example.com` for its subdomains."""
        host = host.lower().rstrip(".")
        for entry in self.allowed_hosts:
            entry = entry.lower().rstrip(".")
            if entry.startswith("*.") and (host == entry[2:] or host.endswith(entry[1:])):
                return True
            if host == entry.strip("[]"):
                return True
        return False


class _Refused(WordedError):
    """Why one fetch failed; logged, never shown to the caller (who is told `url_not_fetched`)."""

    code = "url_refused"


def public_address(address: str) -> bool:
    """Whether an IP address (v4 or v6) is one that untrusted URLs may reach."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = []
    if ip.version == 6:
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if any(inner is not None and not public_address(str(inner)) for inner in embedded):
        return False
    if ip.version == 6 and any(ip in network for network in _EMBEDDING_IPV4):
        return False
    return ip.is_global and not ip.is_multicast


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise _Refused(f"cannot resolve {host!r}: {error}") from None
    addresses = []
    for family, _, _, _, sockaddr in found:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    if not addresses:
        raise _Refused(f"{host!r} has no address")
    return addresses


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """Connects to the address that was checked, keeping the URL's host for TLS and the Host header."""

    def __init__(self, address: str):
        super().__init__(trust_env=False, retries=0)
        self.address = address

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        request.headers["Host"] = request.url.netloc.decode("ascii")
        request.url = request.url.copy_with(host=self.address)
        request.extensions = {**request.extensions, "sni_hostname": host}
        return await super().handle_async_request(request)


class ImageFetcher:
    """Fetches image URLs under a `UrlPolicy`; one per server."""

    def __init__(self, policy: UrlPolicy):
        self.policy = policy
        self._slots: asyncio.Semaphore | None = None
        self._clients: dict[str, list] = {}  # client -> [its semaphore, fetches waiting or running]

    async def fetch(self, url: str, field: str, deadline: float | None = None, client: str = "-") -> bytes:
        """The bytes at `url`, within the policy's deadline (and `deadline`, a loop time, if sooner)."""
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.policy.timeout
        if deadline is not None:
            limit = min(limit, deadline)
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)
        try:
            return await asyncio.wait_for(self._queued(url, field, client), timeout=max(0.0, limit - loop.time()))
        except InputError:
            raise
        except (TimeoutError, asyncio.TimeoutError):
            logger.info("image URL %s not fetched for %s: past the deadline", _short(url), field)
        except Exception as error:  # noqa: BLE001 - refused, unreachable, malformed (httpx.InvalidURL): all alike
            logger.info("image URL %s not fetched for %s: %s", _short(url), field, error)
        raise InputError(field, "url_not_fetched", timeout=self.policy.timeout)

    async def _queued(self, url: str, field: str, client: str) -> bytes:
        entry = self._clients.setdefault(client, [asyncio.Semaphore(FETCHES_PER_CLIENT), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                async with self._slots:
                    return await self._follow(url, field)
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._clients.get(client) is entry:
                del self._clients[client]

    async def _follow(self, url: str, field: str) -> bytes:
        for _ in range(self.policy.max_redirects + 1):
            target = httpx.URL(url)
            if target.scheme not in ("http", "https") or not target.host:
                raise _Refused(f"not an http(s) URL: {_short(url)}")
            port = target.port or (443 if target.scheme == "https" else 80)
            addresses = await _resolve(target.host, port)
            if not self.policy.host_allowed(target.host):
                blocked = [address for address in addresses if not public_address(address)]
                if blocked:
                    raise _Refused(f"{target.host!r} resolves to a non-public address ({blocked[0]})")
            async with httpx.AsyncClient(
                transport=_PinnedTransport(addresses[0]), trust_env=False, follow_redirects=False, timeout=None
            ) as client:
                async with client.stream("GET", target, headers={"Accept": "image/*", "Accept-Encoding": "identity"}) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(target.join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise _Refused(f"HTTP {response.status_code}")
                    return await self._body(response, field)
        raise _Refused(f"more than {self.policy.max_redirects} redirects")

    async def _body(self, response: httpx.Response, field: str) -> bytes:
        cap = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InputError(field, "url_too_large", limit=cap)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise InputError(field, "url_too_large", limit=cap)
            chunks.append(chunk)
        return b"".join(chunks)


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."
