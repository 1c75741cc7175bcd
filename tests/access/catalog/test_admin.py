"""The variant admin: where the review policies of a variant (the embargo rule, the allow-listed email
domains) are edited, checked and audited."""

from __future__ import annotations

import pytest

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant


def _variant_form(variant: ModelVariant, **overrides) -> dict:
    form = {
        "family": variant.family_id,
        "slug": variant.slug,
        "name": variant.name,
        "parameters": variant.parameters,
        "training_tokens": variant.training_tokens,
        "model_card": variant.model_card,
        "sandbox": "on" if variant.sandbox else None,
        "fingerprint": "on" if variant.fingerprint else None,
        "is_listed": "on",
        "position": variant.position,
        "approvals_required": variant.approvals_required,
        "auto_approve_email_domains": "[]",
        "auto_reject_embargoed": "on",
    }
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def test_the_variant_admin_shows_and_saves_the_review_policies(admin_user_client, llama_catalog):
    variant = ModelVariant.objects.get(slug="llama-7b")
    url = f"/admin/access/modelvariant/{variant.pk}/change/"

    page = admin_user_client.get(url).content.decode()
    response = admin_user_client.post(
        url,
        _variant_form(
            variant, auto_approve_email_domains='["@Uni.Example.EDU", "lab.example.org"]', auto_reject_embargoed=None
        ),
    )

    assert 'name="auto_approve_email_domains"' in page
    assert 'name="auto_reject_embargoed"' in page
    assert "Review policy" in page
    assert response.status_code == 302, response.content.decode()[:2000]
    variant.refresh_from_db()
    assert variant.auto_approve_email_domains == ["uni.example.edu", "lab.example.org"]
    assert variant.auto_reject_embargoed is False
    event = AuditEvent.objects.filter(action="catalog.variant.changed").get()
    assert {"auto_approve_email_domains", "auto_reject_embargoed"} <= set(event.details["fields"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"uni.example.edu"', "Give a list of domains"),
        ('["not a domain"]', "is not an email domain"),
        ('["uni"]', "is not an email domain"),
    ],
)
def test_the_variant_admin_refuses_allow_lists_the_policy_cannot_use(admin_user_client, llama_catalog, value, message):
    variant = ModelVariant.objects.get(slug="llama-7b")

    response = admin_user_client.post(
        f"/admin/access/modelvariant/{variant.pk}/change/", _variant_form(variant, auto_approve_email_domains=value)
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    variant.refresh_from_db()
    assert variant.auto_approve_email_domains == []


def test_the_variant_admin_refuses_an_allow_list_on_a_two_person_variant(admin_user_client, llama_catalog):
    variant = ModelVariant.objects.get(slug="llama-65b")

    response = admin_user_client.post(
        f"/admin/access/modelvariant/{variant.pk}/change/",
        _variant_form(variant, auto_approve_email_domains='["uni.example.edu"]'),
    )

    assert response.status_code == 200
    assert "never applies to a model that needs two approvals" in response.content.decode()
    variant.refresh_from_db()
    assert variant.auto_approve_email_domains == []


def test_an_admin_turns_fingerprints_off_for_a_variant_and_it_is_audited(admin_user_client, llama_catalog):
    variant = ModelVariant.objects.get(slug="llama-7b")
    assert variant.fingerprint  # on by default
    url = f"/admin/access/modelvariant/{variant.pk}/change/"
    page = admin_user_client.get(url).content.decode()
    assert 'name="fingerprint"' in page and "own marked copy" in page

    response = admin_user_client.post(url, _variant_form(variant, fingerprint=None))

    assert response.status_code == 302, response.content.decode()[:2000]
    variant.refresh_from_db()
    assert variant.fingerprint is False
    event = AuditEvent.objects.filter(action="catalog.variant.changed").get()
    assert "fingerprint" in event.details["fields"]
