from django.core.management.base import BaseCommand

from access.seed import llama_release_seed


class Command(BaseCommand):
    help = (
        "Create the LLaMA family, its variants, license 1.0 and the rejection templates. "
        "Safe to run again: existing rows are kept."
    )

    def handle(self, *args, **options):
        family = llama_release_seed()
        variants = ", ".join(family.variants.values_list("slug", flat=True))
        self.stdout.write(self.style.SUCCESS(f"Catalog ready: {family.name} ({variants})"))
