"""The download gateway (mounted at /dl/). See access.distribution.gateway."""

from django.urls import path

from access.distribution.gateway import views as gateway

urlpatterns = [
    path("b/<str:token>/download.sh", gateway.bundle_script, name="download-script"),
    path("b/<str:token>/manifest.json", gateway.bundle_manifest, name="download-manifest"),
    path("w/<str:token>/<path:path>", gateway.wildcard_download, name="download-wildcard"),
    path("<str:token>/<str:name>", gateway.file_download, name="download-file"),
]
