"""Names that look alike are alike: duplicate detection compares names and affiliations after
NFKC, without zero-width or bidirectional control characters, case-folded; text-direction
overrides are refused wherever an applicant types a name, and names stored before that rule are
shown to reviewers without them.

Personas: a researcher who applied first, an alternate account that applies again under a
disguised spelling, a reviewer who reads the queue."""

from __future__ import annotations

import pytest

from access.requests.models import AccessRequest, ScreeningFlagCode
from access.review.services import access_request_request_info
from tests.factories import UserFactory

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "Ada \u202eecalevoL" shows as "Ada Lovelace"
ZERO_WIDTH_SPACE = "\u200b"


@pytest.mark.parametrize(
    ("spelled", "plain"),
    [
        ("Ａｄａ Ｌｏｖｅｌａｃｅ", "ada lovelace"),  # fullwidth letters
        (f"Ada Love{ZERO_WIDTH_SPACE}lace", "ada lovelace"),
        ("Ada\u2060 Lovelace\ufeff", "ada lovelace"),  # word joiner, byte order mark
        ("\u200fAda Lovelace\u200e", "ada lovelace"),  # right-to-left and left-to-right marks
        (f"Ada {RLO}Lovelace\u202c", "ada lovelace"),
        ("\u2066Ada\u2069 \u061cLovelace", "ada lovelace"),  # isolates, Arabic letter mark
        ("ADA   LOVELACE", "ada lovelace"),
        ("Universität Straße", "universität strasse"),  # ß case-folds to ss
        ("ﬁeld Institute", "field institute"),  # the ligature is two letters
    ],
)
def test_names_are_compared_in_one_normal_form(spelled, plain):
    from portal.validators import name_normalise  # here, so the other tests run on code without it

    assert name_normalise(spelled) == plain


@pytest.mark.parametrize(
    ("full_name", "affiliation"),
    [
        ("Ａｄａ Ｌｏｖｅｌａｃｅ", "University of Example"),
        (f"Ada Love{ZERO_WIDTH_SPACE}lace", f"University{ZERO_WIDTH_SPACE} of Example"),
        ("Ada Lovelace\u200f", "UNIVERSITY OF EXAMPLE"),
        ("ada lovelace", "Ｕｎｉｖｅｒｓｉｔｙ of Example\ufeff"),
    ],
)
def test_a_disguised_spelling_of_the_same_name_and_affiliation_is_a_possible_duplicate(
    researcher, llama_catalog, submit, full_name, affiliation
):
    first = submit(researcher)  # "Ada Lovelace", "University of Example"
    alternate = UserFactory(email="a.l@other.example.net")

    access_request = submit(alternate, full_name=full_name, affiliation=affiliation, ip=None)

    flag = access_request.flags.get()
    assert flag.code == ScreeningFlagCode.POSSIBLE_DUPLICATE
    assert first.reference in flag.reason and researcher.email in flag.reason


REFUSED_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # embeddings, overrides, isolates


@pytest.mark.parametrize("control", REFUSED_CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_the_api_refuses_every_text_direction_override_in_the_full_name(
    researcher_api, llama_catalog, application_body, assert_error, control
):
    body = application_body(full_name=f"Ada {control}ecalevoL")

    response = researcher_api.post("/api/v1/access-requests", body, format="json")

    error = assert_error(response, 400, "invalid")
    assert error["fields"]["full_name"] == [
        f"Remove the invisible text-direction control characters (U+{ord(control):04X}): they make a "
        "name display differently from what it says. Type or paste it again as plain text."
    ]
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize("field", ["affiliation", "position"])
def test_the_api_refuses_them_in_the_affiliation_and_position_too(
    researcher_api, llama_catalog, application_body, assert_error, field
):
    response = researcher_api.post(
        "/api/v1/access-requests", application_body(**{field: f"Lab {RLO}elpmaxE"}), format="json"
    )

    assert "U+202E" in assert_error(response, 400, "invalid")["fields"][field][0]
    assert not AccessRequest.objects.exists()


def test_the_api_refuses_them_in_an_edit_too(researcher_api, researcher, llama_catalog, submit, reviewer):
    access_request = submit(researcher)
    access_request_request_info(access_request=access_request, reviewer=reviewer, message="Which lab?")

    response = researcher_api.patch(
        f"/api/v1/access-requests/{access_request.pk}", {"affiliation": f"Lab {RLO}elpmaxE"}, format="json"
    )

    assert response.status_code == 400
    assert "affiliation" in response.json()["error"]["fields"]
    access_request.refresh_from_db()
    assert access_request.affiliation == "University of Example"


def test_only_overrides_are_refused_joiners_and_marks_of_real_names_are_kept(
    researcher_api, researcher, llama_catalog, application_body
):
    # A zero-width non-joiner belongs in Persian names, a right-to-left mark in mixed Hebrew text.
    persian_and_hebrew = "\u0645\u06cc\u200c\u0631\u0627 \u200f\u05d3\u05d5\u05d3"
    refused = researcher_api.post(
        "/api/v1/access-requests", application_body(full_name=f"{RLO}{persian_and_hebrew}"), format="json"
    )

    accepted = researcher_api.post(
        "/api/v1/access-requests", application_body(full_name=persian_and_hebrew), format="json"
    )

    assert refused.status_code == 400
    assert accepted.status_code == 201
    assert AccessRequest.objects.get(applicant=researcher).full_name == persian_and_hebrew


def test_the_apply_form_refuses_text_direction_overrides_in_names(researcher_client, license_v1, api_application):
    form = {
        **api_application,
        "full_name": f"Ada {RLO}ecalevoL",
        "publications": "\n".join(api_application["publications"]),
        "variants": ["llama-7b"],
        "license_id": license_v1.pk,
        "agree": "on",
    }

    response = researcher_client.post("/apply/", form)

    assert response.status_code == 400
    assert "text-direction control characters (U+202E)" in response.context["form"].errors["full_name"][0]
    assert not AccessRequest.objects.exists()


def test_review_pages_show_names_stored_before_the_rule_without_their_overrides(
    reviewer_client, researcher, llama_catalog, submit
):
    access_request = submit(researcher)
    # Stored before overrides were refused: the database holds them as they came.
    AccessRequest.objects.filter(pk=access_request.pk).update(
        full_name=f"Ada {RLO}ecalevoL", affiliation=f"\u2067University{RLO} of Example\u2069", position=f"{RLO}Fellow"
    )

    queue = reviewer_client.get("/review/").content.decode()
    detail = reviewer_client.get(f"/review/requests/{access_request.pk}/").content.decode()

    for page in (queue, detail):
        assert "Ada ecalevoL" in page
        assert "University of Example" in page
        assert not any(control in page for control in REFUSED_CONTROLS)
