"""The rejection templates reviewers start with; seeding again keeps their edits."""

from __future__ import annotations

from django.db import transaction

from access.audit.services import audit_event_record
from access.review.models import RejectionTemplate

# Reasons reviewers pick from when rejecting; the applicant reads the text, so it says what to do next.
REJECTION_TEMPLATES = [
    (
        "Use case outside research scope",
        (
            "The use case you describe is not research the license covers (for example a product, a service "
            "or a deployment). If your project is research, apply again and describe what you will study, "
            "how you will use the weights, and where you intend to publish."
        ),
    ),
    (
        "Affiliation could not be verified",
        (
            "We could not verify your affiliation with the institution you named. Apply again with your "
            "institutional email address, or add a link to a staff or lab page that lists you."
        ),
    ),
    (
        "Export restrictions",
        (
            "We cannot offer access because export restrictions on these weights apply to your country or "
            "organization. This decision does not reflect on the merit of your research."
        ),
    ),
    (
        "Commercial use",
        (
            "The license allows non-commercial research only, and the use you describe is commercial. If part "
            "of your work is non-commercial research, apply again describing only that part."
        ),
    ),
]


@transaction.atomic
def rejection_templates_seed(*, actor=None) -> list[RejectionTemplate]:
    """Create the standard rejection reasons. Idempotent: a template whose title
    exists is left as reviewers may have edited it."""
    created = []
    for title, text in REJECTION_TEMPLATES:
        if RejectionTemplate.objects.filter(title=title).exists():
            continue
        template = RejectionTemplate(title=title, text=text)
        template.full_clean()
        template.save()
        audit_event_record(action="review.rejection_template_created", actor=actor, target=template)
        created.append(template)
    return created
