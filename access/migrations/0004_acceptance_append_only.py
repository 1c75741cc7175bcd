"""License acceptances are evidence, like the audit log: on PostgreSQL the
database refuses UPDATE and DELETE of their rows (see 0002 for the reasoning)."""

from django.db import migrations

FORWARD = """
CREATE TRIGGER access_licenseacceptance_append_only
    BEFORE UPDATE OR DELETE ON access_licenseacceptance
    FOR EACH ROW EXECUTE FUNCTION access_auditevent_refuse_change();
"""
BACKWARD = "DROP TRIGGER IF EXISTS access_licenseacceptance_append_only ON access_licenseacceptance;"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("access", "0003_requests_grants")]

    operations = [migrations.RunPython(forward, backward)]
