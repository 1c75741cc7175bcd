"""Reads about downloads for the pages: a grant's bundles and gateway log, and the
bundles the leak rule suspended (for the reviewers' alert panel)."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from access.audit.models import AuditEvent
from access.distribution.models import HF_FOLDER, DownloadBundle, DownloadEvent, WeightFile
from access.grants.models import Grant

LEAK_ALERT_DAYS = 30


def weights_published(variant) -> bool:
    return WeightFile.objects.filter(variant=variant).exists()


def weight_files_published(variant, *, file_format: str | None = "meta") -> QuerySet[WeightFile]:
    """The variant's published files of one layout (``meta``, what the engine loads; ``hf``, its
    transformers conversion under hf/; None: both), by name, with where they are stored and
    their checksums."""
    files = WeightFile.objects.filter(variant=variant)
    if file_format == "meta":
        files = files.exclude(name__startswith=HF_FOLDER)
    elif file_format == "hf":
        files = files.filter(name__startswith=HF_FOLDER)
    return files.order_by("name")


def bundles_for_grant(grant: Grant) -> QuerySet[DownloadBundle]:
    """The grant's bundles, newest first, with how many files and downloads each has had."""
    return grant.download_bundles.annotate(
        file_count=Count("links", distinct=True), downloads_used=Sum("links__downloads_used")
    ).order_by("-created_at", "-id")


def download_events_for_grant(grant: Grant) -> QuerySet[DownloadEvent]:
    return DownloadEvent.objects.filter(grant=grant).select_related("file", "bundle").order_by("-created_at", "-id")


def bundles_suspended_by_leak_rule(*, days: int = LEAK_ALERT_DAYS) -> QuerySet[DownloadBundle]:
    """Bundles the leak rule suspended within the last ``days`` days, newest first.

    The leak rule suspends as the system (no actor); the audit log is what tells its
    suspensions from a reviewer's."""
    since = timezone.now() - dt.timedelta(days=days)
    bundle_ids = AuditEvent.objects.filter(
        action="download.bundle_suspended",
        actor__isnull=True,
        target_type=DownloadBundle._meta.label_lower,
        occurred_at__gte=since,
    ).values_list("target_id", flat=True)
    return (
        DownloadBundle.objects.filter(pk__in=[int(pk) for pk in bundle_ids], suspended_at__gte=since)
        .select_related("grant__user", "grant__variant")
        .order_by("-suspended_at", "-id")
    )


def grants_with_links_suspended(grant_ids) -> set[int]:
    """Of these grants, those whose live download links are suspended (by the leak rule or a
    reviewer) until a reviewer lifts the suspension: the sandbox is closed to them too."""
    return set(
        DownloadBundle.objects.filter(grant_id__in=grant_ids, suspended_at__isnull=False, retired_at__isnull=True)
        .values_list("grant_id", flat=True)
        .distinct()
    )
