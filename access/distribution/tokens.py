"""Signed tokens and URLs of download links and bundles.

A link's URL carries ``Signer(salt=...)`` around the link's random ``public_id``: unguessable
(128 random bits), and a token made up from a copy of the database alone does not verify,
because the signature needs the site's secret key. A token whose signature fails is refused
before any query.
"""

from __future__ import annotations

from django.core import signing
from django.urls import reverse

from access.distribution.models import DownloadBundle, DownloadLink
from access.notifications.services import absolute_url

LINK_TOKEN_SALT = "access.downloads.link"
BUNDLE_TOKEN_SALT = "access.downloads.bundle"
_TOKEN_SEP = "."  # not ":" so tokens need no escaping in shells or URLs


def link_token(link: DownloadLink) -> str:
    return signing.Signer(salt=LINK_TOKEN_SALT, sep=_TOKEN_SEP).sign(link.public_id)


def bundle_token(bundle: DownloadBundle) -> str:
    return signing.Signer(salt=BUNDLE_TOKEN_SALT, sep=_TOKEN_SEP).sign(bundle.public_id)


def _unsign(token: str, salt: str) -> str | None:
    try:
        return signing.Signer(salt=salt, sep=_TOKEN_SEP).unsign(token)
    except signing.BadSignature:
        return None


def link_public_id(token: str) -> str | None:
    """The public id a link token signs, or None if the token is not one of ours."""
    return _unsign(token, LINK_TOKEN_SALT)


def link_from_token(token: str) -> DownloadLink | None:
    public_id = link_public_id(token)
    if public_id is None:
        return None
    return (
        DownloadLink.objects.select_related("file", "bundle__grant__variant__family", "bundle__grant__user")
        .filter(public_id=public_id)
        .first()
    )


def bundle_from_token(token: str) -> DownloadBundle | None:
    public_id = _unsign(token, BUNDLE_TOKEN_SALT)
    if public_id is None:
        return None
    bundles = DownloadBundle.objects.select_related("grant__variant__family", "grant__user")
    return bundles.filter(public_id=public_id).first()


def link_path(link: DownloadLink) -> str:
    return reverse("download-file", args=[link_token(link), link.file.name])


def bundle_script_path(bundle: DownloadBundle) -> str:
    return reverse("download-script", args=[bundle_token(bundle)])


def bundle_manifest_path(bundle: DownloadBundle) -> str:
    return reverse("download-manifest", args=[bundle_token(bundle)])


def bundle_wildcard_path(bundle: DownloadBundle) -> str:
    """The bundle's URL for Meta's download.sh: one "*" for the script to put each path in."""
    return reverse("download-wildcard", args=[bundle_token(bundle), "*"])


def download_absolute_url(path: str, request=None) -> str:
    """The URL as the client reached us when there is a request, else from PORTAL_BASE_URL."""
    return request.build_absolute_uri(path) if request is not None else absolute_url(path)


def grants_page_url(request=None) -> str:
    return download_absolute_url(reverse("grants"), request)
