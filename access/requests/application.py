"""The application's fields and the rules they must meet (lengths, links), shared by the web
form, the API and the edit flow, so both answer alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from access.requests.models import AccessRequest

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


def use_case_normalise(text: str) -> str:
    # Browsers send line breaks as CRLF but count them as one character, as the page's counter does.
    return (text or "").replace("\r\n", "\n").strip()


def use_case_errors(text: str) -> list[str]:
    """What is wrong with a use case's length (REQUEST_USE_CASE_MIN_CHARS to ..._MAX_CHARS), if
    anything. The form, the API and the services all ask this one function."""
    use_case = use_case_normalise(text)
    minimum, maximum = settings.REQUEST_USE_CASE_MIN_CHARS, settings.REQUEST_USE_CASE_MAX_CHARS
    if len(use_case) < minimum:
        return [
            f"Describe your research in at least {minimum} characters (you wrote {len(use_case)}): "
            "what you will study, and why it needs the weights."
        ]
    if len(use_case) > maximum:
        return [f"Keep this under {maximum:,} characters (it has {len(use_case):,})."]
    return []


def publications_clean(publications: list[str]) -> tuple[list[str], list[str]]:
    """The links given, stripped and checked: (cleaned links, error messages)."""
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
    return cleaned, errors


def _one_line(text: str) -> str:
    # Names end up in email subjects and CSV rows: no line breaks, single spaces.
    return " ".join((text or "").split())


def application_apply(access_request: AccessRequest, data: ApplicationData) -> None:
    """Copy the application onto the request, or raise one ValidationError with every field's
    problems at once (the use case's length and the links together), never one after another."""
    errors: dict[str, list[str]] = {}
    access_request.full_name = _one_line(data.full_name)
    access_request.affiliation = _one_line(data.affiliation)
    access_request.organization_type = data.organization_type
    access_request.position = _one_line(data.position)
    access_request.country = (data.country or "").upper()
    if use_case_problems := use_case_errors(data.use_case):
        errors["use_case"] = use_case_problems
    access_request.use_case = use_case_normalise(data.use_case)
    access_request.publications, link_problems = publications_clean(data.publications or [])
    if link_problems:
        errors["publications"] = link_problems
    if errors:
        raise ValidationError(errors)
