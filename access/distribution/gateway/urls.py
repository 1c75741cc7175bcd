"""The download gateway (mounted at /dl/). See access.distribution.gateway."""

from django.urls import path, register_converter

from access.distribution.gateway import views as gateway


class WeightFileName:
    """A published file's name: plain, or under hf/ (the transformers-layout file set)."""

    regex = r"(?:hf/)?[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(WeightFileName, "weightfile")

urlpatterns = [
    path("b/<str:token>/download.sh", gateway.bundle_script, name="download-script"),
    path("b/<str:token>/manifest.json", gateway.bundle_manifest, name="download-manifest"),
    path("w/<str:token>/<path:path>", gateway.wildcard_download, name="download-wildcard"),
    path("<str:token>/<weightfile:name>", gateway.file_download, name="download-file"),
]
