"""The download gateway, ``/dl/...``: the URLs handed to researchers.

No session, cookie or CSRF token is needed: the signed token in the path is the
credential. Every request, good or bad, is logged as a ``DownloadEvent``. Errors
answer in plain text saying what to do next, with ``Cache-Control: no-store``.

Local storage: the file is streamed with single-range support (or handed to nginx
with X-Accel-Redirect when DOWNLOAD_ACCEL_REDIRECT_PREFIX is set). S3: a 302 to a
presigned GET, valid DOWNLOAD_PRESIGNED_URL_SECONDS at most.

A link to a recipient's marked copy (access.distribution.fingerprints) is always sent by the
portal, whatever the storage: the original's bytes by sendfile (local, under gunicorn) or ranged
reads (S3), the marked pages and CRCs made on the way. The bundle's checklist.chk is then the
recipient's own, made from their copies' md5s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import ssl
import time
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from access.audit.services import request_client_ip
from access.distribution import bundles, events, fingerprints, leak, rules, tokens
from access.distribution.gateway import counting, links
from access.distribution.gateway.streaming import (
    MARKED_WINDOW_BYTES,
    STREAM_BLOCK_BYTES,
    FilePart,
    MarkedStream,
    content_disposition,
    cork,
    parse_range,
    range_header_canonical,
)
from access.distribution.models import FORMATS, weight_file_format
from access.distribution.storage import StorageError, weight_storage
from portal.middleware import browserless

logger = logging.getLogger(__name__)


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _plain(status: int, message: str, request) -> HttpResponse:
    # Only refusals point to the grants page; reversing and building its URL is not free.
    if "{grants}" in message:
        message = message.replace("{grants}", tokens.grants_page_url(request))
    body = message + "\n"
    response = HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")
    if status == 405:
        response["Allow"] = "GET, HEAD"
    return _no_store(response)


def _refuse(request, outcome: rules.DownloadOutcome, *, link=None, bundle=None, network=None) -> HttpResponse:
    events.download_event_record(
        request=request, status_code=outcome.status, outcome=outcome.name, link=link, bundle=bundle, network=network
    )
    return _plain(outcome.status, outcome.message, request)


METHOD_NOT_ALLOWED = rules.DownloadOutcome("method_not_allowed", 405, "Download links answer GET and HEAD only.")
WRONG_NAME = rules.DownloadOutcome(
    "wrong_name", 404, "This link is for another file name. Copy the whole link, or create new links on {grants}."
)
RANGE_NOT_SATISFIABLE = rules.DownloadOutcome("range_not_satisfiable", 416)
REDIRECTED = rules.DownloadOutcome("redirected", 302)
SERVED = rules.DownloadOutcome("served", 200)
ACCEL_REDIRECTED = rules.DownloadOutcome("accel_redirect", 200)
STORAGE_ERROR = rules.DownloadOutcome(
    "storage_error",
    503,
    "The file is unavailable right now; try again in a few minutes. Your download was not counted.",
)


CHECKSUMS_PREPARING = rules.DownloadOutcome("checksums_preparing", 503)
COPY_KEY_RETIRED = rules.DownloadOutcome(
    "copy_key_retired",
    410,
    "These links were made for a copy this portal no longer makes. Create new links on {grants}. "
    "Your download was not counted.",
)
COPY_OUTDATED = rules.DownloadOutcome(
    "copy_outdated",
    410,
    "This file was updated after your links were made. Create new links on {grants}: they send the new "
    "version. Your download was not counted.",
)


TOO_MANY_UNKNOWN = rules.DownloadOutcome(
    "too_many_unknown",
    429,
    "Too many requests for links that do not exist came from your network. Wait a minute, then copy the "
    "whole link, or create new links on {grants}.",
)


def _refuse_unknown(request, ip, network) -> HttpResponse:
    """The answer for a token that names no link. Each network's first
    DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE such requests a minute are logged; past that it is told to
    wait (429), unlogged. Past DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE_TOTAL a minute from all
    networks together, further ones are answered but not logged. Counted in the cache; if the
    cache is down, every request is logged as before."""
    minute = int(time.time() // 60)
    try:
        per_network = _count_this_minute(f"dl-unknown:{network}:{minute}")
        within = per_network <= settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE
        total = _count_this_minute(f"dl-unknown:*:{minute}") if within else 0
    except Exception:  # the cache is down: log as usual rather than fail
        logger.warning("gateway: cache unavailable; logging an unknown-link request unthrottled", exc_info=True)
        per_network = total = 0
    if per_network > settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE:
        if per_network == settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE + 1:
            logger.warning("gateway: network %s passed the unknown-link limit this minute; no longer logged", network)
        response = _plain(TOO_MANY_UNKNOWN.status, TOO_MANY_UNKNOWN.message, request)
        response["Retry-After"] = str(60 - int(time.time()) % 60)
        return response
    if total > settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE_TOTAL:
        if total == settings.DOWNLOAD_UNKNOWN_LINK_LOG_PER_MINUTE_TOTAL + 1:
            logger.warning("gateway: unknown-link requests passed the site-wide limit this minute; no longer logged")
        return _plain(rules.UNKNOWN.status, rules.UNKNOWN.message, request)
    return _refuse_link(request, rules.UNKNOWN, None, ip, network)


def _count_this_minute(key: str) -> int:
    cache.add(key, 0, timeout=120)
    return cache.incr(key)


def _refuse_link(request, outcome: rules.DownloadOutcome, link, ip, network) -> HttpResponse:
    counting.gateway_event_record(request=request, link=link, outcome=outcome, ip=ip, network=network)
    return _plain(outcome.status, outcome.message, request)


class _Take:
    """Reserves this request's bytes against the link's allowance and logs it, once:
    download_take, or, when the one-statement path already reserved the whole file and logged
    the request, a stand-in that only gives it back if storage then fails. ``counted_event`` is
    the logged event of a reservation still held, so that an unexpected error before any byte is
    sent can give it back, and a stream that ends short can give back what it did not send."""

    def __init__(self, request, link, ip: str | None, network: str, reserve_bytes: int, taken_event_id=None):
        self.request, self.link, self.ip, self.network = request, link, ip, network
        self.reserve_bytes = reserve_bytes
        self.already_taken = taken_event_id is not None
        self.counted_event = taken_event_id

    def __call__(self, *, served, bytes_sent=None, failure=None):
        if not self.already_taken:
            outcome, counted, event_id = counting.download_take(
                link=self.link, request=self.request, ip=self.ip, network=self.network,
                reserve_bytes=self.reserve_bytes, served=served, bytes_sent=bytes_sent, failure=failure,
            )  # fmt: skip
            self.counted_event = event_id if counted else None
            return outcome, counted, event_id
        event_id = self.counted_event
        if failure is not None:
            self.give_back(failure)
            return failure, False, event_id
        return rules.ALLOWED, True, event_id

    def give_back(self, outcome: rules.DownloadOutcome) -> None:
        if self.counted_event is not None:
            counting.download_give_back(self.link, self.counted_event, outcome, self.reserve_bytes)
            self.counted_event = None

    def stream_ended(self, *, planned: int, sent: int | None, event_id: int) -> None:
        """A stream closed: if the server reported how far it got and that is short of what was
        planned (the client went away), log the bytes really sent and give the rest back."""
        if sent is None or sent >= planned:
            return
        events.download_event_bytes_sent(event_id, sent)
        if self.counted_event == event_id:
            counting.download_bytes_give_back(
                link_id=self.link.id, file_size=self.link.file_size, unsent_bytes=planned - sent
            )


def _serve(
    request, link, storage, byte_range, take: _Take, range_header: str = "", made: bytes | None = None
) -> HttpResponse:
    """``byte_range``: the (first, last) to send, None for the whole file; ``range_header``: the
    client's Range header it was read from; ``made``: the file's bytes when the portal made them
    (the recipient's checklist)."""
    try:
        if made is not None:
            return _serve_made(request, link, made, byte_range, take)
        if link.copy_id is not None:
            # A marked link never falls back to the file as published: no copy, no bytes.
            if not link.copy_current:
                outcome, _, _ = take(served=SERVED, failure=COPY_OUTDATED)
                return _plain(outcome.status, outcome.message, request)
            try:
                marked = fingerprints.copy_marked_file(
                    grant_id=link.grant_id, key_id=link.copy_key_id, file_id=link.file_id, file_name=link.file_name,
                    file_sha256=link.file_sha256, storage_key=link.file_storage_key, crcs=link.copy_crcs,
                )  # fmt: skip
            except LookupError:  # its master key was dropped from FINGERPRINT_KEYS
                logger.exception("gateway: cannot make copy %s of %s", link.copy_id, link.file_name)
                outcome, _, _ = take(served=SERVED, failure=COPY_KEY_RETIRED)
                return _plain(outcome.status, outcome.message, request)
            if marked is None:
                logger.error("gateway: copy %s of %s cannot be made; refusing it", link.copy_id, link.file_name)
                outcome, _, _ = take(served=SERVED, failure=STORAGE_ERROR)
                return _plain(outcome.status, outcome.message, request)
            return _serve_marked(request, link, storage, marked, byte_range, take)
        if storage.name != "s3" or request.method == "HEAD":
            # A HEAD is answered here, whatever the storage: a presigned GET in answer to a HEAD
            # would be a whole copy that no GET paid for.
            return _serve_local(request, link, storage, byte_range, take)
        signed_range = range_header_canonical(range_header) if byte_range else None
        return _redirect_to_storage(request, link, storage, signed_range, take)
    except Exception:
        # Nothing was sent: the download must not stay used (the error is reported as usual).
        take.give_back(STORAGE_ERROR)
        raise


def _range_headers(link, byte_range, size: int, etag: str) -> dict:
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": content_disposition(link.file_name),
        "Cache-Control": "no-store",
    }
    if byte_range:
        headers["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{size}"
    return headers


def _serve_marked(request, link, storage, marked, byte_range, take) -> HttpResponse:
    """The recipient's marked copy, made while it is sent (see MarkedStream)."""
    size = link.file_size
    first, last = byte_range if byte_range else (0, size - 1)
    length = max(last - first + 1, 0)
    status = 206 if byte_range else 200
    headers = _range_headers(link, byte_range, size, link.etag)
    if marked.size != size:
        outcome, _, _ = take(served=SERVED, failure=STORAGE_ERROR)
        logger.error("gateway: %s's stored layout (%d bytes) does not match the file (%d)", link.file_name,
                     marked.size, size)  # fmt: skip
        return _plain(outcome.status, outcome.message, request)
    if request.method == "HEAD":
        take(served=rules.DownloadOutcome("head", status), bytes_sent=0)
        response = HttpResponse(status=status, content_type="application/octet-stream", headers=headers)
        response["Content-Length"] = str(length)
        return response
    local_path = None
    try:
        if storage.name == "local":
            local_path = storage.path(link.file_storage_key)
            if not local_path.is_file():
                raise StorageError(f"{local_path} is missing")
    except StorageError:
        outcome, _, _ = take(served=SERVED, failure=STORAGE_ERROR)
        return _plain(outcome.status, outcome.message, request)
    outcome, _, event_id = take(
        served=rules.DownloadOutcome("partial" if byte_range else SERVED.name, status), bytes_sent=length
    )
    if not outcome.allowed:
        return _plain(outcome.status, outcome.message, request)
    if link.copy_crcs is None and marked.crcs_needed(first, last + 1):
        # A Range that reaches the CRCs before the checksum task recorded them: computed here,
        # from the marked pages alone, and recorded.
        marked.crcs()
        fingerprints.copy_crcs_record(link.copy_id, link.file_sha256, marked)

    def closed(stream: MarkedStream) -> None:
        take.stream_ended(planned=length, sent=stream.bytes_sent, event_id=event_id)

    # Written to the client socket directly only where gunicorn hands over a plain TCP socket: a
    # TLS one (gunicorn's --certfile) would get plaintext past its encryption.
    raw_socket = request.META.get("gunicorn.socket")
    direct = local_path is not None and raw_socket is not None and not isinstance(raw_socket, ssl.SSLSocket)
    sock = cork(request) if direct else None
    stream = MarkedStream(
        marked, first, last + 1, closed, sock=sock, local_path=local_path if sock is not None else None,
        window=MARKED_WINDOW_BYTES.get(storage.name, 1 << 20),
    )  # fmt: skip
    response = StreamingHttpResponse(stream, status=status, content_type="application/octet-stream", headers=headers)
    response["Content-Length"] = str(length)
    return response


def _serve_made(request, link, made: bytes, byte_range, take) -> HttpResponse:
    """Bytes the portal made for this recipient (their checklist.chk), whole or a Range."""
    size = len(made)
    first, last = byte_range if byte_range else (0, size - 1)
    status = 206 if byte_range else 200
    headers = _range_headers(link, byte_range, size, made_etag(made))
    body = made[first : last + 1]
    if request.method == "HEAD":
        take(served=rules.DownloadOutcome("head", status), bytes_sent=0)
        response = HttpResponse(status=status, content_type="application/octet-stream", headers=headers)
        response["Content-Length"] = str(len(body))
        return response
    outcome, _, _ = take(
        served=rules.DownloadOutcome("partial" if byte_range else SERVED.name, status), bytes_sent=len(body)
    )
    if not outcome.allowed:
        return _plain(outcome.status, outcome.message, request)
    return HttpResponse(body, status=status, content_type="application/octet-stream", headers=headers)


def made_etag(made: bytes) -> str:
    return f'"{hashlib.sha256(made).hexdigest()}"'


def _served_outcome(storage) -> rules.DownloadOutcome:
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
        "ETag": link.etag,
        "Content-Disposition": content_disposition(link.file_name),
        "Cache-Control": "no-store",
    }
    if byte_range:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"

    if request.method == "HEAD":
        outcome, _, _ = take(served=rules.DownloadOutcome("head", status), bytes_sent=0)
        response = HttpResponse(status=status, content_type="application/octet-stream", headers=headers)
        response["Content-Length"] = str(length)
        return response

    if settings.DOWNLOAD_ACCEL_REDIRECT_PREFIX:
        # nginx sends the bytes (and answers the Range itself); the portal only decided and counted.
        outcome, _, _ = take(served=rules.DownloadOutcome(ACCEL_REDIRECTED.name, status))
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
        served=rules.DownloadOutcome("partial" if byte_range else SERVED.name, status),
        bytes_sent=length,
        failure=STORAGE_ERROR if raw is None else None,
    )
    if not outcome.allowed:
        if raw is not None:
            raw.close()
        return _plain(outcome.status, outcome.message, request)

    def closed(part: FilePart) -> None:
        take.stream_ended(planned=length, sent=part.bytes_sent, event_id=event_id)

    part = FilePart(raw, length, closed, corked=cork(request))
    response = FileResponse(part, status=status, content_type="application/octet-stream", headers=headers)
    response.block_size = STREAM_BLOCK_BYTES
    response["Content-Length"] = str(length)
    return response


