"""A short request path for views that serve programs rather than people in browsers.

Download links are fetched by wget, curl and download.sh, many times a second at peak, with the
credential in the URL. They use no session, login, CSRF token, flash message, static file or
Content-Security-Policy, yet the middleware that provides those (sessions, authentication, CSRF,
messages, allauth's account state, whitenoise, CSP, CommonMiddleware) cost about 0.2 ms, a third
of such a request's CPU time in the worker. ``BrowserlessViewMiddleware`` sits right after
SecurityMiddleware (whose HTTPS redirect and headers still apply) and hands a request for a view
registered with ``@browserless`` straight to that view; every other request goes on through the
whole stack.

What the skipped middleware did that such views still need is done here: the Host header is
checked against ALLOWED_HOSTS, and responses get Content-Length and X-Frame-Options. The view is
called as Django's handler would call a plain function view; the project does not use
ATOMIC_REQUESTS, view middleware (process_view) or template responses on these views, which this
path does not provide.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import Resolver404, resolve

# The views themselves, not a mark on them: functools.wraps copies attributes, so a view later
# wrapped in, say, login_required would otherwise inherit a mark its wrapper has no right to.
_BROWSERLESS_VIEWS: set[Callable] = set()


def browserless(view: Callable) -> Callable:
    """Register a view as needing none of the browser middleware. Only takes effect under a
    prefix in BROWSERLESS_PATH_PREFIXES, so the URL resolver runs once per request everywhere
    else. Put it outermost: the registered object is the one the URL pattern calls."""
    _BROWSERLESS_VIEWS.add(view)
    return view


class BrowserlessViewMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.prefixes = tuple(settings.BROWSERLESS_PATH_PREFIXES)
        if self.prefixes and any(database.get("ATOMIC_REQUESTS") for database in settings.DATABASES.values()):
            raise ImproperlyConfigured("BrowserlessViewMiddleware does not run views in ATOMIC_REQUESTS transactions")

    def __call__(self, request):
        if self.prefixes and request.path_info.startswith(self.prefixes):
            try:
                match = resolve(request.path_info)
            except Resolver404:
                match = None  # the whole stack answers with the site's 404 page
            if match is not None and match.func in _BROWSERLESS_VIEWS:
                # As CommonMiddleware would: a Host outside ALLOWED_HOSTS is refused (400) before
                # the view counts or logs anything.
                request.get_host()
                request.resolver_match = match
                # An exception in the view becomes the site's error response in Django's handler.
                response = match.func(request, *match.args, **match.kwargs)
                if not response.streaming and not response.has_header("Content-Length"):
                    response.headers["Content-Length"] = str(len(response.content))
                response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
                return response
        return self.get_response(request)
