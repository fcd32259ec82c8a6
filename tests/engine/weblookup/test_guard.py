"""The SSRF guard: nothing private is ever connected to unless the operator allowlisted it.

No test here sends traffic anywhere but 127.0.0.1: refusals happen before any connection, and
names are resolved by a stub resolver (or the system's for "localhost" only).
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from engine.weblookup.fetch import Fetcher
from engine.weblookup.guard import Guard, Refused, forbidden
from tests.fakes.searx import FakeWeb


def stub_resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"stub resolver: unknown host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fd00:ec2::254",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1", "::",
    ],
)  # fmt: skip
def test_private_loopback_link_local_and_metadata_addresses_are_forbidden(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_not_forbidden(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://localhost/",  # resolved by the system resolver to loopback
        "file:///etc/passwd",
        "gopher://example.com/",
        "http://user:pw@example.com/",
        "http:///nohost",
    ],
)
async def test_refused_without_an_allowlist(url: str) -> None:
    with pytest.raises(Refused):
        await Guard().check(url)


async def test_names_are_checked_after_resolution_every_address() -> None:
    guard = Guard(
        allow_hosts=["127.0.0.1:*"],
        resolve=stub_resolver(
            {
                "intranet.example": ["10.1.2.3"],
                "rebind.example": ["127.0.0.1", "10.0.0.5"],  # one bad address is enough
                "decimal.example": ["2130706433"],  # odd forms still parse as 127.0.0.1
                "public.example": ["93.184.216.34"],
            }
        ),
    )
    for host in ("intranet.example", "rebind.example"):
        with pytest.raises(Refused, match="private, loopback"):
            await guard.check(f"http://{host}/")
    with pytest.raises(Refused, match="does not resolve"):
        await guard.check("http://nowhere.example/")
    target = await guard.check("https://public.example/a?b=1")  # checked only: no connection
    assert (target.address, target.port, target.path) == ("93.184.216.34", 443, "/a?b=1")


async def test_allowlist_accepts_names_ips_and_networks() -> None:
    resolve = stub_resolver({"wiki.corp": ["10.20.1.5"], "git.corp": ["10.30.0.7"]})
    guard = Guard(
        allow_hosts=["wiki.corp:8080", "10.30.0.0/16", "127.0.0.1:*", "[fd00::1]:8443"],
        resolve=resolve,
    )
    assert (await guard.check("http://wiki.corp:8080/page")).address == "10.20.1.5"
    assert (await guard.check("http://git.corp/x")).address == "10.30.0.7"
    assert (await guard.check("http://127.0.0.1:9/x")).port == 9
    assert (await guard.check("https://[fd00::1]:8443/")).port == 8443
    with pytest.raises(Refused):
        await guard.check("http://10.99.0.1/")


async def test_allowlisted_hosts_keep_the_port_rule() -> None:
    """Allowlisting lifts the address rule only: other ports must be named in the entry."""
    resolve = stub_resolver({"wiki.corp": ["10.20.1.5"], "git.corp": ["10.30.0.7"]})
    guard = Guard(allow_hosts=["wiki.corp:8080", "10.30.0.0/16"], resolve=resolve)
    for url in (
        "http://wiki.corp:22/",
        "http://wiki.corp:6379/",
        "http://git.corp:8080/",
        "http://10.30.0.7:5432/",
    ):
        with pytest.raises(Refused, match="port"):
            await guard.check(url)
    assert (await guard.check("https://wiki.corp/")).port == 443
    with pytest.raises(ValueError, match="port"):
        Guard(allow_hosts=["wiki.corp:http"])


async def test_domain_allow_and_deny_lists() -> None:
    resolve = stub_resolver({"docs.python.org": ["151.101.0.223"], "evil.com": ["1.2.3.4"]})
    guard = Guard(allow_domains=["python.org"], deny_domains=["bad.python.org"], resolve=resolve)
    await guard.check("https://docs.python.org/3/")
    for url in ("https://evil.com/", "https://bad.python.org/", "https://x.bad.python.org/"):
        with pytest.raises(Refused, match="domains"):
            await guard.check(url)
    with pytest.raises(Refused, match="port"):
        await guard.check("https://docs.python.org:22/")


async def test_loopback_fake_is_never_contacted_without_the_allowlist(fake_web: FakeWeb) -> None:
    fetcher = Fetcher(Guard(), timeout=2, max_bytes=100_000, max_redirects=3)
    try:
        for url in (fake_web.page("/page/normal"), f"http://localhost:{fake_web.port}/page/normal"):
            with pytest.raises(Refused):
                await fetcher.fetch(url)
    finally:
        await fetcher.close()
    assert fake_web.hits == []


@pytest.mark.parametrize("kind", ["private", "metadata"])
async def test_redirect_to_a_private_address_is_refused_before_connecting(
    fake_web: FakeWeb, kind: str
) -> None:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(str(request.url))

    http = httpx.AsyncClient(event_hooks={"request": [record]}, trust_env=False)
    fetcher = Fetcher(
        Guard(allow_hosts=["127.0.0.1:*"]), timeout=2, max_bytes=100_000, max_redirects=3, http=http
    )
    try:
        with pytest.raises(Refused, match="private, loopback, link-local"):
            await fetcher.fetch(fake_web.page(f"/redirect/{kind}"))
    finally:
        await http.aclose()
    assert fake_web.hits == [f"GET /redirect/{kind}"]
    assert sent and all(url.startswith("http://127.0.0.1:") for url in sent), sent


async def test_connection_goes_to_the_checked_address_with_the_original_host(
    fake_web: FakeWeb,
) -> None:
    """DNS is asked once; the request goes to that address, naming the site in Host."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    sent: list[tuple[str, str]] = []

    async def record(request: httpx.Request) -> None:
        sent.append((str(request.url), request.headers["host"]))

    http = httpx.AsyncClient(event_hooks={"request": [record]}, trust_env=False)
    guard = Guard(allow_hosts=["127.0.0.1:*"], resolve=resolve)
    fetcher = Fetcher(guard, timeout=2, max_bytes=100_000, max_redirects=3, http=http)
    try:
        page = await fetcher.fetch(f"http://pages.test:{fake_web.port}/page/normal")
    finally:
        await http.aclose()
    assert "teambot 9.9 was released" in page.text
    assert calls == ["pages.test"]
    assert sent == [
        (f"http://127.0.0.1:{fake_web.port}/page/normal", f"pages.test:{fake_web.port}")
    ]
