"""A Hugging Face Hub-compatible read endpoint under ``/hub/`` (issue 18): with
``HF_ENDPOINT=<portal>/hub`` and ``HF_TOKEN=<personal API token>``, ``huggingface_hub``'s
``snapshot_download``, ``hf_hub_download`` and ``hf download`` fetch a granted variant, repo id
``<family slug>/<variant slug>``.

Only reading, over plain HTTP (no Xet headers). A published variant has one revision: a 40-hex
sha of its files' names and sha256s (and of the grant, when its copies are fingerprinted), also
reachable as ``main``. When the variant is published in transformers' layout too
(``publish_weights --formats meta,hf``), the repo looks like Meta's Llama 3 repos on the Hub: the
transformers files at the top (``from_pretrained`` loads them) and Meta's checkpoint under
``original/``; otherwise Meta's files are at the top. Every file goes through the grant's live
download link (made when there is none), so it is checked, counted and logged as a
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
from access.distribution.models import HF_FOLDER, WeightFile
from access.grants.models import Grant, GrantStatus
from access.grants.selectors import grants_annotate_effective_status
from portal.errors import LimitReached, StateConflict
from portal.middleware import browserless
from portal.services import api_token_authenticate

MAIN = "main"
ORIGINAL_FOLDER = "original/"  # Meta's files, beside the transformers files, as on Meta's Hub repos


def hub_paths(files: list[WeightFile]) -> dict[str, WeightFile]:
    """Each published file by its path in the hub repo."""
    if not any(f.name.startswith(HF_FOLDER) for f in files):
        return {f.name: f for f in files}
    return {
        f.name.removeprefix(HF_FOLDER) if f.name.startswith(HF_FOLDER) else ORIGINAL_FOLDER + f.name: f for f in files
    }


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


def _revision_sha(variant: ModelVariant, files: list[WeightFile], grant: Grant) -> str:
    """The variant's one published revision for this grant: a 40-hex digest of its files as
    published now and, when fingerprints are on, of the grant, since its copy's bytes are its own.
    The client caches files by revision: one revision for everyone would let a cache shared by
    two researchers hand one the other's marked copy."""
    listing = "\n".join(f"{f.name} {f.sha256}" for f in sorted(files, key=lambda f: f.name))
    recipient = f"\ngrant {grant.pk}" if variant.fingerprint else ""
    return hashlib.sha1(f"{variant.slug}\n{listing}{recipient}".encode(), usedforsecurity=False).hexdigest()


class _Repo:
    """A request's repo: the variant, its files and revision, and the caller's usable grant."""

    def __init__(self, variant, files, sha, grant):
        self.variant, self.files, self.sha, self.grant = variant, files, sha, grant
        self.paths = hub_paths(files)


def _repo(request, namespace: str, name: str, revision: str) -> _Repo | HttpResponse:
    repo_id = f"{namespace}/{name}"
    variant = (
        ModelVariant.objects.select_related("family").filter(family__slug=namespace, slug=name, is_listed=True).first()
    )
    files = list(WeightFile.objects.filter(variant=variant).order_by("name")) if variant else []
    if variant is None or not files:
        return _refusal(404, "RepoNotFound", f"There is no model {repo_id} with published weights on this portal.")
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
    sha = _revision_sha(variant, files, grant)
    if revision not in (MAIN, sha):
        return _refusal(
            404, "RevisionNotFound", f"{repo_id} has one revision, '{MAIN}' ({sha}); {revision!r} is not it."
        )
    return _Repo(variant, files, sha, grant)


def _files_of(repo: _Repo, request) -> list[dict]:
    """Each file (``path`` in the repo) with the caller's own size and sha256 (fingerprinted
    shards included), from the grant's live links when there are any."""
    bundle = bundle_current(repo.grant)
    if bundle is not None and bundle.expires_at > timezone.now() and bundle.suspended_at is None:
        own = {entry["name"]: entry for entry in bundle_files(bundle, request)}
    else:
        own = {}
    entries = []
    for hub_path, f in repo.paths.items():
        entry = own.get(f.name) or {"size": f.size, "sha256": None if f.layout else f.sha256}
        entries.append({"path": hub_path, "size": entry["size"], "sha256": entry["sha256"]})
    return sorted(entries, key=lambda entry: entry["path"])


def _oid(path: str, content: str | None) -> str:
    """A git-like object id (the client only compares them)."""
    return hashlib.sha1(f"{path} {content}".encode(), usedforsecurity=False).hexdigest()


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
            "siblings": [{"rfilename": hub_path} for hub_path in sorted(repo.paths)],
        }
    )


@browserless
@csrf_exempt
def model_tree(request, namespace: str, name: str, revision: str, path: str = ""):
    repo = _repo(request, namespace, name, revision)
    if isinstance(repo, HttpResponse):
        return repo
    folder = path.strip("/")
    prefix = f"{folder}/" if folder else ""
    recursive = request.GET.get("recursive", "").lower() in ("1", "true")
    listing = [entry for entry in _files_of(repo, request) if entry["path"].startswith(prefix)]
    folders = {entry["path"][len(prefix) :].split("/")[0] for entry in listing if "/" in entry["path"][len(prefix) :]}
    if folder and not listing:
        return _refusal(404, "EntryNotFound", f"{namespace}/{name} has no folder {folder!r}.")
    entries = [
        {"type": "directory", "path": prefix + sub, "oid": _oid(prefix + sub, repo.sha)} for sub in sorted(folders)
    ]
    for entry in listing:
        if not recursive and "/" in entry["path"][len(prefix) :]:
            continue
        item = {
            "type": "file",
            "path": entry["path"],
            "size": entry["size"],
            "oid": _oid(entry["path"], entry["sha256"]),
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
    published = repo.paths.get(filename)
    if published is None:
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
    public_id = bundle.links.filter(file=published).values_list("public_id", flat=True).first()
    if public_id is None:  # published after these links were made
        return _refusal(404, "EntryNotFound", f"{filename} is newer than your links: create new ones on the portal.")
    response = gateway._link_request(request, public_id, published.name)
    response["X-Repo-Commit"] = repo.sha
    if response.status_code == 302 and response.has_header("Location"):
        # Redirected to storage: the client reads the file's size and etag from these.
        response["X-Linked-Size"] = str(published.size)
        response["X-Linked-Etag"] = f'"{published.sha256}"'
    return response
