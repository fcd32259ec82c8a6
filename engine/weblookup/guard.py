"""Decides whether a URL may be fetched: the SSRF guard.

Every URL, and every redirect hop, is checked before any connection is made: scheme and port,
the domain allow/deny lists, then the host is resolved and EVERY address it resolves to must be
public (not private, loopback, link-local — which holds the 169.254.169.254 metadata service —
shared, reserved or multicast), unless the operator allowlisted the host or its network. The
fetcher then connects to the address checked here, never resolving the name again, so a DNS
answer that changes between check and connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_PORTS = {"http": 80, "https": 443}
# Names that mean "this cloud's metadata service" even before they resolve.
_METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.azure.com", "instance-data"}


class Refused(Exception):
    """The URL may not be fetched; the message says why (safe to log, never shown verbatim)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the address to connect to for it."""

    url: str
    scheme: str
    host: str  # as written in the URL, lower case, without brackets
    port: int
    address: str  # the checked IP to connect to
    path: str  # path + query, never empty


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (IPv4 and IPv6)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def forbidden(ip: IPAddress) -> bool:
    """True for any address that is not plainly public: private, loopback, link-local, …"""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and forbidden(embedded):
            return True
        if ip.scope_id:
            return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def _host_and_ports(entry: str) -> tuple[str, set[int] | None]:
    """An allow_hosts entry split into its host (name, address or network) and the extra ports
    it allows: an empty set for none, None for any ("host:*")."""
    if entry.startswith("["):  # [v6] or [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:  # name:port or v4:port (bare IPv6 has several colons)
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    if port == "*":
        return host, None
    if port.isdigit() and 0 < int(port) < 65536:
        return host, {int(port)}
    if port:
        raise ValueError(f"[web] allow_hosts entry {entry!r}: the port must be a number or *")
    return host, set()


def _matches(host: str, domains: Sequence[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


class Guard:
    """Checks URLs against the address rules and the operator's lists."""

    def __init__(
        self,
        *,
        allow_hosts: Sequence[str] = (),
        allow_domains: Sequence[str] = (),
        deny_domains: Sequence[str] = (),
        resolve: Resolver = system_resolve,
    ) -> None:
        self._names: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        # allowlisting a host lifts the address rule, not the port rule: 80/443 unless the entry
        # names its port ("wiki.corp:8080", "[fd00::1]:8443", "127.0.0.1:*" for any)
        self._ports: dict[str, set[int] | None] = {}
        for raw in allow_hosts:
            entry, ports = _host_and_ports(raw.strip().lower())
            try:
                network = ipaddress.ip_network(entry, strict=False)
                self._networks.append(network)
                key = str(network)
            except ValueError:
                key = entry.rstrip(".")
                self._names.add(key)
            known = self._ports.get(key, set())
            self._ports[key] = None if ports is None or known is None else known | ports
        self._allow = [d.strip().lower().strip(".") for d in allow_domains if d.strip()]
        self._deny = [d.strip().lower().strip(".") for d in deny_domains if d.strip()]
        self._resolve = resolve

    def check_domain(self, url: str) -> None:
        """The cheap checks that need no DNS: scheme, credentials, port, domain lists."""
        self._split(url)

    async def check(self, url: str) -> Target:
        """The checked target for `url`, or Refused. Resolves the host (once)."""
        scheme, host, port, path = self._split(url)
        allowlisted_name = host in self._names
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                resolved = await self._resolve(host, port)
            except (OSError, UnicodeError) as error:
                raise Refused(f"{host} does not resolve ({error})") from None
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolved]
            if not addresses:
                raise Refused(f"{host} does not resolve")
        for ip in addresses:
            if forbidden(ip) and not allowlisted_name and not self._in_networks(ip):
                raise Refused(
                    f"{host} resolves to {ip}, a private, loopback, link-local or reserved "
                    "address (add it to [web] allow_hosts if it is an intranet site to search)"
                )
        if port != _PORTS[scheme] and not self._port_allowed(host, addresses[0], port):
            raise Refused(
                f"port {port} is not allowed for {host} (only 80 and 443; allowlist "
                f'"{host}:{port}" in [web] allow_hosts for an intranet site on another port)'
            )
        return Target(url, scheme, host, port, str(addresses[0]), path)

    def _port_allowed(self, host: str, address: IPAddress, port: int) -> bool:
        """Whether an allow_hosts entry for this host (or a network holding it) names `port`."""
        keys = [host] + [
            str(n) for n in self._networks if n.version == address.version and address in n
        ]
        for key in keys:
            ports = self._ports.get(key, set())
            if ports is None or port in ports:
                return True
        return False

    def _in_networks(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self._networks if network.version == ip.version)

    def _split(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as error:
            raise Refused(f"not a valid URL: {error}") from None
        scheme = parts.scheme.lower()
        if scheme not in _PORTS:
            raise Refused(f"only http and https URLs are fetched, not {scheme or 'no scheme'}")
        if parts.username is not None or parts.password is not None:
            raise Refused("URLs with credentials are not fetched")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise Refused("the URL has no host")
        if host in _METADATA_NAMES and host not in self._names:
            raise Refused(f"{host} is a cloud metadata service")
        if _matches(host, self._deny):
            raise Refused(f"{host} is in [web] deny_domains")
        if self._allow and not _matches(host, self._allow) and host not in self._names:
            literal_ok = False
            try:
                literal_ok = self._in_networks(ipaddress.ip_address(host))
            except ValueError:
                pass
            if not literal_ok:
                raise Refused(f"{host} is not in [web] allow_domains")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return scheme, host, port or _PORTS[scheme], path
