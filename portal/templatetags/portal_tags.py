from django import template

from portal.markdown import markdown_render
from portal.roles import user_has_role
from portal.validators import name_bidi_controls_strip

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text):
    return markdown_render(text)


@register.filter
def bidi_strip(text):
    """A name or affiliation without text-direction controls, which names refuse now but older
    requests may hold: shown raw, one could reorder what a reviewer reads."""
    return name_bidi_controls_strip(text)


@register.filter
def has_role(user, role):
    return user_has_role(user, role)


@register.filter
def humanize_count(value):
    """6_738_415_616 -> '6.7B', 1_000_000_000_000 -> '1.0T'."""
    value = int(value or 0)
    for threshold, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if value >= threshold:
            return f"{value / threshold:.1f}{suffix}"
    return str(value)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


ACCESS_LABELS = {
    "none": "Not requested",
    "requested": "Request under review",
    "license_required": "Approved — accept the license",
    "active": "Active",
    "suspended": "Suspended",
    "revoked": "Revoked",
    "expired": "Expired",
}


@register.filter
def access_label(state):
    return ACCESS_LABELS.get(state, state)
