"""Web forms of the applicant's pages. They parse what the browser sends and
hand it to the services; every rule (use-case length, valid links, one open
request per model, the license in force) is the services', whose
ValidationError dicts are mapped back onto the form's fields."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django_countries.fields import CountryField

from access.catalog.models import LicenseVersion
from access.requests.application import ApplicationData, publications_clean, use_case_errors
from access.requests.models import AccessRequest, OrganizationType
from access.requests.services import access_request_resubmit, access_request_submit, access_request_variants_check
from portal.forms import RowIdField, ServiceErrorsMixin
from portal.validators import name_bidi_refuse


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class ApplicationForm(ServiceErrorsMixin, forms.Form):
    """The applicant's details: the same fields when applying and when editing."""

    full_name = forms.CharField(
        label="Full legal name",
        max_length=200,
        help_text="As in your passport or on your institution's records.",
        validators=[name_bidi_refuse],
    )
    affiliation = forms.CharField(
        max_length=300,
        help_text="The university, institute or organization you do this research with.",
        validators=[name_bidi_refuse],
    )
    organization_type = forms.ChoiceField(
        label="Organization type", choices=[("", "Choose one")] + list(OrganizationType.choices)
    )
    position = forms.CharField(
        max_length=200,
        help_text="For example: PhD student, professor, research scientist.",
        validators=[name_bidi_refuse],
    )
    country = CountryField(blank_label="Choose a country").formfield(
        help_text="Where you do the research.", required=True
    )
    use_case = forms.CharField(
        label="Research use case",
        widget=forms.Textarea(attrs={"rows": 8}),
        # The length rule itself is the service's; the browser only gets a hint.
    )
    publications = forms.CharField(
        label="Publications or profile links",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "https://scholar.example.org/your-profile"}),
        help_text="One link per line: papers, a Google Scholar or ORCID profile, a lab page. Optional.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        minimum = settings.REQUEST_USE_CASE_MIN_CHARS
        self.fields["use_case"].help_text = (
            f"At least {minimum} characters: what you will study, why it needs the weights, "
            "and how you will publish the results."
        )
        self.fields["use_case"].widget.attrs.update(
            {"minlength": minimum, "data-min-chars": minimum, "data-max-chars": settings.REQUEST_USE_CASE_MAX_CHARS}
        )
        self.use_case_min_chars = minimum

    # The services' own rules, asked here too so that every field's error shows in one round.
    def clean_use_case(self):
        use_case = self.cleaned_data["use_case"]
        if errors := use_case_errors(use_case):
            raise ValidationError(errors)
        return use_case

    def clean_publications(self):
        publications = self.cleaned_data["publications"]
        _, errors = publications_clean(_lines(publications))
        if errors:
            raise ValidationError(errors)
        return publications

    @staticmethod
    def initial_from(access_request: AccessRequest | None) -> dict:
        """The application fields of an earlier request, to fill the form with."""
        if access_request is None:
            return {}
        return {
            "full_name": access_request.full_name,
            "affiliation": access_request.affiliation,
            "organization_type": access_request.organization_type,
            "position": access_request.position,
            "country": access_request.country.code,
            "use_case": access_request.use_case,
            "publications": "\n".join(access_request.publications),
        }

    def application_data(self) -> ApplicationData:
        data = self.cleaned_data
        return ApplicationData(
            full_name=data["full_name"],
            affiliation=data["affiliation"],
            organization_type=data["organization_type"],
            position=data["position"],
            country=data["country"],
            use_case=data["use_case"],
            publications=_lines(data["publications"]),
        )


class AccessRequestForm(ApplicationForm):
    variants = forms.ModelMultipleChoiceField(
        label="Models",
        queryset=None,
        to_field_name="slug",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one model."},
    )
    license_id = RowIdField(
        queryset=LicenseVersion.objects.select_related("family"),
        missing="Reload the page and read the license shown there.",
    )
    agree = forms.BooleanField(
        label="I have read the license shown above and agree to its terms.",
        error_messages={"required": "Tick the box to agree to the license; access is given only under its terms."},
    )

    def __init__(self, *args, variants, applicant=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variants"].queryset = variants
        self.applicant = applicant

    def clean(self):
        cleaned = super().clean()
        variants, license_version = cleaned.get("variants"), cleaned.get("license_id")
        if self.applicant is not None and variants and license_version is not None:
            try:
                access_request_variants_check(
                    applicant=self.applicant, variants=list(variants), license_version=license_version
                )
            except ValidationError as exc:
                self.service_errors_add(exc)
        return cleaned

    def submit(self, *, applicant, request) -> AccessRequest | None:
        """Submit through the service; None (with the errors on the form) if it refused."""
        try:
            return access_request_submit(
                applicant=applicant,
                variants=list(self.cleaned_data["variants"]),
                data=self.application_data(),
                license_version=self.cleaned_data["license_id"],
                request=request,
            )
        except ValidationError as exc:
            self.service_errors_add(exc)
            return None


class RequestEditForm(ApplicationForm):
    reply = forms.CharField(
        label="Your reply to the reviewers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Optional: answer their question or say what you changed.",
    )

    def resubmit(self, *, access_request: AccessRequest, applicant, request) -> AccessRequest | None:
        """Save the edits and resubmit in one transaction: either both happen or neither.
        A StateConflict (the request is no longer waiting for information) propagates."""
        try:
            return access_request_resubmit(
                access_request=access_request,
                applicant=applicant,
                data=self.application_data(),
                message=self.cleaned_data["reply"],
                request=request,
            )
        except ValidationError as exc:
            self.service_errors_add(exc)
            return None


class WithdrawForm(forms.Form):
    confirm = forms.BooleanField(error_messages={"required": "Confirm that you want to withdraw the request."})