@browserless
@csrf_exempt
def file_download(request, token: str, name: str):
    # A NUL cannot be in a file name, and PostgreSQL refuses it in text: such a name simply
    # matches no file.
    return _link_request(request, tokens.link_public_id(token), name.replace("\x00", "\ufffd"))


def _link_request(request, public_id: str | None, name: str) -> HttpResponse:
    """A request for one link's file (public_id None: not a link), decided, counted, logged and
    served: every way to a file (/dl/, the wildcard URL) comes through here."""
    ip = request_client_ip(request)
    network = events.client_network(ip)
    now = timezone.now()
    storage = weight_storage()
    taken_event_id = None
    if public_id is None:
        link = None
    elif request.method == "GET" and "HTTP_RANGE" not in request.META and counting.gateway_fast_path_available():
        served = _served_outcome(storage)
        link, taken_event_id = counting.gateway_link_load_and_take(
            public_id, name=name, request=request, ip=ip, network=network, now=now, served=served,
            log_file_size=served is SERVED,
        )  # fmt: skip
    else:
        link = links.gateway_link_load(public_id, network=network, now=now)

    if taken_event_id is not None:
        # Taken by the one-statement path; the rules below are still the ones that decide.
        take = _Take(request, link, ip, network, link.file_size, taken_event_id)
        outcome = WRONG_NAME if name != link.file_name else links.gateway_authorize(link)
        if not outcome.allowed:
            take.give_back(outcome)
            return _plain(outcome.status, outcome.message, request)
        made = None
        if link.file_name == fingerprints.CHECKLIST:
            try:
                made = fingerprints.recipient_checklist(link.bundle_id)
            except fingerprints.ChecksumsPreparing as exc:
                take.give_back(CHECKSUMS_PREPARING)
                return _preparing(request, exc)
        if ((link.copy_id is not None and link.copy_current) or made is not None) and served is not SERVED:
            # Logged as the storage would have sent it; the portal sends this copy itself.
            events.download_event_served_by_portal(taken_event_id, link.file_size)
        return _serve(request, link, storage, None, take, made=made)

    if link is None:
        # Not a link at all: guessed or mangled tokens. Logged up to a rate, so junk cannot grow
        # the log without bound.
        return _refuse_unknown(request, ip, network)
    if request.method not in ("GET", "HEAD"):
        return _refuse_link(request, METHOD_NOT_ALLOWED, link, ip, network)
    if name != link.file_name:
        return _refuse_link(request, WRONG_NAME, link, ip, network)
    if network and not link.network_seen and link.bundle_suspended_at is None:
        # A network new to the grant may cross the leak limit: its check, count and log hold the
        # grant's lock, so a burst of new networks is counted one at a time.
        with leak.grant_leak_serialized(link.grant_id):
            return _decide_and_serve(request, link, storage, ip, network)
    return _decide_and_serve(request, link, storage, ip, network)


