"""The download gateway, ``/dl/...``: the URLs handed to researchers.

No session, cookie or CSRF token is needed: the signed token in the path is the
credential. Every request, good or bad, is logged as a ``DownloadEvent``. Errors
answer in plain text saying what to do next, with ``Cache-Control: no-store``.

Local storage: the file is streamed with single-range support (or handed to nginx
with X-Accel-Redirect when DOWNLOAD_ACCEL_REDIRECT_PREFIX is set). S3: a 302 to a
presigned GET, valid DOWNLOAD_PRESIGNED_URL_SECONDS at most.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
from urllib.parse import quote

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from access.services import downloads as svc
from access.storage import StorageError, weight_storage
from portal.middleware import browserless

STREAM_BLOCK_BYTES = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _plain(status: int, message: str, request) -> HttpResponse:
    # Only refusals point to the grants page; reversing and building its URL is not free.
    if "{grants}" in message:
        message = message.replace("{grants}", svc.grants_page_url(request))
    body = message + "\n"
    response = HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
    if status == 405:
        response["Allow"] = "GET, HEAD"
    return _no_store(response)


def _refuse(request, outcome: svc.DownloadOutcome, *, link=None, bundle=None, network=None) -> HttpResponse:
    svc.download_event_record(
        request=request, status_code=outcome.status, outcome=outcome.name, link=link, bundle=bundle, network=network
    )
    return _plain(outcome.status, outcome.message, request)


METHOD_NOT_ALLOWED = svc.DownloadOutcome("method_not_allowed", 405, "Download links answer GET and HEAD only.")
WRONG_NAME = svc.DownloadOutcome(
    "wrong_name", 404, "This link is for another file name. Copy the whole link, or create new links on {grants}."
)
RANGE_NOT_SATISFIABLE = svc.DownloadOutcome("range_not_satisfiable", 416)
REDIRECTED = svc.DownloadOutcome("redirected", 302)
SERVED = svc.DownloadOutcome("served", 200)
ACCEL_REDIRECTED = svc.DownloadOutcome("accel_redirect", 200)
STORAGE_ERROR = svc.DownloadOutcome(
    "storage_error",
    503,
    "The file is unavailable right now; try again in a few minutes. Your download was not counted.",
)


def _parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """A single ``bytes=`` range as (first, last) inclusive; None when the header is absent,
    malformed or multi-range (served as the whole file, as HTTP allows); False when unsatisfiable."""
    match = _RANGE.match(header.replace(" ", "")) if header else None
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix: the last N bytes
        length = int(match[2])
        if length == 0 or size == 0:
            return False
        return max(size - length, 0), size - 1
    first = int(match[1])
    if first >= size:
        return False
    last = int(match[2]) if match[2] else size - 1
    if last < first:
        return None
    return first, min(last, size - 1)


def _cork(request) -> socket.socket | None:
    """Set TCP_CORK on the client connection while a file is sent, where the server exposes it
    (gunicorn's ``gunicorn.socket``) and the system has it (Linux); returns the corked socket.

    sendfile hands the socket the file a few pages at a time and each hand-off may go out as its own
    short segment; corked, the kernel sends only full segments (nginx's ``tcp_nopush``). Measured
    on loopback: 1.7 GB/s uncorked, 2.4-2.6 GB/s corked, the same as nginx. The cork must come
    off when the file is sent (:meth:`_FilePart.close`), or the last partial segment would wait
    200 ms on a kept-alive connection."""
    sock = request.META.get("gunicorn.socket")
    if sock is None or not hasattr(socket, "TCP_CORK"):
        return None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    except OSError:
        return None
    return sock


def _uncork(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)  # sends what the cork still holds
    except OSError:
        pass  # the client went away: nothing is waiting to be sent


class _FilePart:
    """A file object limited to ``length`` bytes from its current offset.

    It keeps ``fileno()``, so a WSGI server with sendfile (gunicorn) sends it from the kernel,
    for the Content-Length we declare; other servers read it block by block. Reads are counted
    so a short transfer (the client went away) can be logged as such. ``corked`` is the client
    socket to uncork once the server is done with the file."""

    def __init__(self, raw, length: int, on_close, corked: socket.socket | None = None):
        self._raw = raw
        self._left = length
        self._on_close = on_close
        self._corked = corked
        self.read_bytes = 0
        self.was_read = False

    def fileno(self) -> int:
        return self._raw.fileno()

    def read(self, size: int = -1) -> bytes:
        self.was_read = True
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._raw.read(size)
        self._left -= len(data)
        self.read_bytes += len(data)
        return data

    def close(self) -> None:
        if self._corked is not None:
            _uncork(self._corked)
            self._corked = None
        try:
            self._raw.close()
        finally:
            self._on_close(self)


def _content_disposition(name: str) -> str:
    ascii_name = "".join(c for c in name if 32 <= ord(c) < 127 and c not in '"\\') or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def _refuse_link(request, outcome: svc.DownloadOutcome, link, ip, network) -> HttpResponse:
    svc.gateway_event_record(request=request, link=link, outcome=outcome, ip=ip, network=network)
    return _plain(outcome.status, outcome.message, request)


class _Take:
    """Counts and logs this request's download, once: download_take, or, when the one-statement
    path already took the download and logged the request, a stand-in that only gives it back if
    storage then fails. ``counted_event`` is the logged event of a download still held, so that
    an unexpected error before any byte is sent can give it back."""

    def __init__(self, request, link, ip: str | None, network: str, range_start: int | None, taken_event_id=None):
        self.request, self.link, self.ip, self.network, self.range_start = request, link, ip, network, range_start
        self.already_taken = taken_event_id is not None
        self.counted_event = taken_event_id

    def __call__(self, *, served, bytes_sent=None, failure=None):
        if not self.already_taken:
            outcome, counted, event_id = svc.download_take(
                link=self.link, request=self.request, ip=self.ip, network=self.network, range_start=self.range_start,
                served=served, bytes_sent=bytes_sent, failure=failure,
            )  # fmt: skip
            self.counted_event = event_id if counted else None
            return outcome, counted, event_id
        event_id = self.counted_event
        if failure is not None:
            self.give_back(failure)
            return failure, False, event_id
        return svc.ALLOWED, True, event_id

    def give_back(self, outcome: svc.DownloadOutcome) -> None:
        if self.counted_event is not None:
            svc.download_give_back(self.link, self.counted_event, outcome)
            self.counted_event = None


def _serve(request, link, storage, byte_range, take: _Take) -> HttpResponse:
    try:
        if storage.name != "s3":
            return _serve_local(request, link, storage, byte_range, take)
        return _redirect_to_storage(request, link, storage, take)
    except Exception:
        # Nothing was sent: the download must not stay used (the error is reported as usual).
        take.give_back(STORAGE_ERROR)
        raise


def _served_outcome(storage) -> svc.DownloadOutcome:
    """What a whole-file GET that goes through is logged as, by how it is served."""
    if storage.name == "s3":
        return REDIRECTED
    if settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX:
        return ACCEL_REDIRECTED
    return SERVED


def _serve_local(request, link, storage, byte_range, take) -> HttpResponse:
    size = link.file_size
    first, last = byte_range if byte_range else (0, size - 1)
    length = max(last - first + 1, 0)
    status = 206 if byte_range else 200
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{link.file_sha256}"',
        "Content-Disposition": _content_disposition(link.file_name),
        "Cache-Control": "no-store",
    }
    if byte_range:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"

    if request.method == "HEAD":
        outcome, _, _ = take(served=svc.DownloadOutcome("head", status), bytes_sent=0)
        response = HttpResponse(status=status, content_type="application/octet-stream", headers=headers)
        response["Content-Length"] = str(length)
        return response

    if settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX:
        # nginx sends the bytes (and answers the Range itself); the portal only decided and counted.
        outcome, _, _ = take(served=svc.DownloadOutcome(ACCEL_REDIRECTED.name, status))
        if not outcome.allowed:
            return _plain(outcome.status, outcome.message, request)
        headers.pop("Content-Range", None)
        response = HttpResponse(status=200, content_type="application/octet-stream", headers=headers)
        response["X-Accel-Redirect"] = settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX.rstrip("/") + "/" + quote(
            link.file_storage_key
        )
        response["X-Accel-Buffering"] = "no"
        return response

    # Opened before counting, so a file storage cannot give is never counted.
    try:
        raw = open(storage.path(link.file_storage_key), "rb")
        raw.seek(first)
        # Weight files are read once, front to back: ask the kernel for its larger readahead.
        if hasattr(os, "posix_fadvise"):  # Linux; macOS has none
            os.posix_fadvise(raw.fileno(), first, length, os.POSIX_FADV_SEQUENTIAL)
    except (OSError, StorageError):
        raw = None
    # Logged with the length planned; corrected when the stream ends short (client gone).
    outcome, _, event_id = take(
        served=svc.DownloadOutcome("partial" if byte_range else SERVED.name, status),
        bytes_sent=length,
        failure=STORAGE_ERROR if raw is None else None,
    )
    if not outcome.allowed:
        if raw is not None:
            raw.close()
        return _plain(outcome.status, outcome.message, request)

    def closed(part: _FilePart) -> None:
        if part.was_read and part.read_bytes != length:
            svc.download_event_bytes_sent(event_id, part.read_bytes)

    part = _FilePart(raw, length, closed, corked=_cork(request))
    response = FileResponse(part, status=status, content_type="application/octet-stream", headers=headers)
    response.block_size = STREAM_BLOCK_BYTES
    response["Content-Length"] = str(length)
    return response


@browserless
@csrf_exempt
def file_download(request, token: str, name: str):
    ip = svc.request_client_ip(request)
    network = svc.client_network(ip)
    now = timezone.now()
    public_id = svc.link_public_id(token)
    storage = weight_storage()
    taken_event_id = None
    if public_id is None:
        link = None
    elif request.method == "GET" and "HTTP_RANGE" not in request.META and svc.gateway_fast_path_available():
        served = _served_outcome(storage)
        link, taken_event_id = svc.gateway_link_load_and_take(
            public_id, name=name, request=request, ip=ip, network=network, now=now, served=served,
            log_file_size=served is SERVED,
        )  # fmt: skip
    else:
        link = svc.gateway_link_load(public_id, network=network, now=now)

    if taken_event_id is not None:
        # Taken by the one-statement path; the rules below are still the ones that decide.
        take = _Take(request, link, ip, network, None, taken_event_id)
        outcome = WRONG_NAME if name != link.file_name else svc.gateway_authorize(link)
        if not outcome.allowed:
            take.give_back(outcome)
            return _plain(outcome.status, outcome.message, request)
        return _serve(request, link, storage, None, take)

    if request.method not in ("GET", "HEAD"):
        return _refuse_link(request, METHOD_NOT_ALLOWED, link, ip, network)
    if link is None:
        return _refuse_link(request, svc.UNKNOWN, None, ip, network)
    if name != link.file_name:
        return _refuse_link(request, WRONG_NAME, link, ip, network)
    if network and not link.network_seen and link.bundle_suspended_at is None:
        # A network new to the bundle may cross the leak limit: its check, count and log hold the
        # bundle's lock, so a burst of new networks is counted one at a time.
        with svc.bundle_leak_serialized(link.bundle_id):
            return _decide_and_serve(request, link, storage, ip, network)
    return _decide_and_serve(request, link, storage, ip, network)


def _decide_and_serve(request, link, storage, ip: str | None, network: str) -> HttpResponse:
    link = svc.gateway_leak_check(link, network=network)
    outcome = svc.gateway_authorize(link)
    if not outcome.allowed:
        return _refuse_link(request, outcome, link, ip, network)

    size = link.file_size
    range_header = request.META.get("HTTP_RANGE", "")
    if_range = request.META.get("HTTP_IF_RANGE")
    if range_header and if_range is not None and if_range.strip() != f'"{link.file_sha256}"':
        range_header = ""  # the client's partial copy is of another file version: send it whole
    byte_range = _parse_range(range_header, size)
    if byte_range is False:
        # Nothing to send, so nothing to count: usually a client whose copy is already complete.
        svc.gateway_event_record(request=request, link=link, outcome=RANGE_NOT_SATISFIABLE, ip=ip, network=network)
        response = _plain(416, f"The file has {size} bytes; the range asked for starts past its end.", request)
        response["Content-Range"] = f"bytes */{size}"
        return response

    take = _Take(request, link, ip, network, byte_range[0] if byte_range else None)
    return _serve(request, link, storage, byte_range, take)


def _redirect_to_storage(request, link, storage, take) -> HttpResponse:
    try:
        url = storage.presigned_get_url(
            link.file_storage_key, filename=link.file_name, expires_in=settings.DOWNLOAD_PRESIGNED_URL_SECONDS
        )
    except (StorageError, ValueError):
        url = None
    outcome, _, _ = take(served=REDIRECTED, failure=STORAGE_ERROR if url is None else None)
    if not outcome.allowed:
        return _plain(outcome.status, outcome.message, request)
    # Not HttpResponseRedirect: it re-parses and re-quotes the URL, which storage has already built
    # percent-encoded, on the gateway's busiest path.
    response = HttpResponse(status=302)
    response["Location"] = response.url = url
    return _no_store(response)


def _bundle_request(request, token: str):
    """The bundle of a script or manifest request, or the error response to send."""
    bundle = svc.bundle_from_token(token)
    if request.method not in ("GET", "HEAD"):
        return None, _refuse(request, METHOD_NOT_ALLOWED, bundle=bundle)
    if bundle is not None:
        svc.bundle_leak_check(bundle, network=svc.client_network(svc.request_client_ip(request)))
    outcome = svc.bundle_authorize(bundle=bundle, request=request)
    if not outcome.allowed:
        return None, _refuse(request, outcome, bundle=bundle)
    return bundle, None


def _shell_word(value: str) -> str:
    return shlex.quote(str(value))


@browserless
@csrf_exempt
def bundle_script(request, token: str):
    bundle, refusal = _bundle_request(request, token)
    if refusal is not None:
        return refusal
    manifest = svc.bundle_manifest(bundle, request)
    context = {
        "model": _shell_word(manifest["model"]),
        # The name goes in a comment line (one line, nothing to run) and, quoted, in a variable.
        "model_name": " ".join(bundle.grant.variant.name.split()),
        "model_name_word": _shell_word(bundle.grant.variant.name),
        "has_checklist": any(entry["name"] == "checklist.chk" for entry in manifest["files"]),
        "expires_at": f"{bundle.expires_at:%Y-%m-%d %H:%M} UTC",
        "grants_url": _shell_word(svc.grants_page_url(request)),
        "files": [
            {
                "name": _shell_word(entry["name"]),
                "url": _shell_word(entry["url"]),
                "size": int(entry["size"]),
                "sha256": _shell_word(entry["sha256"]),
                "md5": entry["md5"],
            }
            for entry in manifest["files"]
        ],
    }
    svc.download_event_record(request=request, status_code=200, outcome="script", bundle=bundle)
    response = HttpResponse(
        render_to_string("access/downloads/download.sh", context), content_type="text/x-shellscript; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="download.sh"'
    return _no_store(response)


@browserless
@csrf_exempt
def bundle_manifest(request, token: str):
    bundle, refusal = _bundle_request(request, token)
    if refusal is not None:
        return refusal
    svc.download_event_record(request=request, status_code=200, outcome="manifest", bundle=bundle)
    response = HttpResponse(
        json.dumps(svc.bundle_manifest(bundle, request), indent=2) + "\n", content_type="application/json"
    )
    response["Content-Disposition"] = 'inline; filename="manifest.json"'
    return _no_store(response)
