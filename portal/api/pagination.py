from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class PortalPagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}` as docs/api.md fixes it."""

    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        # A page number that is not a number is bad input (400); a page past the end is absent (404).
        for param in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(param)
            if value is not None and value != "last" and not (value.isdigit() and int(value) > 0):
                raise ValidationError({param: ["Must be a positive whole number."]})
        return super().paginate_queryset(queryset, request, view)
