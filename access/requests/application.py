"""The application's fields and the rules they must meet (lengths, links), shared by the web
form, the API and the edit flow, so both answer alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from access.requests.models import AccessRequest
from portal.validators import text_length_check

EDITABLE_FIELDS = ("full_name", "affiliation", "organization_type", "position", "country", "use_case", "publications")


@dataclass
class ApplicationData:
    """What the applicant fills in; the same for the web form and the API."""

    full_name: str
    affiliation: str
    organization_type: str
    position: str
    country: str
    use_case: str
    publications: list[str]


def _publications_clean(publications: list[str]) -> list[str]:
    validate = URLValidator(schemes=["http", "https"])
    cleaned, errors = [], []
    for raw in publications:
        url = (raw or "").strip()
        if not url:
            continue
        try:
            validate(url)
        except ValidationError:
            errors.append(f"“{url[:100]}” is not a web address; give links that start with https://.")
        else:
            cleaned.append(url)
    if len(cleaned) > settings.REQUEST_PUBLICATIONS_MAX:
        errors.append(f"Give at most {settings.REQUEST_PUBLICATIONS_MAX} links.")
    if errors:
        raise ValidationError({"publications": errors})
    return cleaned


def _one_line(text: str) -> str:
    # Names end up in email subjects and CSV rows: no line breaks, single spaces.
    return " ".join((text or "").split())


def application_apply(access_request: AccessRequest, data: ApplicationData) -> None:
    access_request.full_name = _one_line(data.full_name)
    access_request.affiliation = _one_line(data.affiliation)
    access_request.organization_type = data.organization_type
    access_request.position = _one_line(data.position)
    text_length_check(field="use_case", text=data.use_case, limit=settings.REQUEST_USE_CASE_MAX_CHARS)
    access_request.country = (data.country or "").upper()
    access_request.use_case = data.use_case.strip()
    access_request.publications = _publications_clean(data.publications or [])
    if len(access_request.use_case) < settings.REQUEST_USE_CASE_MIN_CHARS:
        raise ValidationError(
            {
                "use_case": [
                    f"Describe your research in at least {settings.REQUEST_USE_CASE_MIN_CHARS} characters "
                    f"(you wrote {len(access_request.use_case)}): what you will study, and why it needs the weights."
                ]
            }
        )
