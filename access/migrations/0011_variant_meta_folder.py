from django.db import migrations, models

# The folders Meta's download.sh fetched each seeded size into (access.catalog.seed.META_FOLDERS).
SEEDED_FOLDERS = {"llama-7b": "7B", "llama-13b": "13B", "llama-33b": "30B", "llama-65b": "65B", "llama-demo-tiny": "tiny"}


def seeded_folders_set(apps, schema_editor):
    variants = apps.get_model("access", "ModelVariant")
    for slug, folder in SEEDED_FOLDERS.items():
        variants.objects.filter(slug=slug, meta_folder="").update(meta_folder=folder)


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0010_fingerprint_copies"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelvariant",
            name="meta_folder",
            field=models.CharField(
                blank=True,
                help_text="The folder Meta's download.sh fetches this size into (7B, 13B, 30B, 65B); empty: the slug.",
                max_length=20,
            ),
        ),
        migrations.RunPython(seeded_folders_set, migrations.RunPython.noop),
    ]
