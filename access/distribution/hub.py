"""A Hugging Face Hub-compatible read endpoint under ``/hub/`` (issue 18): with
``HF_ENDPOINT=<portal>/hub`` and ``HF_TOKEN=<personal API token>``, ``huggingface_hub``'s
``snapshot_download``, ``hf_hub_download`` and ``hf download`` fetch a granted variant, repo id
``<family slug>/<variant slug>``.

Only reading, over plain HTTP (no Xet headers). A published variant has one revision: a 40-hex
sha of its files' names and sha256s, also reachable as ``main``. Every file goes through the
grant's live download link (made when there is none), so it is checked, counted and logged as a
``/dl/`` download is, with the leak rule and the recipient's own fingerprinted bytes; revocation
stops it at once. Refusals carry ``X-Error-Code`` (``RepoNotFound``, ``GatedRepo``,
``RevisionNotFound``, ``EntryNotFound``) and ``X-Error-Message``, from which the client raises
``RepositoryNotFoundError``, ``GatedRepoError`` and friends with our message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from access.catalog.models import ModelVariant
from access.distribution.bundles import bundle_current, bundle_files, bundle_live_or_create, unusable_grant_message
from access.distribution.gateway import views as gateway
from access.distribution.models import WeightFile
from access.grants.models import Grant, GrantStatus
from access.grants.selectors import grants_annotate_effective_status
from portal.errors import LimitReached, StateConflict
from portal.middleware import browserless
from portal.services import api_token_authenticate

MAIN = "main"


def _refusal(status: int, code: str, message: str) -> HttpResponse:
    response = JsonResponse({"error": message}, status=status)
    response["X-Error-Code"] = code
    # Header values are one line of Latin-1; the body carries the message as written.
    response["X-Error-Message"] = message.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
    response["Cache-Control"] = "no-store"
    return response


def _user(request):
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    token = api_token_authenticate(secret.strip())
    return token.user if token is not None else None


def _revision_sha(variant: ModelVariant, files: list[WeightFile]) -> str:
    """The variant's one published revision: a 40-hex digest of its files as published now."""
    listing = "\n".join(f"{f.name} {f.sha256}" for f in sorted(files, key=lambda f: f.name))
    return hashlib.sha1(f"{variant.slug}\n{listing}".encode(), usedforsecurity=False).hexdigest()


class _Repo:
    """A request's repo: the variant, its files and revision, and the caller's usable grant."""

    def __init__(self, variant, files, sha, grant):
        self.variant, self.files, self.sha, self.grant = variant, files, sha, grant


def _repo(request, namespace: str, name: str, revision: str) -> _Repo | HttpResponse:
    repo_id = f"{namespace}/{name}"
    variant = (
        ModelVariant.objects.select_related("family").filter(family__slug=namespace, slug=name, is_listed=True).first()
    )
    files = list(WeightFile.objects.filter(variant=variant).order_by("name")) if variant else []
    if variant is None or not files:
        return _refusal(404, "RepoNotFound", f"There is no model {repo_id} with published weights on this portal.")
    sha = _revision_sha(variant, files)
    user = _user(request)
    if user is None:
        return _refusal(
            401,
            "GatedRepo",
            f"{repo_id} is released case by case: send your personal API token (HF_TOKEN) from an account "
            "whose access request was approved.",
        )
    grant = Grant.objects.select_related("variant__family", "user").filter(user=user, variant=variant).order_by("-pk")
    grant = grant.first()
    if grant is not None:
        grants_annotate_effective_status([grant])
    if grant is None or grant.effective_status != GrantStatus.ACTIVE:
        message = (
            unusable_grant_message(grant)
            if grant is not None
            else f"You have no access to {variant.name}: apply for it on the portal; each request is reviewed."
        )
        return _refusal(403, "GatedRepo", message)
    if revision not in (MAIN, sha):
        return _refusal(
            404, "RevisionNotFound", f"{repo_id} has one revision, '{MAIN}' ({sha}); {revision!r} is not it."
        )
    return _Repo(variant, files, sha, grant)


def _files_of(repo: _Repo, request) -> list[dict]:
    """Each file with the caller's own size and sha256 (fingerprinted shards included), from the
    grant's live links when there are any."""
    bundle = bundle_current(repo.grant)
    if bundle is not None and bundle.expires_at > timezone.now() and bundle.suspended_at is None:
        return bundle_files(bundle, request)
    return [{"name": f.name, "size": f.size, "sha256": None if f.layout else f.sha256} for f in repo.files]


def _hub_time(moment: dt.datetime) -> str:
    """As the Hub writes times, which the client parses exactly: UTC, milliseconds, "Z"."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@browserless
@csrf_exempt
def model_info(request, namespace: str, name: str, revision: str = MAIN):
    repo = _repo(request, namespace, name, revision)
    if isinstance(repo, HttpResponse):
        return repo
    return JsonResponse(
        {
            "id": f"{namespace}/{name}",
            "modelId": f"{namespace}/{name}",
            "sha": repo.sha,
            "private": True,
            "gated": "manual",
            "disabled": False,
            "tags": [],
            "lastModified": _hub_time(max(f.published_at for f in repo.files)),
            "siblings": [{"rfilename": f.name} for f in repo.files],
        }
    )


@browserless
@csrf_exempt
def model_tree(request, namespace: str, name: str, revision: str, path: str = ""):
    repo = _repo(request, namespace, name, revision)
    if isinstance(repo, HttpResponse):
        return repo
    if path.strip("/"):
        return JsonResponse([], safe=False)  # the repo has no folders
    entries = []
    for entry in _files_of(repo, request):
        item = {
            "type": "file",
            "path": entry["name"],
            "size": entry["size"],
            "oid": hashlib.sha1(f"{entry['name']} {entry['sha256']}".encode(), usedforsecurity=False).hexdigest(),
        }
        if entry["sha256"]:
            item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
        entries.append(item)
    return HttpResponse(json.dumps(entries), content_type="application/json")


@browserless
@csrf_exempt
def resolve(request, namespace: str, name: str, revision: str, filename: str):
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse("The hub endpoint only reads: GET and HEAD.\n", status=405)
        response["Allow"] = "GET, HEAD"
        return response
    repo = _repo(request, namespace, name, revision)
    if isinstance(repo, HttpResponse):
        return repo
    if filename not in {f.name for f in repo.files}:
        return _refusal(404, "EntryNotFound", f"{namespace}/{name} has no file {filename!r}.")
    bundle = bundle_current(repo.grant)
    if bundle is None or bundle.expires_at <= timezone.now():
        # The grant's links: the hub's downloads count against them like any other.
        try:
            bundle = bundle_live_or_create(grant=repo.grant, user=repo.grant.user, request=request)
        except StateConflict as exc:
            return _refusal(403, "GatedRepo", exc.message)
        except LimitReached as exc:
            response = _refusal(429, "TooManyRequests", exc.message)
            response["Retry-After"] = str(exc.retry_after_seconds or 60)
            return response
    public_id = bundle.links.filter(file__name=filename).values_list("public_id", flat=True).first()
    if public_id is None:  # published after these links were made
        return _refusal(404, "EntryNotFound", f"{filename} is newer than your links: create new ones on the portal.")
    response = gateway._link_request(request, public_id, filename)
    response["X-Repo-Commit"] = repo.sha
    if response.status_code == 302 and response.has_header("Location"):
        # Redirected to storage: the client reads the file's size and etag from these.
        published = next(f for f in repo.files if f.name == filename)
        response["X-Linked-Size"] = str(published.size)
        response["X-Linked-Etag"] = f'"{published.sha256}"'
    return response
