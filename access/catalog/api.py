"""The catalog's API: the listed models with the caller's access state, one model, one license version."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from access.catalog.models import LicenseVersion
from access.catalog.selectors import licenses_current_by_family, variant_get_listed, variants_listed
from access.catalog.serializers import LicenseSerializer, ModelVariantDetailSerializer, ModelVariantSerializer
from access.grants.selectors import variant_access_for_user


class ModelListApi(generics.ListAPIView):
    """The catalog, with the caller's access state per variant (anonymous: ``none``)."""

    permission_classes = [AllowAny]
    serializer_class = ModelVariantSerializer
    queryset = variants_listed()

    def get_serializer_context(self):
        context = super().get_serializer_context()
        page_variants = getattr(self, "_page", None) or []
        context["access"] = variant_access_for_user(self.request.user, page_variants)
        return context

    def paginate_queryset(self, queryset):
        self._page = super().paginate_queryset(queryset)
        return self._page


class ModelDetailApi(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = ModelVariantDetailSerializer

    @extend_schema(responses=ModelVariantDetailSerializer)
    def get(self, request, slug: str):
        variant = variant_get_listed(slug)
        context = {
            "request": request,
            "access": variant_access_for_user(request.user, [variant]),
            "licenses": licenses_current_by_family([variant.family]),
        }
        return Response(ModelVariantDetailSerializer(variant, context=context).data)


class LicenseDetailApi(generics.GenericAPIView):
    permission_classes = [AllowAny]
    serializer_class = LicenseSerializer

    @extend_schema(responses=LicenseSerializer)
    def get(self, request, license_id: int):
        license_version = get_object_or_404(LicenseVersion.objects.select_related("family"), pk=license_id)
        return Response(LicenseSerializer(license_version).data)
