"""Forms of the reviewers' pages. They check input; the services decide."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django_countries import countries

from access.catalog.models import ModelVariant
from access.grants.services import end_of_day_after, grant_end_day_check
from access.requests.models import AccessRequest, OrganizationType, RequestStatus, ScreeningFlagCode
from access.review.models import DecisionKind, RejectionTemplate
from portal.forms import FutureDateField, blank_choice
from portal.models import User

QUEUE_DEFAULT_LABEL = "Waiting for a reviewer"


class QueueFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=blank_choice(QUEUE_DEFAULT_LABEL, RequestStatus.choices))
    variant = forms.ChoiceField(required=False, label="Model")
    organization_type = forms.ChoiceField(
        required=False, label="Organization", choices=blank_choice("Any organization", OrganizationType.choices)
    )
    country = forms.ChoiceField(required=False, choices=blank_choice("Any country", list(countries)))
    flag = forms.ChoiceField(required=False, choices=blank_choice("Any or no flag", ScreeningFlagCode.choices))
    assignee = forms.CharField(
        required=False,
        max_length=254,
        help_text="“me”, “none”, or a reviewer's email",
        widget=forms.TextInput(attrs={"list": "reviewer-emails", "placeholder": "me, none or email"}),
    )
    replied = forms.ChoiceField(
        required=False, label="Applicant", choices=blank_choice("Replied or not", [("yes", "Replied to a question")])
    )

    def __init__(self, *args, variants=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["variant"].choices = blank_choice("Any model", [(v.slug, v.name) for v in variants])

    def clean_assignee(self):
        return self.cleaned_data["assignee"].strip().lower()

    def filters(self) -> dict[str, str]:
        """The valid, non-empty filters; an invalid one is shown as an error and ignored."""
        cleaned = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        return {name: value for name, value in cleaned.items() if value}


class _ReasonFromTemplateMixin:
    """Reject reasons come from a rejection template or are written; a written one wins."""

    def _reason_or_template(self, cleaned) -> str:
        reason = (cleaned.get("reason") or "").strip()
        template = cleaned.get("template")
        if not reason and template is not None:
            reason = template.text
        return reason


def _active_templates():
    return RejectionTemplate.objects.filter(is_active=True)


class _RequestIdsField(forms.ModelMultipleChoiceField):
    """Ids outside the database's integer range are invalid input, not a crash."""

    def _check_values(self, value):
        for pk in value:
            if not str(pk).isdigit() or int(pk) >= 2**63:
                raise ValidationError(f"“{str(pk)[:30]}” is not a request.", code="invalid_pk_value")
        return super()._check_values(value)


class BulkDecisionForm(_ReasonFromTemplateMixin, forms.Form):
    requests = _RequestIdsField(
        queryset=AccessRequest.objects.order_by("submitted_at", "id"),
        error_messages={"required": "Tick at least one request.", "invalid_pk_value": "“%(pk)s” is not a request."},
    )
    # No default: a reviewer who ticks requests must say what to do with them.
    decision = forms.ChoiceField(
        choices=blank_choice(
            "Choose…", [(DecisionKind.APPROVE, "Approve every requested model"), (DecisionKind.REJECT, "Reject")]
        ),
        error_messages={
            "required": "Choose a decision, approve or reject, for the ticked requests. Nothing was changed.",
            "invalid_choice": "Choose a decision, approve or reject, for the ticked requests. Nothing was changed.",
        },
    )
    template = forms.ModelChoiceField(queryset=_active_templates(), required=False, empty_label="Write a reason")
    reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=settings.REVIEW_TEXT_MAX_CHARS
    )
    query = forms.CharField(required=False)  # the queue's filters, to return to them

    def clean(self):
        cleaned = super().clean()
        cleaned["reason"] = self._reason_or_template(cleaned)
        if cleaned.get("decision") == DecisionKind.REJECT and not cleaned["reason"]:
            self.add_error("reason", "Give the reason for the rejection; every applicant will read it.")
        return cleaned


class NoteForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=settings.REVIEW_TEXT_MAX_CHARS,
        error_messages={"required": "Write the note first."},
    )


class ClaimForm(forms.Form):
    assignee = forms.EmailField(
        required=False,
        help_text="Leave empty to take it yourself.",
        widget=forms.EmailInput(attrs={"list": "reviewer-emails"}),
    )

    def clean_assignee(self):
        email = self.cleaned_data["assignee"]
        if not email:
            return None
        user = User.objects.filter(email__iexact=email, is_active=True).first()
        if user is None:
            raise ValidationError(f"No account has the email {email}.")
        return user


class DecisionForm(_ReasonFromTemplateMixin, forms.Form):
    """Approve (some or all pending models, optional end date), reject (reason), or ask
    for more information (message). The page shows one form per decision."""

    decision = forms.ChoiceField(choices=DecisionKind.choices, error_messages={"required": "Choose a decision."})
    variants = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="Models to approve")
    expires_on = FutureDateField(
        required=False, label="Access ends on", help_text="Optional; the grant expires after this day."
    )
    template = forms.ModelChoiceField(
        queryset=_active_templates(), required=False, empty_label="Write a reason", label="Reason template"
    )
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=settings.REVIEW_TEXT_MAX_CHARS,
        label="Reason",
    )
    message = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=settings.REVIEW_TEXT_MAX_CHARS,
        label="Message to the applicant",
    )

    def __init__(self, *args, pending_variants=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.pending = {variant.slug: variant for variant in pending_variants}
        self.fields["variants"].choices = [(v.slug, v.name) for v in pending_variants]
        self.fields["variants"].initial = list(self.pending)

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        return grant_end_day_check(day) if day else day

    def clean(self):
        cleaned = super().clean()
        decision = cleaned.get("decision")
        if decision == DecisionKind.APPROVE:
            if not cleaned.get("variants") and "variants" not in self.errors:
                self.add_error("variants", "Tick at least one model to approve, or reject the request instead.")
        elif decision == DecisionKind.REJECT:
            cleaned["reason"] = self._reason_or_template(cleaned)
            if not cleaned["reason"]:
                self.add_error("reason", "Pick a template or write the reason; the applicant will read it.")
        elif decision == DecisionKind.REQUEST_INFO:
            cleaned["message"] = (cleaned.get("message") or "").strip()
            if not cleaned["message"]:
                self.add_error("message", "Say what information you need; the applicant will read it.")
        return cleaned

    def selected_variants(self) -> list[ModelVariant]:
        return [self.pending[slug] for slug in self.cleaned_data.get("variants", [])]

    def expires_at(self) -> dt.datetime | None:
        day = self.cleaned_data.get("expires_on")
        return end_of_day_after(day) if day else None


class GrantActionForm(forms.Form):
    """Revoke, suspend or reinstate one of the applicant's grants from the request's page. A reason
    is required to revoke or suspend: the researcher reads it in the email they are sent."""

    reason = forms.CharField(required=False, max_length=settings.REVIEW_TEXT_MAX_CHARS)
    block_new_requests = forms.BooleanField(required=False)

    def __init__(self, *args, action: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.action = action

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason and self.action in ("revoke", "suspend"):
            verb = "revoked" if self.action == "revoke" else "suspended"
            raise ValidationError(f"Say why the access is {verb}; the researcher reads the reason in an email.")
        return reason
