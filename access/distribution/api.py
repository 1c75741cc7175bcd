"""The researcher's download links API (docs/api.md "Grants and downloads"): create a
bundle of gateway links for one of the caller's grants, or read the current one.

Another user's grant answers 404, like a missing one. Whether links can be made
(usable grant, published files) is the service's rule: it raises StateConflict,
which the API answers with 409 and the service's message. Reading the links of a grant
that is not active (or of a suspended bundle) is refused, 403, or 410 once the grant has
expired: the gateway would refuse every one of them.
"""

from __future__ import annotations

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.distribution.bundles import (
    bundle_checksums_ready,
    bundle_create,
    bundle_current,
    bundle_files,
    unusable_grant_message,
)
from access.distribution.models import DownloadBundle
from access.distribution.tokens import (
    bundle_manifest_path,
    bundle_script_path,
    bundle_wildcard_path,
    download_absolute_url,
)
from access.grants.models import GrantStatus
from access.grants.selectors import grant_get_for_holder
from portal.api.errors import ApiError
from portal.api.schema import error_responses

DOWNLOADS_TAG = "grants"
_GRANT_MISSING = "You have no grant with this id. GET /api/v1/grants lists yours."


class DownloadFileSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="File name inside the model's folder, e.g. consolidated.00.pth.")
    size = serializers.IntegerField(help_text="Bytes.")
    sha256 = serializers.CharField(
        allow_null=True,
        help_text="Of your own copy: weight files carry your fingerprint, so they differ from anyone else's. "
        "null while it is being computed (checksums_ready false); ask again in a minute.",
    )
    md5 = serializers.CharField(
        allow_null=True, help_text="Of your own copy, as checklist.chk lists it; null meanwhile."
    )
    marked = serializers.BooleanField(help_text="The file carries your fingerprint (a keyed mark in the weights).")
    url = serializers.URLField(help_text="Gateway link; needs no other credential. Supports HTTP Range to resume.")
    downloads_left = serializers.IntegerField(
        help_text="Whole copies of the file the link still allows. Resuming, or fetching in Range parts, "
        "costs only the bytes asked for."
    )
    bytes_left = serializers.IntegerField(
        help_text="Bytes the link still allows: its downloads x the file's size, plus a resume slack of at most "
        "half the file (DOWNLOAD_RESUME_SLACK_BYTES), less what it has served."
    )


class DownloadBundleSerializer(serializers.Serializer):
    bundle = serializers.CharField(help_text="The bundle's id; quote it in support mail.")
    expires_at = serializers.DateTimeField(help_text="Every link of the bundle stops working at this time.")
    checksums_ready = serializers.BooleanField(
        help_text="Every file's checksums are computed; download_sh and manifest answer 503 until then."
    )
    files = DownloadFileSerializer(many=True)
    download_sh = serializers.URLField(help_text="POSIX shell script that downloads, resumes and verifies every file.")
    manifest = serializers.URLField(help_text="The same links and checksums as JSON.")
    wildcard_url = serializers.CharField(
        help_text="For Meta's own download.sh (PRESIGNED_URL): one '*' that the script replaces with each path, "
        "tokenizer.model, tokenizer_checklist.chk and <FOLDER>/consolidated.NN.pth, params.json, checklist.chk."
    )


def _bundle_body(bundle: DownloadBundle, request) -> dict:
    files = bundle_files(bundle, request)
    return DownloadBundleSerializer(
        {
            "bundle": bundle.public_id,
            "expires_at": bundle.expires_at,
            "checksums_ready": bundle_checksums_ready(files),
            "files": files,
            "download_sh": download_absolute_url(bundle_script_path(bundle), request),
            "manifest": download_absolute_url(bundle_manifest_path(bundle), request),
            "wildcard_url": download_absolute_url(bundle_wildcard_path(bundle), request),
        }
    ).data


class GrantDownloadLinksApi(APIView):
    @extend_schema(
        tags=[DOWNLOADS_TAG],
        summary="The grant's current download links, while they are valid",
        responses={200: DownloadBundleSerializer, **error_responses(403, 404, 410)},
    )
    def get(self, request, pk: int):
        grant = grant_get_for_holder(request.user, pk, missing=_GRANT_MISSING)
        # The gateway refuses every link of a grant that is not active: none is shown as if usable.
        if grant.effective_status != GrantStatus.ACTIVE:
            raise ApiError(
                status_code=410 if grant.effective_status == GrantStatus.EXPIRED else 403,
                code="grant_not_usable",
                message=unusable_grant_message(grant),
            )
        bundle = bundle_current(grant)
        if bundle is None or bundle.expires_at <= timezone.now():
            raise Http404(
                f"This grant has no valid download links. POST /api/v1/grants/{grant.pk}/download-links creates them."
            )
        if bundle.suspended_at is not None:
            raise ApiError(
                status_code=403,
                code="links_suspended",
                message="These download links are suspended because they were used from unusually many places. "
                "A reviewer will look into it and contact you.",
            )
        return Response(_bundle_body(bundle, request))

    @extend_schema(
        tags=[DOWNLOADS_TAG],
        summary="Create download links for every file of the model; the previous links stop working",
        request=None,
        responses={201: DownloadBundleSerializer, **error_responses(404, 409, 429)},
    )
    def post(self, request, pk: int):
        grant = grant_get_for_holder(request.user, pk, missing=_GRANT_MISSING)
        bundle = bundle_create(grant=grant, user=request.user, request=request)
        return Response(_bundle_body(bundle, request), status=status.HTTP_201_CREATED)
