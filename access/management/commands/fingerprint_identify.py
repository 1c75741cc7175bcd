"""`fingerprint_identify --variant SLUG --suspect PATH [--json]`: name the grant a leaked copy came from."""

import json

from django.core.management.base import BaseCommand, CommandError

from access.catalog.models import ModelVariant
from access.distribution.identify import IdentifyError, fingerprint_identify

SHOWN = 10


class Command(BaseCommand):
    help = (
        "Score every grant ever issued for a variant against a suspect copy of its weights (Meta's layout, or "
        "transformers' with q/k rows permuted; float16, bfloat16 or float32; a folder or single files) and say "
        "whose copy it is: z >= 10 accuses, with the chance of a false accusation printed beside it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--variant", required=True, help="slug of the model variant, e.g. llama-7b")
        parser.add_argument("--suspect", required=True, help="the suspect checkpoint: a folder or a file")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")

    def handle(self, *args, variant, suspect, as_json: bool = False, **options):
        found = ModelVariant.objects.filter(slug=variant).first()
        if found is None:
            known = ", ".join(ModelVariant.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"Unknown variant {variant!r}. Known variants: {known}.")
        if options.get("verbosity", 1) and not as_json:
            self.stderr.write(f"Reading {suspect} and scoring the grants of {found.slug}...")
        try:
            result = fingerprint_identify(variant=found, suspect=suspect)
        except IdentifyError as exc:
            raise CommandError(str(exc)) from exc
        if as_json:
            self.stdout.write(json.dumps(result.as_json()))
            return
        lines = [f"{'GRANT':>7}  {'Z':>9}  USER"]
        for entry in result.candidates[:SHOWN]:
            lines.append(f"{entry['grant']:>7}  {entry['z']:>9.1f}  {entry['user']}")
        if len(result.candidates) > SHOWN:
            lines.append(f"... and {len(result.candidates) - SHOWN} more grants, all lower")
        self.stdout.write("\n".join(lines))
        if result.keys_missing:
            self.stderr.write(self.style.WARNING(
                f"Copies marked with keys no longer in FINGERPRINT_KEYS ({', '.join(result.keys_missing)}) were not "
                "scored: list those keys again (after the current one) to score them."
            ))  # fmt: skip
        for entry in result.exact_copy_of:
            self.stdout.write(f"{entry['file']} is byte for byte grant {entry['grant']}'s copy ({entry['user']}).")
        bound = f"{result.false_positive_bound:.1e}"
        if result.accused:
            accused = [entry for entry in result.candidates if entry["grant"] in result.accused]
            names = ", ".join(f"grant {entry['grant']} ({entry['user']})" for entry in accused)
            self.stdout.write(self.style.WARNING(
                f"Accused (z >= {result.threshold:g}): {names}. The chance that any grant whose marks are not in "
                f"this copy scores that high is below {bound}."
            ))  # fmt: skip
        else:
            self.stdout.write(
                f"No grant reaches z >= {result.threshold:g}: this copy carries no mark of any grant "
                f"({result.tensors_compared} tensors compared)."
            )
