from django.core.management.base import BaseCommand

from access.catalog.seed import catalog_seed_llama


class Command(BaseCommand):
    help = "Create the LLaMA family, its variants and license 1.0. Safe to run again: existing rows are kept."

    def handle(self, *args, **options):
        family = catalog_seed_llama()
        variants = ", ".join(family.variants.values_list("slug", flat=True))
        self.stdout.write(self.style.SUCCESS(f"Catalog ready: {family.name} ({variants})"))
