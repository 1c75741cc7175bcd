import factory
from allauth.account.models import EmailAddress

from access.catalog.models import ModelFamily, ModelVariant
from portal import roles
from portal.models import User
from portal.services import user_role_set

TEST_PASSWORD = "a-long-test-password-1"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@uni{n}.example.edu")
    password = factory.django.Password(TEST_PASSWORD)

    @factory.post_generation
    def verified_email(user, create, extracted, **kwargs):
        if create:
            EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=extracted is not False)

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        if create:
            user_role_set(user=user, role=extracted or roles.RESEARCHER)


class ModelFamilyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelFamily
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"family-{n}")
    name = factory.Sequence(lambda n: f"Family {n}")


class ModelVariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVariant

    family = factory.SubFactory(ModelFamilyFactory)
    slug = factory.Sequence(lambda n: f"model-{n}b")
    name = factory.Sequence(lambda n: f"Model {n}B")
    parameters = 7_000_000_000
    training_tokens = 1_000_000_000_000
    model_card = "# A model\n\nFor research."
