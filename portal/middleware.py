"""A short request path for views that serve programs rather than people in browsers.

Download links are fetched by wget, curl and download.sh, many times a second at peak, with the
credential in the URL. They use no session, login, CSRF token, flash message or
Content-Security-Policy, yet the middleware that provides those costs about a quarter of such a
request's CPU time. ``BrowserlessViewMiddleware`` sits right after SecurityMiddleware (whose
HTTPS redirect and headers still apply) and hands a request for a view marked ``@browserless``
straight to that view; every other request goes on through the whole stack.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.urls import Resolver404, resolve

_MARK = "serves_programs_only"


def browserless(view: Callable) -> Callable:
    """Mark a view as needing none of the browser middleware (sessions, authentication, CSRF,
    messages, account state, CSP). Only takes effect under a prefix in BROWSERLESS_PATH_PREFIXES,
    so the URL resolver runs once per request everywhere else."""
    setattr(view, _MARK, True)
    return view


class BrowserlessViewMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.prefixes = tuple(settings.BROWSERLESS_PATH_PREFIXES)

    def __call__(self, request):
        if self.prefixes and request.path_info.startswith(self.prefixes):
            try:
                match = resolve(request.path_info)
            except Resolver404:
                match = None  # the whole stack answers with the site's 404 page
            if match is not None and getattr(match.func, _MARK, False):
                request.resolver_match = match
                # An exception here is turned into the site's error response by Django's handler,
                # as for any view.
                return match.func(request, *match.args, **match.kwargs)
        return self.get_response(request)
