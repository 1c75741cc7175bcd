"""The sandbox pages' forms: the playground's fields (rendered here, sent by the page's script to
/v1/), the reviewers' choice of period, and their override of a user's quota."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

MODE_CHOICES = [("completion", "Completion"), ("chat", "Chat")]
PERIOD_CHOICES = [("1", "Last 24 hours"), ("7", "Last 7 days"), ("30", "Last 30 days")]
PLAYGROUND_MAX_TOKENS = 64  # the playground's starting value; the API's own default is 16


def _max_tokens_cap(variant) -> int:
    return variant.sandbox_max_tokens or settings.SANDBOX_MAX_TOKENS


class PlaygroundForm(forms.Form):
    """Never posted to the portal: the script reads these fields and sends an OpenAI request."""

    model = forms.ChoiceField(label="Model")
    mode = forms.ChoiceField(
        label="Mode", choices=MODE_CHOICES, initial="completion", widget=forms.RadioSelect,
        help_text="Chat wraps your message in the sandbox's chat template (see the API docs).",
    )  # fmt: skip
    prompt = forms.CharField(
        label="Prompt", widget=forms.Textarea(attrs={"rows": 6, "placeholder": "Once upon a time"})
    )
    max_tokens = forms.IntegerField(label="Max tokens", min_value=1, initial=PLAYGROUND_MAX_TOKENS)
    temperature = forms.FloatField(
        label="Temperature", min_value=0, max_value=2, initial=0.7,
        widget=forms.NumberInput(attrs={"step": "0.05"}), help_text="0 is greedy: the same text every time.",
    )  # fmt: skip
    top_p = forms.FloatField(
        label="Top-p", min_value=0.01, max_value=1, initial=1.0, widget=forms.NumberInput(attrs={"step": "0.05"})
    )
    stop = forms.CharField(
        label="Stop sequences",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "\\n\\n, ###"}),
        help_text="Separated by commas or new lines; \\n stands for a line break.",
    )

    def __init__(self, *args, variants, selected=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["prompt"].widget.attrs["maxlength"] = settings.SANDBOX_MAX_PROMPT_CHARS
        self.variants = variants
        self.fields["model"].choices = [(variant.slug, variant.name) for variant in variants]
        chosen = next((v for v in variants if v.slug == selected), variants[0] if variants else None)
        if chosen is not None:
            self.initial["model"] = chosen.slug
            cap = _max_tokens_cap(chosen)
            self.fields["max_tokens"].max_value = cap
            self.fields["max_tokens"].widget.attrs["max"] = cap
            self.initial["max_tokens"] = min(PLAYGROUND_MAX_TOKENS, cap)
        self.chosen = chosen

    def model_options(self) -> list[dict]:
        """Each model with the most tokens it generates (the script bounds max tokens with it) and
        the most prompt tokens it reads (the evaluation snippet's max_length)."""
        return [
            {"slug": v.slug, "name": v.name, "max_tokens": _max_tokens_cap(v), "selected": v == self.chosen,
             "prompt_tokens": v.sandbox_max_prompt_tokens or settings.SANDBOX_MAX_PROMPT_TOKENS}
            for v in self.variants
        ]  # fmt: skip


class UsagePeriodForm(forms.Form):
    days = forms.TypedChoiceField(label="Period", choices=PERIOD_CHOICES, coerce=int, initial="7", required=False)

    def days_or_default(self) -> int:
        if self.is_valid() and self.cleaned_data["days"]:
            return self.cleaned_data["days"]
        return int(self.fields["days"].initial)


class SandboxQuotaForm(forms.Form):
    """A reviewer's override of one user's limits; every field blank removes the override."""

    concurrent_requests = forms.IntegerField(label="Requests at a time", required=False, min_value=0)
    requests_per_minute = forms.IntegerField(label="Requests per minute", required=False, min_value=0)
    tokens_per_day = forms.IntegerField(label="Tokens per day", required=False, min_value=0)
    note = forms.CharField(
        label="Why",
        required=False,
        max_length=settings.REVIEW_TEXT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept with the override and in the audit log. Needed when you set a limit.",
    )

    LIMITS = ("concurrent_requests", "requests_per_minute", "tokens_per_day")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        defaults = {
            "concurrent_requests": (settings.SANDBOX_CONCURRENT_REQUESTS, "at a time"),
            "requests_per_minute": (settings.SANDBOX_REQUESTS_PER_MINUTE, "a minute"),
            "tokens_per_day": (settings.SANDBOX_TOKENS_PER_DAY, "a day (UTC)"),
        }
        for field, (default, unit) in defaults.items():
            self.fields[field].widget.attrs["placeholder"] = str(default)
            self.fields[field].help_text = f"Blank: the default, {default:,} {unit}. 0 shuts this user out."

    @classmethod
    def for_quota(cls, quota, **kwargs) -> SandboxQuotaForm:
        """The form filled with the user's current override (``quota`` may be None: no override)."""
        initial = {field: getattr(quota, field) for field in cls.LIMITS} if quota else {}
        if quota:
            initial["note"] = quota.note
        return cls(initial=initial, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if any(cleaned.get(field) is not None for field in self.LIMITS) and not cleaned.get("note", "").strip():
            self.add_error("note", ValidationError("Say why this user's limits differ from the defaults."))
        return cleaned

    def quota_kwargs(self) -> dict:
        return {field: self.cleaned_data[field] for field in self.LIMITS} | {"note": self.cleaned_data["note"].strip()}
