from rest_framework.pagination import PageNumberPagination


class PortalPagination(PageNumberPagination):
    """`{"count", "next", "previous", "results"}` as API.md fixes it."""

    page_size_query_param = "page_size"
    max_page_size = 200
