"""The reviewers' lookups: one request if the reviewer may open it, with its whole file."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from access.review.selectors import access_request_get_for_reviewer, review_request_file
from access.review.services import access_request_note_add


def test_a_reviewer_opens_anyone_elses_request(reviewer, pending):
    assert access_request_get_for_reviewer(reviewer, pending.pk) == pending


def test_a_reviewer_never_opens_their_own_request(reviewer, llama_catalog, submit):
    own = submit(reviewer)

    with pytest.raises(PermissionDenied, match="your own request"):
        access_request_get_for_reviewer(reviewer, own.pk)
    with pytest.raises(PermissionDenied, match="your own request"):
        review_request_file(reviewer, own.pk)


def test_a_missing_request_answers_with_the_callers_message(reviewer, db):
    with pytest.raises(Http404, match="GET /api/v1/review/requests lists the queue"):
        access_request_get_for_reviewer(reviewer, 999_999, missing="GET /api/v1/review/requests lists the queue.")


def test_the_file_is_read_in_a_fixed_number_of_queries(
    reviewer, second_reviewer, pending, django_assert_max_num_queries
):
    for author in (reviewer, second_reviewer):
        access_request_note_add(access_request=pending, author=author, text="Checked the lab's page.")

    with django_assert_max_num_queries(7):
        access_request = review_request_file(reviewer, pending.pk)
        notes = [(note.author.email, note.text) for note in access_request.notes.all()]
        variants = [rv.variant.slug for rv in access_request.requested_variants.all()]
        flags = list(access_request.flags.all())

    assert len(notes) == 2 and sorted(variants) == ["llama-13b", "llama-7b"] and flags == []
    assert access_request.approvals_still_needed == 1
