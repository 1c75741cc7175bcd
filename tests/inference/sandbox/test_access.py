"""Who may use a model in the sandbox: exactly while the download gateway would serve them."""

from __future__ import annotations

import pytest

from access.catalog.models import ModelVariant
from access.catalog.services import license_publish
from access.distribution.bundles import bundle_create, bundle_suspend, bundle_unsuspend
from access.distribution.models import WeightFile
from access.grants.services import grant_create, grant_revoke, grant_suspend
from inference.sandbox.selectors import sandbox_refusal, sandbox_variants_for_user


def _slugs(user) -> list[str]:
    return [variant.slug for variant in sandbox_variants_for_user(user)]


def test_an_active_grant_opens_the_sandbox_for_its_model_only(researcher, sandbox_grant):
    assert _slugs(researcher) == ["llama-7b"]
    assert sandbox_refusal(researcher, "llama-7b") == (sandbox_grant.variant, None)


def test_nobody_without_a_grant_or_not_logged_in_gets_a_model(outsider, sandbox_grant, django_user_model):
    from django.contrib.auth.models import AnonymousUser

    assert _slugs(outsider) == [] and _slugs(AnonymousUser()) == []
    _, refusal = sandbox_refusal(outsider, "llama-7b")
    assert (refusal.status, refusal.code) == (403, "model_access_denied") and "Apply" in refusal.message


def test_a_model_not_offered_in_the_sandbox_is_not_found(researcher, reviewer, llama_catalog, active_grant_make):
    active_grant_make(user=researcher, variant=ModelVariant.objects.get(slug="llama-13b"), reviewer=reviewer)

    assert ModelVariant.objects.get(slug="llama-13b").sandbox is False
    assert _slugs(researcher) == []
    for slug in ("llama-13b", "no-such-model"):
        _, refusal = sandbox_refusal(researcher, slug)
        assert (refusal.status, refusal.code) == (404, "model_not_found")


def test_a_grant_waiting_for_the_license_does_not_open_it(researcher, reviewer, llama_catalog):
    grant_create(user=researcher, variant=ModelVariant.objects.get(slug="llama-7b"), actor=reviewer, reason="Co.")

    _, refusal = sandbox_refusal(researcher, "llama-7b")

    assert _slugs(researcher) == [] and refusal.status == 403 and "license" in refusal.message


def test_a_new_license_version_closes_it_until_accepted(researcher, reviewer, sandbox_grant):
    license_publish(family=sandbox_grant.variant.family, version="2.0", title="LLaMA License", text="New terms.",
                    actor=reviewer)  # fmt: skip

    assert _slugs(researcher) == []


@pytest.mark.parametrize("end", ["suspend", "revoke"])
def test_suspension_and_revocation_close_it_at_once(researcher, reviewer, sandbox_grant, end):
    if end == "suspend":
        grant_suspend(grant=sandbox_grant, actor=reviewer, reason="Checking.")
    else:
        grant_revoke(grant=sandbox_grant, actor=reviewer, reason="Shared the weights.")

    _, refusal = sandbox_refusal(researcher, "llama-7b")

    assert _slugs(researcher) == [] and refusal.status == 403


def test_links_suspended_by_the_leak_rule_close_it_until_a_reviewer_lifts_the_suspension(
    researcher, reviewer, sandbox_grant
):
    WeightFile.objects.create(
        variant=sandbox_grant.variant, name="params.json", size=2, sha256="0" * 64, md5="0" * 32, storage_key="k"
    )
    bundle = bundle_create(grant=sandbox_grant, user=researcher)
    bundle_suspend(bundle=bundle, reason="Leak rule: 4 networks.", networks=["10.0.1.0/24"])

    _, refusal = sandbox_refusal(researcher, "llama-7b")
    assert _slugs(researcher) == [] and "unusually many places" in refusal.message

    bundle_unsuspend(bundle=bundle, actor=reviewer, reason="One lab, three sites.")
    assert _slugs(researcher) == ["llama-7b"]
