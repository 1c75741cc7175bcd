from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class PortalPagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}` as docs/api.md fixes it. ``page`` is a whole number
    from 1 (or ``last``) and ``page_size`` one from 1 to ``max_page_size``: anything else is a 400 that
    names the limit, never a silently different page; a page past the last is a 404. The schema
    documents both limits (``get_schema_operation_parameters``)."""

    page_size_query_param = "page_size"
    max_page_size = 200
    invalid_page_message = "There is no page {page_number}: the list ends before it. Start from the first page."

    def paginate_queryset(self, queryset, request, view=None):
        page = request.query_params.get(self.page_query_param)
        if page is not None and page not in self.last_page_strings and _whole_number(page) is None:
            raise ValidationError({self.page_query_param: ["Must be a page number: a whole number from 1, or 'last'."]})
        page_size = request.query_params.get(self.page_size_query_param)
        if page_size is not None and not 1 <= (_whole_number(page_size) or 0) <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"Must be a whole number from 1 to {self.max_page_size}."]}
            )
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = {parameter["name"]: parameter for parameter in super().get_schema_operation_parameters(view)}
        page = parameters[self.page_query_param]
        page["description"] = "A page number from 1 (or `last`); past the last page: 404."
        page["schema"] = {"type": "integer", "minimum": 1}
        size = parameters[self.page_size_query_param]
        size["description"] = f"Results per page, from 1 to {self.max_page_size} (default {self.page_size})."
        size["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return list(parameters.values())


def _whole_number(value: str) -> int | None:
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which int() refuses or reads differently.
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None