def _decide_and_serve(request, link, storage, ip: str | None, network: str) -> HttpResponse:
    link = links.gateway_leak_check(link, network=network)
    outcome = links.gateway_authorize(link)
    if not outcome.allowed:
        return _refuse_link(request, outcome, link, ip, network)

    size, etag, made = link.file_size, link.etag, None
    if link.file_name == fingerprints.CHECKLIST:
        try:
            made = fingerprints.recipient_checklist(link.bundle_id)
        except fingerprints.ChecksumsPreparing as exc:
            counting.gateway_event_record(
                request=request, link=link, outcome=CHECKSUMS_PREPARING, ip=ip, network=network
            )
            return _preparing(request, exc)
        if made is not None:
            size, etag = len(made), made_etag(made)
    range_header = request.META.get("HTTP_RANGE", "")
    if_range = request.META.get("HTTP_IF_RANGE")
    if range_header and if_range is not None and if_range.strip() != etag:
        range_header = ""  # the client's partial copy is of another file version: send it whole
    byte_range = parse_range(range_header, size)
    if byte_range is False:
        # Nothing to send, so nothing to count: usually a client whose copy is already complete.
        counting.gateway_event_record(request=request, link=link, outcome=RANGE_NOT_SATISFIABLE, ip=ip, network=network)
        response = _plain(416, f"The file has {size} bytes; the range asked for starts past its end.", request)
        response["Content-Range"] = f"bytes */{size}"
        return response

    length = byte_range[1] - byte_range[0] + 1 if byte_range else size
    take = _Take(request, link, ip, network, length)
    return _serve(request, link, storage, byte_range, take, range_header, made=made)


