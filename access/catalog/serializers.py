"""The catalog's API shapes: variants, licenses and a license reference."""

from rest_framework import serializers

from access.catalog.models import LicenseVersion, ModelVariant
from access.grants.selectors import ACCESS_STATES


class LicenseRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = LicenseVersion
        fields = ["id", "version", "sha256"]


class LicenseSerializer(serializers.ModelSerializer):
    family = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = LicenseVersion
        fields = ["id", "family", "version", "title", "sha256", "text", "effective_at"]


class ModelVariantSerializer(serializers.ModelSerializer):
    family = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    access = serializers.SerializerMethodField()

    class Meta:
        model = ModelVariant
        fields = ["slug", "name", "family", "parameters", "training_tokens", "sandbox", "approvals_required", "access"]

    def get_access(self, variant) -> serializers.ChoiceField(choices=ACCESS_STATES):  # type: ignore[valid-type]
        return self.context["access"].get(variant.slug, "none")


class ModelVariantDetailSerializer(ModelVariantSerializer):
    license = serializers.SerializerMethodField()

    class Meta(ModelVariantSerializer.Meta):
        fields = [*ModelVariantSerializer.Meta.fields, "model_card", "license"]

    def get_license(self, variant) -> LicenseRefSerializer(allow_null=True):  # type: ignore[valid-type]
        current = self.context["licenses"].get(variant.family_id)
        return LicenseRefSerializer(current).data if current else None


UNKNOWN_VARIANT_MESSAGE = "No model named “{value}”. GET /api/v1/models lists the models you can request."
UNKNOWN_LICENSE_MESSAGE = "No license with id {pk_value}. GET /api/v1/models/{{slug}} shows the license in force."


def variant_slugs_field(*, listed_only: bool = True, **kwargs) -> serializers.ManyRelatedField:
    # Applicants pick among listed models; reviewers may name any requested one, even if unlisted since.
    variants = ModelVariant.objects.filter(is_listed=True) if listed_only else ModelVariant.objects.all()
    return serializers.SlugRelatedField(
        many=True,
        slug_field="slug",
        queryset=variants,
        error_messages={"does_not_exist": UNKNOWN_VARIANT_MESSAGE},
        **kwargs,
    )
