"""The Hub-compatible read endpoint (mounted at /hub/). See access.distribution.hub."""

from django.urls import path

from access.distribution import hub

urlpatterns = [
    path("api/models/<str:namespace>/<str:name>", hub.model_info, name="hub-model"),
    path("api/models/<str:namespace>/<str:name>/revision/<str:revision>", hub.model_info, name="hub-model-revision"),
    path("api/models/<str:namespace>/<str:name>/tree/<str:revision>", hub.model_tree, name="hub-tree"),
    path("api/models/<str:namespace>/<str:name>/tree/<str:revision>/<path:path>", hub.model_tree),
    path("<str:namespace>/<str:name>/resolve/<str:revision>/<path:filename>", hub.resolve, name="hub-resolve"),
]
