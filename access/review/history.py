"""A request's history as reviewers read it: each audit event of the request and of its grants as
one sentence ("Approved LLaMA 7B by ann@example.org") with its details as short labelled lines,
never raw action codes or Python values. One mapping from action to sentence; an action it does
not know yet still reads as words."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.core.exceptions import FieldDoesNotExist

from access.audit.models import AuditEvent
from access.catalog.models import ModelVariant
from access.requests.models import AccessRequest, ScreeningFlagCode
from access.requests.selectors import request_audit_events

SYSTEM_ACTORS = {"", "system"}
POLICY_LABELS = {
    "allow_listed_domain_approve": "the allow-listed email domain rule",
    "embargoed_country_reject": "the embargo rule",
}


@dataclass
class HistoryEntry:
    at: object
    action: str
    sentence: str
    lines: list[str] = field(default_factory=list)


class _Names:
    """Model names by slug and flag labels by code, for the sentences."""

    def __init__(self, events: Iterable[AuditEvent]):
        # Any short word in the details may be a model's slug: one query finds those that are.
        slugs: set[str] = set()
        for event in events:
            details = event.details if isinstance(event.details, dict) else {}
            for value in details.values():
                words = value if isinstance(value, list) else [value]
                slugs.update(word for word in words if isinstance(word, str) and len(word) <= 100)
        self.variants = dict(ModelVariant.objects.filter(slug__in=slugs).values_list("slug", "name"))
        self.flags = dict(ScreeningFlagCode.choices)

    def models(self, slugs) -> str:
        if isinstance(slugs, str):
            slugs = [slugs]
        return ", ".join(self.variants.get(slug, str(slug)) for slug in slugs or []) or "no model"

    def named(self, value):
        """The value with the models' slugs in it as their names."""
        if isinstance(value, str):
            return self.variants.get(value, value)
        if isinstance(value, list):
            return [self.named(item) for item in value]
        return value

    def flag(self, code) -> str:
        return self.flags.get(code, str(code).replace("_", " "))


def _actor(event: AuditEvent) -> str:
    return "the portal" if event.actor_label in SYSTEM_ACTORS else event.actor_label


def _by(event: AuditEvent, details: dict) -> str:
    policy = details.get("policy")
    if policy:
        return f"by {POLICY_LABELS.get(policy, str(policy).replace('_', ' '))}"
    return f"by {_actor(event)}"


def _flag_lines(details: dict, names: _Names) -> list[str]:
    return [f"Screening flag: {names.flag(code)}" for code in details.get("flags") or []]


def _field_label(name: str) -> str:
    try:
        return str(AccessRequest._meta.get_field(name).verbose_name)
    except FieldDoesNotExist:
        return name.replace("_", " ")


def _submitted(event, d, names):
    lines = [f"License version {d['license']}"] if d.get("license") else []
    return f"Submitted by {_actor(event)} for {names.models(d.get('variants'))}", lines + _flag_lines(d, names)


def _resubmitted(event, d, names):
    round_ = f" (review round {d['round']})" if d.get("round") else ""
    return f"Resubmitted by {_actor(event)}{round_}", _flag_lines(d, names)


def _assigned(event, d, names):
    lines = [f"Previously: {d['previous']}"] if d.get("previous") else []
    actor = _actor(event)
    if d.get("assignee") and d["assignee"] == actor:
        return f"Claimed by {actor}", lines
    return f"Assigned to {d.get('assignee') or 'nobody'} by {actor}", lines


def _approval_recorded(event, d, names):
    lines = [f"Granted now: {names.models(d['granted'])}"] if d.get("granted") else []
    lines.append(f"Waiting for a second reviewer: {names.models(d.get('waiting_for_second_approval'))}")
    if d.get("declined"):
        lines.append(f"Declined: {names.models(d['declined'])}")
    return f"Approval of {names.models(d.get('approved'))} recorded {_by(event, d)}", lines


def _approved(event, d, names):
    lines = [f"Granted earlier: {names.models(d['granted_before'])}"] if d.get("granted_before") else []
    if d.get("declined"):
        lines.append(f"Declined: {names.models(d['declined'])}")
    return f"Approved {names.models(d.get('approved'))} {_by(event, d)}", lines