def _preparing(request, exc: Exception) -> HttpResponse:
    response = _plain(CHECKSUMS_PREPARING.status, str(exc), request)
    response["Retry-After"] = "30"
    return response


def _redirect_to_storage(request, link, storage, range_header: str | None, take) -> HttpResponse:
    # The client's Range is signed into the URL as the client sent it (it sends it again to
    # storage), so storage serves exactly the bytes reserved for it and refuses the URL for any
    # other request.
    try:
        url = storage.presigned_get_url(
            link.file_storage_key,
            filename=link.file_name,
            expires_in=settings.DOWNLOAD_PRESIGNED_URL_SECONDS,
            byte_range=range_header,
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


def _bundle_manifest(request, bundle):
    """(bundle, its manifest, None) when the rules let this request use the bundle and its
    recipient's checksums are ready, else (bundle, None, the response to send): what the
    script, the manifest and the Meta-style checklists are made from."""
    bundle, refusal = _bundle_checked(request, bundle)
    if refusal is not None:
        return bundle, None, refusal
    try:
        return bundle, bundles.bundle_manifest(bundle, request), None
    except fingerprints.ChecksumsPreparing as exc:
        events.download_event_record(request=request, status_code=503, outcome=CHECKSUMS_PREPARING.name, bundle=bundle)
        return bundle, None, _preparing(request, exc)


def _bundle_checked(request, bundle):
    """The bundle if the rules let this request use it (method, leak rule, bundle state), or the
    error response to send."""
    if request.method not in ("GET", "HEAD"):
        return None, _refuse(request, METHOD_NOT_ALLOWED, bundle=bundle)
    if bundle is not None:
        leak.bundle_leak_check(bundle, network=events.client_network(request_client_ip(request)))
    outcome = rules.bundle_authorize(bundle=bundle, request=request)
    if not outcome.allowed:
        return None, _refuse(request, outcome, bundle=bundle)
    return bundle, None


def _shell_word(value: str) -> str:
    return shlex.quote(str(value))


@browserless
@csrf_exempt
def bundle_script(request, token: str):
    bundle, manifest, refusal = _bundle_manifest(request, tokens.bundle_from_token(token))
    if refusal is not None:
        return refusal
    present = {weight_file_format(entry["name"]) for entry in manifest["files"]}
    formats = tuple(name for name in FORMATS if name in present)
    context = {
        "model": _shell_word(manifest["model"]),
        # The name goes in a comment line (one line, nothing to run) and, quoted, in a variable.
        "model_name": " ".join(bundle.grant.variant.name.split()),
        "model_name_word": _shell_word(bundle.grant.variant.name),
        "has_checklist": any(entry["name"] == "checklist.chk" for entry in manifest["files"]),
        "has_hf": "hf" in formats,
        "formats_usage": "|".join(formats + (("both",) if len(formats) > 1 else ())),
        "formats_case": " | ".join(formats + (("both",) if len(formats) > 1 else ())),
        "expires_at": f"{bundle.expires_at:%Y-%m-%d %H:%M} UTC",
        "grants_url": _shell_word(tokens.grants_page_url(request)),
        "files": [
            {
                "name": _shell_word(entry["name"]),
                "url": _shell_word(entry["url"]),
                "size": int(entry["size"]),
                "sha256": _shell_word(entry["sha256"]),
                "md5": entry["md5"],
                "format": weight_file_format(entry["name"]),
            }
            for entry in manifest["files"]
        ],
    }
    events.download_event_record(request=request, status_code=200, outcome="script", bundle=bundle)
    response = HttpResponse(
        render_to_string("access/downloads/download.sh", context), content_type="text/x-shellscript; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="download.sh"'
    return _no_store(response)


@browserless
@csrf_exempt
def bundle_manifest(request, token: str):
    bundle, manifest, refusal = _bundle_manifest(request, tokens.bundle_from_token(token))
    if refusal is not None:
        return refusal
    events.download_event_record(request=request, status_code=200, outcome="manifest", bundle=bundle)
    response = HttpResponse(json.dumps(manifest, indent=2) + "\n", content_type="application/json")
    response["Content-Disposition"] = 'inline; filename="manifest.json"'
    return _no_store(response)


# --- Meta's download.sh: one URL with a "*" --------------------------------------------------

TOKENIZER = "tokenizer.model"
TOKENIZER_CHECKLIST = "tokenizer_checklist.chk"
WILDCARD_FILES = re.compile(r"consolidated\.\d{2}\.pth|params\.json|checklist\.chk")


@browserless
@csrf_exempt
def wildcard_download(request, token: str, path: str):
    """``/dl/w/<token>/<path>``: the bundle's files under the paths Meta's February 2023 download.sh
    puts in place of the ``*`` of its URL: ``tokenizer.model``, ``tokenizer_checklist.chk`` and
    ``<FOLDER>/consolidated.NN.pth``, ``<FOLDER>/params.json``, ``<FOLDER>/checklist.chk``. Each file
    goes through the same checks, counting and log as its own link."""
    bundle = tokens.bundle_from_token(token)
    if bundle is None:
        ip = request_client_ip(request)
        return _refuse_unknown(request, ip, events.client_network(ip))
    path = path.replace("\x00", "\ufffd")
    variant = bundle.grant.variant
    folder = variant.meta_folder or variant.slug
    if path == TOKENIZER_CHECKLIST:
        return _folder_checklist(request, bundle, only={TOKENIZER}, name=TOKENIZER_CHECKLIST)
    if path == TOKENIZER:
        name = TOKENIZER
    else:
        head, _, name = path.partition("/")
        if head != folder or not WILDCARD_FILES.fullmatch(name):
            return _refuse(request, _wildcard_unknown_path(folder), bundle=bundle)
        if name == fingerprints.CHECKLIST:
            # Meta's folder of a size holds its shards and params.json; the tokenizer sits above it.
            return _folder_checklist(request, bundle, exclude={TOKENIZER}, name=fingerprints.CHECKLIST)
    public_id = bundle.links.filter(file__name=name).values_list("public_id", flat=True).first()
    if public_id is None:
        return _refuse(request, _wildcard_unknown_path(folder), bundle=bundle)
    return _link_request(request, public_id, name)


def _wildcard_unknown_path(folder: str) -> rules.DownloadOutcome:
    return rules.DownloadOutcome(
        "wrong_name",
        404,
        f"This URL serves tokenizer.model, tokenizer_checklist.chk and {folder}/consolidated.NN.pth, "
        f"{folder}/params.json and {folder}/checklist.chk: in Meta's download.sh set MODEL_SIZE=\"{folder}\".",
    )


def _folder_checklist(request, bundle, *, name: str, only: set[str] | None = None, exclude=frozenset()):
    """A checklist in md5sum format of some of the bundle's files (their recipient's own md5s), as
    Meta's script expects beside them: tokenizer_checklist.chk, or a size folder's checklist.chk.
    Counts nothing: it holds no weights."""
    bundle, manifest, refusal = _bundle_manifest(request, bundle)
    if refusal is not None:
        return refusal
    entries = [
        entry for entry in manifest["files"]
        if entry["name"] != fingerprints.CHECKLIST and entry["name"] not in exclude
        and weight_file_format(entry["name"]) == "meta" and (only is None or entry["name"] in only)
    ]  # fmt: skip
    body = "".join(f"{entry['md5']}  {entry['name']}\n" for entry in entries).encode()
    events.download_event_record(request=request, status_code=200, outcome="checklist", bundle=bundle)
    response = HttpResponse(b"" if request.method == "HEAD" else body, content_type="application/octet-stream")
    response["Content-Length"] = str(len(body))
    response["Content-Disposition"] = content_disposition(name)
    return _no_store(response)
