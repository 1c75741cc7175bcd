"""The admin's view of access requests: listed and readable, never added, changed or deleted there."""

from __future__ import annotations

from access.requests.models import RequestStatus, ScreeningFlagCode


def test_the_admin_lists_requests_but_cannot_add_change_or_delete_them(
    admin_user_client, researcher, llama_catalog, submit
):
    access_request = submit(researcher, "llama-7b", country="IR")  # rejected by policy, with a flag
    change_url = f"/admin/access/accessrequest/{access_request.pk}/change/"

    listing = admin_user_client.get("/admin/access/accessrequest/")
    page = admin_user_client.get(change_url)
    posted = admin_user_client.post(change_url, {"status": "approved", "full_name": "Changed"})

    assert listing.status_code == 200
    assert access_request.reference in listing.content.decode()
    assert page.status_code == 200
    assert ScreeningFlagCode.EMBARGOED_COUNTRY.label in page.content.decode()
    assert posted.status_code == 403
    assert admin_user_client.get("/admin/access/accessrequest/add/").status_code == 403
    assert (
        admin_user_client.post(f"/admin/access/accessrequest/{access_request.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    access_request.refresh_from_db()
    assert (access_request.status, access_request.full_name) == (RequestStatus.REJECTED, "Ada Lovelace")


def test_a_researcher_cannot_open_the_request_admin(researcher_client, researcher, llama_catalog, submit):
    submit(researcher)

    response = researcher_client.get("/admin/access/accessrequest/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
