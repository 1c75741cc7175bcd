"""405 answers that say what to do. Django's ``require_POST`` and friends answer a wrong method with
an empty body and only the ``Allow`` header; this fills the body in: the API's JSON error under
/api/, a short page elsewhere, both naming the allowed methods. Responses that already have a body
(the API's own, the sandbox's OpenAI-shaped ones) are left as they are, and so is /dl/, whose
answers are one line of plain text for download tools."""

from __future__ import annotations

from django.shortcuts import render

from portal.api.errors import json_error_response, method_not_allowed_message


class MethodNotAllowedBodyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code != 405 or response.streaming or response.content or request.path.startswith("/dl/"):
            return response
        allowed = [method.strip() for method in response.get("Allow", "").split(",")]
        message = method_not_allowed_message(request.method, [m for m in allowed if m and m not in ("HEAD", "OPTIONS")])
        if request.path.startswith("/api/"):
            answer = json_error_response(405, "method_not_allowed", message)
        else:
            answer = render(request, "405.html", {"message": message}, status=405)
        if response.has_header("Allow"):
            answer["Allow"] = response["Allow"]
        return answer
