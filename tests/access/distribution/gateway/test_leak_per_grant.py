"""The leak rule counts a grant's networks, not a bundle's: new links do not reset the count,
and the sandbox's requests count too. New links are rate-limited per grant."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from access.distribution.bundles import bundle_create
from access.distribution.models import DownloadBundle
from access.distribution.tokens import link_path
from inference.sandbox.models import SandboxJob
from portal.errors import StateConflict


def _params_link(bundle):
    return bundle.links.select_related("file").get(file__name="params.json")


def test_fresh_links_each_time_do_not_reset_the_leak_count(client, settings, grant, researcher):
    """Before: a researcher made a new bundle whenever the last one neared the limit, and used
    nine networks in minutes without a suspension."""
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 3
    statuses = []
    for n in range(9):
        if n % 2 == 0:  # fresh links every other network
            try:
                bundle = bundle_create(grant=grant, user=researcher)
            except StateConflict:  # refused once the rule has fired: the old links stay suspended
                pass
        statuses.append(client.get(link_path(_params_link(bundle)), REMOTE_ADDR=f"198.51.{n}.7").status_code)
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] == 403  # the fourth network of the grant, though only the second of its bundle
    suspended = DownloadBundle.objects.filter(grant=grant, suspended_at__isnull=False).get()
    assert "4 networks" in suspended.suspended_reason and "this grant" in suspended.suspended_reason
    assert 200 not in statuses[3:]


def test_the_suspension_also_stops_new_links_until_a_reviewer_lifts_it(client, settings, grant, researcher):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 1
    bundle = bundle_create(grant=grant, user=researcher)
    assert client.get(link_path(_params_link(bundle)), REMOTE_ADDR="198.51.100.1").status_code == 200
    assert client.get(link_path(_params_link(bundle)), REMOTE_ADDR="203.0.113.1").status_code == 403
    with pytest.raises(StateConflict, match="suspended"):
        bundle_create(grant=grant, user=researcher)


def test_sandbox_requests_count_with_the_links_networks(client, settings, grant, researcher):
    settings.DOWNLOAD_LEAK_MAX_NETWORKS = 2
    bundle = bundle_create(grant=grant, user=researcher)
    link = _params_link(bundle)
    assert client.get(link_path(link), REMOTE_ADDR="198.51.100.1").status_code == 200
    # The grant was also used from two other networks in the sandbox.
    for network in ("203.0.113.0/24", "192.0.2.0/24"):
        SandboxJob.objects.create(user=researcher, grant=grant, variant=grant.variant, network=network)

    refused = client.get(link_path(link), REMOTE_ADDR="100.64.0.1")
    assert refused.status_code == 403 and "suspended" in refused.content.decode()
    bundle.refresh_from_db()
    assert "203.0.113.0/24" in bundle.suspended_reason and "192.0.2.0/24" in bundle.suspended_reason


def test_new_links_are_rate_limited_per_grant_with_a_clear_429(settings, grant, researcher, bearer_client):
    settings.DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY = 3
    api = bearer_client(researcher)
    url = f"/api/v1/grants/{grant.pk}/download-links"
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        assert [api.post(url).status_code for _ in range(3)] == [201, 201, 201]
        refused = api.post(url)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_bundles"
        assert "at most 3 times a day" in refused.json()["error"]["message"]
        assert 86_000 < int(refused["Retry-After"]) <= 86_401
        assert DownloadBundle.objects.filter(grant=grant).count() == 3
        # The current links still work and are shown.
        assert api.get(url).status_code == 200
        traveller.shift(dt.timedelta(hours=24, seconds=1))
        assert api.post(url).status_code == 201


def test_the_downloads_page_says_why_no_new_links_were_made(settings, grant, researcher, client, login_with_password):
    settings.DOWNLOAD_BUNDLES_PER_GRANT_PER_DAY = 1
    login_with_password(client, researcher)
    create = reverse("grant-downloads-create", args=[grant.pk])
    assert client.post(create, follow=True).status_code == 200
    second = client.post(create, follow=True)
    assert "at most 1 time a day" in second.content.decode()
    assert DownloadBundle.objects.filter(grant=grant).count() == 1
