"""Creating download bundles: who may, when, and what the links allow."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.distribution.bundles import bundle_create, bundle_files
from access.distribution.models import DownloadBundle
from access.distribution.tokens import bundle_from_token, bundle_token, link_from_token, link_token
from access.grants.services import grant_create, grant_suspend
from portal.errors import StateConflict


def test_bundle_has_one_link_per_published_file_with_the_configured_limits(settings, grant, researcher):
    settings.DOWNLOAD_LINK_TTL_HOURS = 24
    settings.DOWNLOAD_LINK_MAX_DOWNLOADS = 5
    before = timezone.now()
    bundle = bundle_create(grant=grant, user=researcher)
    files = bundle_files(bundle)
    assert [entry["name"] for entry in files] == sorted(grant.variant.weight_files.values_list("name", flat=True))
    assert {entry["downloads_left"] for entry in files} == {5}
    assert all(entry["url"].startswith("http://") and "/dl/" in entry["url"] for entry in files)
    assert dt.timedelta(hours=24) <= bundle.expires_at - before < dt.timedelta(hours=24, seconds=5)
    event = AuditEvent.objects.get(action="download.bundle_created")
    assert (event.actor, event.details["files"]) == (researcher, len(files))


def test_new_bundle_retires_the_previous_one(grant, researcher):
    first = bundle_create(grant=grant, user=researcher)
    second = bundle_create(grant=grant, user=researcher)
    first.refresh_from_db()
    assert first.retired_at is not None and second.retired_at is None
    assert DownloadBundle.objects.filter(grant=grant, retired_at__isnull=True).get() == second


def test_only_the_grant_holder_can_create_links(grant, outsider):
    with pytest.raises(PermissionDenied):
        bundle_create(grant=grant, user=outsider)
    assert not DownloadBundle.objects.exists()


def test_grant_waiting_for_the_license_gets_no_links_and_is_told_to_accept_it(
    published_demo_weights, researcher, reviewer
):
    grant = grant_create(user=researcher, variant=published_demo_weights[0], actor=reviewer, reason="Collaborator.")
    with pytest.raises(StateConflict) as conflict:
        bundle_create(grant=grant, user=researcher)
    assert conflict.value.code == "grant_not_usable"
    assert "Accept the" in conflict.value.message and "/grants/" in conflict.value.message


def test_suspended_grant_gets_no_links(grant, researcher, reviewer):
    grant_suspend(grant=grant, actor=reviewer, reason="Under investigation.")
    with pytest.raises(StateConflict, match="suspended"):
        bundle_create(grant=grant, user=researcher)


def test_variant_without_published_files_gets_no_links(llama_catalog, researcher, reviewer, active_grant_make):
    grant = active_grant_make(user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), reviewer=reviewer)
    with pytest.raises(StateConflict) as conflict:
        bundle_create(grant=grant, user=researcher)
    assert conflict.value.code == "nothing_published"


def test_tokens_round_trip_and_link_and_bundle_tokens_are_not_interchangeable(grant, researcher):
    bundle = bundle_create(grant=grant, user=researcher)
    link = bundle.links.first()
    assert link_from_token(link_token(link)) == link
    assert bundle_from_token(bundle_token(bundle)) == bundle
    assert link_from_token(bundle_token(bundle)) is None
    assert bundle_from_token(link_token(link)) is None
    # The random id alone, or signed with another key, is not a token.
    assert link_from_token(link.public_id) is None
    forged = signing.Signer(key="not-the-site-key", salt="access.downloads.link", sep=".").sign(link.public_id)
    assert link_from_token(forged) is None


def test_bad_signature_is_refused_without_a_query(django_assert_num_queries, db):
    with django_assert_num_queries(0):
        assert link_from_token("abc.def") is None
        assert bundle_from_token("garbage") is None
