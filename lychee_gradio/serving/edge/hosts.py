"""Who the server answers to: the `Host` header's rule (DNS rebinding) and same-origin posts."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass, field

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _host_name(value: str) -> str:
    """The host of a `Host` header or an origin's netloc, without its port, lower case, IPv6 unbracketed."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        return value.rsplit(":", 1)[0]
    return value


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def machine_names() -> set[str]:
    """This machine's own names (what users of a server bound to every interface type)."""
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return names


@dataclass
class HostRule:
    """The hosts the server answers to (see the module's docstring); `allow` adds one (the share link)."""

    bound: str = "127.0.0.1"
    extra: tuple[str, ...] = ()
    names: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.names = {*LOOPBACK_NAMES, *(h.lower().strip("[]") for h in self.extra if h and h != "*")}
        self.any = "*" in self.extra
        self.every_interface = self.bound in ("0.0.0.0", "::", "")
        if self.every_interface:
            self.names |= machine_names()
        else:
            self.names.add(self.bound.lower().strip("[]"))

    def allow(self, host: str) -> None:
        self.names.add(_host_name(host))

    def allows(self, header: str | None) -> bool:
        if self.any:
            return True
        if not header:
            return False
        host = _host_name(header)
        if host in self.names or any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in self.names):
            return True
        # An address typed as such cannot be rebound by DNS: every one of a server on every interface is fine.
        return self.every_interface and _is_ip(host)


def same_origin(origin: str, host_header: str) -> bool:
    """Whether a browser's `Origin` is the page this server itself served (scheme-default ports counted)."""
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    default = 443 if parsed.scheme == "https" else 80
    origin_port = parsed.port or default
    host = host_header.strip().lower()
    host_name = _host_name(host)
    port_text = host.rsplit(":", 1)[1] if (host.count(":") == 1 or host.startswith("[") and "]:" in host) else ""
    host_port = int(port_text) if port_text.isdigit() else None
    if parsed.hostname.lower() != host_name:
        return False
    # Behind a proxy that terminates TLS, the Host keeps no port and the origin's is the default one.
    return host_port is None or host_port == origin_port
