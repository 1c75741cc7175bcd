"""The application's errors come in one round, the use case's minimum with the rest, on the web
form (with a summary linking to each field, and aria-invalid on each field in error) and in the
API (issue 15, item 5)."""

from __future__ import annotations

import pytest

from access.requests.models import AccessRequest
from tests.access.conftest import USE_CASE


@pytest.fixture
def form_data(license_v1):
    return {
        "variants": ["llama-7b"],
        "full_name": "Ada Lovelace",
        "affiliation": "University of Example",
        "organization_type": "academic",
        "position": "Research fellow",
        "country": "FR",
        "use_case": USE_CASE,
        "publications": "https://scholar.example.org/ada",
        "license_id": license_v1.pk,
        "agree": "on",
    }


def test_every_field_in_error_is_reported_in_one_round_with_the_use_case_minimum(
    researcher_client, form_data, settings
):
    settings.REQUEST_USE_CASE_MIN_CHARS = 150
    form_data.update(full_name="", country="", use_case="Too short.", publications="not a link", agree="")
    del form_data["variants"]

    response = researcher_client.post("/apply/", form_data)

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"variants", "full_name", "country", "use_case", "publications", "agree"}
    assert errors["use_case"] == [
        "Describe your research in at least 150 characters (you wrote 10): what you will study, "
        "and why it needs the weights."
    ]
    page = response.content.decode()
    summary = page.split('id="error-summary"')[1].split("</div>")[0]
    for field in ("variants", "full_name", "country", "use_case", "publications", "agree"):
        assert f'href="#id_{field}"' in summary
    assert 'role="alert" tabindex="-1"' in page
    assert 'name="use_case" cols="40" rows="8" minlength="150" data-min-chars="150"' in page
    for field in ("full_name", "use_case", "publications"):
        assert f'aria-invalid="true" aria-describedby="id_{field}_helptext id_{field}_error" id="id_{field}"' in page
        assert f'<ul class="errorlist" id="id_{field}_error">' in page
    assert 'aria-invalid="true" aria-describedby="id_variants_error"' in page
    assert 'id="id_agree" aria-invalid="true" aria-describedby="id_agree_error"' in page
    assert not AccessRequest.objects.exists()


def test_the_use_case_minimum_and_an_open_request_are_reported_together(
    researcher, researcher_client, form_data, submit
):
    submit(researcher, "llama-7b")
    form_data.update(use_case="Short.")

    errors = researcher_client.post("/apply/", form_data).context["form"].errors

    assert set(errors) == {"variants", "use_case"}
    assert "You already have an open request" in errors["variants"][0]


def test_a_use_case_of_exactly_the_minimum_counts_a_line_break_as_one_character(
    researcher_client, form_data, settings
):
    settings.REQUEST_USE_CASE_MIN_CHARS = 150
    # 149 letters and one line break, as a browser sends it (CRLF), which the counter counts as one.
    form_data["use_case"] = "a" * 100 + "\r\n" + "b" * 49

    response = researcher_client.post("/apply/", form_data)

    assert response.status_code == 302
    access_request = AccessRequest.objects.get()
    assert len(access_request.use_case) == 150
    assert not access_request.flags.exists()  # accepted by the form, so never flagged short


def test_the_api_reports_the_use_case_minimum_with_the_other_fields(
    researcher_api, llama_catalog, application_body, assert_error
):
    body = application_body(use_case="Short.", publications=["not a link"], organization_type="pirate")

    error = assert_error(researcher_api.post("/api/v1/access-requests", body, format="json"), 400)

    assert set(error["fields"]) == {"use_case", "publications", "organization_type"}
    assert "at least" in error["fields"]["use_case"][0]
    assert "is not a web address" in error["fields"]["publications"][0]
