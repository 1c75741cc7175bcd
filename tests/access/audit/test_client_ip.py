"""The client address written to audit rows and download logs: the portal reads it itself (the
gateway's hot path), by the rule allauth's login rate limits use. These tests hold the two to
the same answer, so a client is never one address to the rate limits and another in the logs."""

from __future__ import annotations

import pytest
from allauth.account.adapter import get_adapter
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.test import RequestFactory, override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access.audit.services import request_client_ip


def _allauth_answer(request) -> str | None:
    # What the portal did before it read the address itself: allauth's adapter, and the socket's
    # address where the adapter finds none it trusts.
    try:
        return get_adapter(request).get_client_ip(request)
    except (PermissionDenied, ImproperlyConfigured):  # no address it trusts; too few X-Forwarded-For hops
        return request.META.get("REMOTE_ADDR")


_address = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"{a}:{8000}"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:443"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.sampled_from(["", " ", "unknown", "999.1.1.1", "::ffff:10.0.0.1", " 10.1.2.3 ", "::1%eth0"]),
)


@hypothesis_settings(max_examples=400, deadline=None)
@given(
    remote=st.one_of(st.none(), _address),
    forwarded=st.one_of(
        st.none(), st.lists(_address, max_size=4).map(", ".join), st.lists(_address, max_size=4).map(",".join)
    ),
    real_ip=st.one_of(st.none(), _address),
    proxies=st.integers(min_value=0, max_value=3),
    trusted_header=st.sampled_from([None, "X-Real-IP", "x-real-ip"]),
)
def test_the_portal_reads_the_client_address_as_allauth_does(remote, forwarded, real_ip, proxies, trusted_header):
    meta = {}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    if real_ip is not None:
        meta["HTTP_X_REAL_IP"] = real_ip
    request = RequestFactory().get("/", **meta)
    if remote is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote

    with override_settings(ALLAUTH_TRUSTED_PROXY_COUNT=proxies, ALLAUTH_TRUSTED_CLIENT_IP_HEADER=trusted_header):
        assert request_client_ip(request) == _allauth_answer(request)


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "198.51.100.1", "203.0.113.7"),  # no proxy trusted: the header is the client's own claim
        (1, "198.51.100.1", "198.51.100.1"),  # one proxy appended the client's address
        (1, "10.9.9.9, 198.51.100.1", "198.51.100.1"),  # the client's forged entry comes first
        (2, "10.9.9.9, 198.51.100.1, 192.0.2.10", "198.51.100.1"),
        (2, "198.51.100.1", "203.0.113.7"),  # fewer hops than proxies: nothing there is trusted
        (1, "not-an-address", "203.0.113.7"),
        (1, "[2001:db8::1]:443", "2001:db8::1"),
    ],
)
def test_the_address_comes_from_the_trusted_proxies_entry(proxies, forwarded, expected):
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=forwarded)

    with override_settings(ALLAUTH_TRUSTED_PROXY_COUNT=proxies):
        assert request_client_ip(request) == expected
