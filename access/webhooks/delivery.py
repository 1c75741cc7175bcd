"""One POST of a webhook message, to an address checked first: the host's addresses are resolved
once, each is checked (no loopback, private, link-local, shared or reserved address unless the
endpoint allows a private network), and the connection goes to the address checked, with the
host name kept for Host and for TLS, so DNS cannot swap in another address in between.
Redirects are not followed (a receiver could point one anywhere)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

USER_AGENT = "model-access-portal-webhooks/1"


class AddressRefused(Exception):
    """The endpoint's address may not be used; the message says why and what to do."""


@dataclass
class PostResult:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to an IPv4 host: mapped (::ffff:a.b.c.d), 6to4
    (2002::/16), Teredo's client, NAT64 (64:ff9b::/96, 64:ff9b:1::/48), IPv4-compatible (::a.b.c.d)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in network for network in (*_NAT64, _IPV4_COMPATIBLE)):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(address: str) -> bool:
    """Public unicast addresses only: not loopback, private, link-local, shared (100.64/10),
    multicast, reserved or unspecified; an IPv6 address that carries an IPv4 one (mapped, 6to4,
    Teredo, NAT64, IPv4-compatible) is judged by that IPv4 address too."""
    ip = ipaddress.ip_address(address.split("%")[0])
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        candidates.append(embedded)
    return all(candidate.is_global and not candidate.is_multicast for candidate in candidates)


def _host_ascii(host: str) -> str:
    """The host as it goes on the wire (an internationalised name in IDNA's ASCII form)."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise AddressRefused(f"{host!r} is not a valid host name ({exc}).") from exc


def endpoint_address(url: str, *, allow_private: bool) -> str:
    """The address to connect to for url: its host's first address, all of them checked."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"{url!r} is not an http(s) URL.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise AddressRefused(f"{url!r} has an invalid port ({exc}).") from exc
    try:
        infos = socket.getaddrinfo(_host_ascii(parts.hostname), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressRefused(f"{parts.hostname} does not resolve ({exc.strerror}).") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    refused = [address for address in addresses if not address_allowed(address)]
    if refused and not allow_private:
        raise AddressRefused(
            f"{parts.hostname} resolves to {', '.join(refused)}, a loopback, private or reserved address; an admin "
            "must tick 'Allow private network' on the endpoint to deliver there."
        )
    return addresses[0]


def webhook_post(url: str, body: bytes, headers: dict[str, str], *, address: str, timeout: float) -> PostResult:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hostname = _host_ascii(parts.hostname)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    options = {"timeout": urllib3.Timeout(connect=min(timeout, 5.0), read=timeout), "retries": False, "maxsize": 1}
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address, port, server_hostname=hostname, assert_hostname=hostname,
            ssl_context=ssl.create_default_context(), **options,
        )  # fmt: skip
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    host = f"[{hostname}]" if ":" in hostname else hostname
    host += f":{parts.port}" if parts.port else ""
    started = time.monotonic()
    try:
        response = pool.urlopen(
            "POST", target, body=body, headers={**headers, "Host": host, "User-Agent": USER_AGENT},
            redirect=False, preload_content=False, assert_same_host=False,
        )  # fmt: skip
        try:
            excerpt = response.read(500, decode_content=False).decode("utf-8", "replace")
        finally:
            response.release_conn()
        error = "" if 200 <= response.status < 300 else f"answered {response.status}"
        return PostResult(response.status, error, excerpt, int((time.monotonic() - started) * 1000))
    except urllib3.exceptions.HTTPError as exc:
        return PostResult(None, f"{type(exc).__name__}: {exc}"[:500], "", int((time.monotonic() - started) * 1000))
    finally:
        pool.close()