def _rejected(event, d, names):
    return f"Rejected {_by(event, d)}", [f"Reason: {d['reason']}"] if d.get("reason") else []


def _grant_created(event, d, names):
    lines = [f"Ends {d['expires_at'][:10]}"] if d.get("expires_at") else []
    return f"Access to {names.models(d.get('variant'))} granted; the researcher accepts the license next", lines


def _grant_changed(verb: str, reason_label: str = "Reason") -> Callable:
    def sentence(event, d, names):
        lines = [f"{reason_label}: {d['reason']}"] if d.get("reason") else []
        if d.get("block_new_requests"):
            lines.append("New requests from the researcher are blocked")
        return f"Access to {names.models(d.get('variant'))} {verb} by {_actor(event)}", lines

    return sentence


SENTENCES: dict[str, Callable[[AuditEvent, dict, _Names], tuple[str, list[str]]]] = {
    "access_request.submitted": _submitted,
    "access_request.edited": lambda e, d, n: (
        f"Application edited by {_actor(e)}",
        [f"Changed: {', '.join(_field_label(name) for name in d.get('fields') or [])}"] if d.get("fields") else [],
    ),
    "access_request.resubmitted": _resubmitted,
    "access_request.withdrawn": lambda e, d, n: (f"Withdrawn by {_actor(e)}", []),
    "access_request.assigned": _assigned,
    "access_request.note_added": lambda e, d, n: (f"Reviewer note added by {_actor(e)}", []),
    "access_request.approval_recorded": _approval_recorded,
    "access_request.approved": _approved,
    "access_request.rejected": _rejected,
    "access_request.info_requested": lambda e, d, n: (f"More information asked of the applicant by {_actor(e)}", []),
    "access_request.variants_declined_by_policy": lambda e, d, n: (
        f"{n.models(d.get('variants'))} declined {_by(e, d)}",
        [],
    ),
    "grant.created": _grant_created,
    "grant.activated": lambda e, d, n: (
        f"License accepted: access to {n.models(d.get('variant'))} active",
        [f"License version {d['license']}"] if d.get("license") else [],
    ),
    "grant.suspended": _grant_changed("suspended"),
    "grant.reinstated": _grant_changed("reinstated", "Note"),
    "grant.revoked": _grant_changed("revoked"),
    "grant.expired": lambda e, d, n: (f"Access to {n.models(d.get('variant'))} ended (its end date passed)", []),
    "grant.expiry_reminder_sent": lambda e, d, n: ("The researcher was reminded that access ends soon", []),
}

# Details every sentence above already says, or that only the audit log needs.
_SAID = {"variant", "variants", "user", "from", "to", "request", "round", "policy"}


def value_text(value) -> str:
    """A detail's value in words: lists joined, mappings as "key: value", nothing as a dash."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{str(key).replace('_', ' ')}: {value_text(item)}" for key, item in value.items())
    return str(value)


def _generic(event: AuditEvent, details: dict, names: _Names) -> tuple[str, list[str]]:
    # "access_request.partially_approved" -> "Partially approved by ann@example.org"
    words = event.action.rsplit(".", 1)[-1].replace("_", " ").strip().capitalize() or event.action
    lines = []
    for key, value in details.items():
        if key in _SAID:
            continue
        lines.append(f"{str(key).replace('_', ' ').capitalize()}: {value_text(names.named(value))}")
    subject = f" ({names.models(details['variant'])})" if isinstance(details.get("variant"), str) else ""
    return f"{words}{subject} by {_actor(event)}", lines


def history_entries(events: Iterable[AuditEvent]) -> list[HistoryEntry]:
    events = list(events)
    names = _Names(events)
    entries = []
    for event in events:
        details = event.details if isinstance(event.details, dict) else {}
        sentence, lines = SENTENCES.get(event.action, _generic)(event, details, names)
        entries.append(HistoryEntry(at=event.occurred_at, action=event.action, sentence=sentence, lines=lines))
    return entries


def request_history_for_reviewers(access_request: AccessRequest) -> list[HistoryEntry]:
    """The request's events and its grants', oldest first, in words."""
    return history_entries(request_audit_events(access_request, with_grants=True))
