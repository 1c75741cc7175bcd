import io
import json
import secrets

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal import roles
from portal.models import User
from portal.services import user_create, user_email_mark_verified, user_password_set, user_role_set

DEMO_ACCOUNTS = [
    ("researcher@example.org", roles.RESEARCHER),
    ("reviewer@example.org", roles.REVIEWER),
    ("admin@example.org", roles.ADMIN),
]


def demo_passwords_path():
    return settings.VAR_DIR / "demo-accounts.json"


class Command(BaseCommand):
    help = "Development only: seed the catalog and demo accounts (idempotent) and print their passwords."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("seed_demo creates accounts with known passwords; it never runs in production.")
        # Passwords are random per checkout and kept under var/ (never in the repo).
        path = demo_passwords_path()
        passwords = json.loads(path.read_text()) if path.exists() else {}
        with transaction.atomic():
            call_command("seed_catalog", stdout=io.StringIO())
            for email, role in DEMO_ACCOUNTS:
                password = passwords.setdefault(email, f"demo-{secrets.token_urlsafe(9)}")
                user = User.objects.filter(email=email).first()
                if user is None:
                    user_create(email=email, password=password, role=role, email_verified=True)
                else:
                    if roles.user_primary_role(user) != role:
                        user_role_set(user=user, role=role)
                    if not user.check_password(password):
                        user_password_set(user=user, password=password)
                    user_email_mark_verified(user=user)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords, indent=2))
        path.chmod(0o600)
        self.stdout.write("Demo accounts (passwords are kept in var/demo-accounts.json):")
        for email, role in DEMO_ACCOUNTS:
            note = "  (enrols an authenticator app at first login)" if role in roles.PRIVILEGED_ROLES else ""
            self.stdout.write(f"  {role:<10} {email:<24} {passwords[email]}{note}")
