"""Reads about grants (``access.grants.selectors``): the reviewers' grant list and its email filter
(``grants_for_review``), and the first line of every view that takes a grant id: the holder's own
grant or 404 (``grant_get_for_holder``), a grant for a reviewer who manages grants or 403/404
(``grant_get_for_manager``)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.http import Http404

from access.grants.models import GrantStatus
from access.grants.selectors import grant_get_for_holder, grant_get_for_manager, grants_for_review
from tests.factories import UserFactory

# --- grants_for_review: the email filter ----------------------------------------------------------


def test_the_email_filter_matches_a_whole_address_exactly_and_part_of_one_as_a_substring(
    grants_by_holder, email_filter_case
):
    query, holders = email_filter_case

    found = set(grants_for_review(email=query).values_list("user__email", flat=True))

    assert found == holders, query


def test_without_an_email_every_grant_is_listed_newest_first(grants_by_holder):
    assert list(grants_for_review(email="").values_list("pk", flat=True)) == sorted(
        grants_by_holder.values(), reverse=True
    )
    assert list(grants_for_review(email="   ").values_list("pk", flat=True)) == sorted(
        grants_by_holder.values(), reverse=True
    )


# --- grant_get_for_holder: one's own grant, or 404 ------------------------------------------------


def test_the_holder_gets_their_grant_with_its_effective_status(researcher, live_grant):
    grant = grant_get_for_holder(researcher, live_grant.pk)

    assert grant == live_grant
    assert grant.effective_status == GrantStatus.LICENSE_REQUIRED


def test_another_users_grant_is_as_absent_as_a_missing_one(outsider, live_grant):
    with pytest.raises(Http404) as someone_elses:
        grant_get_for_holder(outsider, live_grant.pk)
    with pytest.raises(Http404) as missing:
        grant_get_for_holder(outsider, 999_999)

    assert str(someone_elses.value) == str(missing.value) == "No such grant."


def test_a_views_own_message_for_a_missing_grant_is_given_for_someone_elses_too(outsider, live_grant):
    with pytest.raises(Http404) as someone_elses:
        grant_get_for_holder(outsider, live_grant.pk, missing="No such download page.")
    with pytest.raises(Http404) as missing:
        grant_get_for_holder(outsider, 999_999, missing="No such download page.")

    assert str(someone_elses.value) == str(missing.value) == "No such download page."


# --- grant_get_for_manager: reviewers who manage grants, or 403 -----------------------------------


def test_a_reviewer_who_manages_grants_gets_any_grant_with_its_effective_status(reviewer, live_grant):
    grant = grant_get_for_manager(reviewer, live_grant.pk)

    assert grant == live_grant
    assert grant.effective_status == GrantStatus.LICENSE_REQUIRED


def test_a_user_who_cannot_manage_grants_is_refused_even_their_own_grant(researcher, live_grant):
    with pytest.raises(PermissionDenied):
        grant_get_for_manager(researcher, live_grant.pk)
    with pytest.raises(PermissionDenied):
        grant_get_for_manager(researcher, 999_999)  # 403 before anything is looked up


def test_the_review_permission_alone_does_not_manage_grants(live_grant):
    user = UserFactory(email="direct.perm@lab.example.org")
    user.user_permissions.add(Permission.objects.get(codename="review_access"))

    with pytest.raises(PermissionDenied):
        grant_get_for_manager(user, live_grant.pk)


def test_a_missing_grant_is_404_for_a_manager(reviewer, db):
    with pytest.raises(Http404) as missing:
        grant_get_for_manager(reviewer, 999_999)

    assert str(missing.value) == "No such grant."
