"""`publish_weights --variant SLUG --source DIR [--formats meta,hf]`: put a checkpoint folder (and its
conversion to transformers' layout) into weight storage."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from access.catalog.models import ModelVariant
from access.distribution.publishing import WeightsPublishError, formats_parse, weights_publish
from access.distribution.storage import StorageError


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Command(BaseCommand):
    help = (
        "Publish a Meta-format checkpoint folder (params.json, consolidated.NN.pth, tokenizer.model) as a "
        "variant's downloadable files: stores them, computes sha256 and md5, writes checklist.chk. With "
        "--formats meta,hf it also converts the checkpoint to transformers' layout (config.json, sharded "
        "safetensors, tokenizer files), shard by shard, and publishes that under hf/. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--variant", required=True, help="slug of the model variant, e.g. llama-7b")
        parser.add_argument("--source", required=True, help="folder holding the checkpoint files")
        parser.add_argument(
            "--formats",
            default="meta",
            help="comma-separated: meta (the checkpoint as it is), hf (also converted to transformers' layout, "
            "which needs free space in TMPDIR the size of the model). Default: meta.",
        )

    def handle(self, *args, variant, source, formats="meta", verbosity=1, **options):
        try:
            formats = formats_parse(formats)
        except WeightsPublishError as exc:
            raise CommandError(f"--formats: {exc}") from exc
        found = ModelVariant.objects.filter(slug=variant).first()
        if found is None:
            known = ", ".join(ModelVariant.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"Unknown variant {variant!r}. Known variants: {known} (run seed_catalog first?).")
        # tqdm redraws its line with '\r'; Django's OutputWrapper would add a newline to every write.
        stream = getattr(self.stderr, "_out", sys.stderr)

        def progress_bar(name: str, size: int):
            return tqdm(total=size, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=stream,
                        disable=verbosity == 0, dynamic_ncols=True)  # fmt: skip

        try:
            result = weights_publish(
                variant=found,
                source_dir=source,
                formats=formats,
                progress_factory=progress_bar,
                convert_progress=(lambda line: stream.write(f"Converted to transformers' layout: {line}\n"))
                if verbosity
                else None,
            )
        except (WeightsPublishError, StorageError) as exc:
            raise CommandError(str(exc)) from exc

        width = max(len(f.name) for f in result.files)
        lines = [f"{'FILE':<{width}}  {'SIZE':>10}  {'SHA256':<64}  STATUS"]
        for f in result.files:
            lines.append(f"{f.name:<{width}}  {_size(f.size):>10}  {f.sha256}  {'uploaded' if f.uploaded else 'unchanged'}")
        for name in result.removed:
            lines.append(f"{name:<{width}}  {'':>10}  {'':<64}  removed (no longer in the source)")
        for name in result.kept:
            lines.append(f"{name:<{width}}  {'':>10}  {'':<64}  kept (not in the source, but download links use it)")
        self.stdout.write("\n".join(lines))
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        self.stdout.write(
            self.style.SUCCESS(
                f"Published {len(result.files)} files ({_size(result.total_bytes)}) of {found.slug} "
                f"({' and '.join(formats)} layout{'s' if len(formats) > 1 else ''}) to "
                f"{result.storage} storage: {result.uploaded} uploaded, {result.unchanged} unchanged."
            )
        )
