import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.models import User
from portal.services import api_token_create


class Command(BaseCommand):
    help = "Manage personal API tokens. `portal_token create EMAIL` prints a new token alone on its last line."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a token for an account and print it once.")
        create.add_argument("email")
        create.add_argument("--name", default="created by operator")
        create.add_argument("--days", type=int, default=None, help="Expire after this many days (default: never).")

    def handle(self, *args, action, **options):
        if action == "create":
            self._create(**options)

    def _create(self, *, email, name, days, **_):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No account with email {email}. Create it first with `portal_user add {email}`.")
        if not user.is_active:
            raise CommandError(f"The account {user.email} is deactivated; a token for it would not work.")
        if days is not None and days < 1:
            raise CommandError("--days must be at least 1.")
        expires_at = timezone.now() + dt.timedelta(days=days) if days else None
        token, secret = api_token_create(user=user, name=name, expires_at=expires_at)
        expiry = f"expires {token.expires_at:%Y-%m-%d}" if token.expires_at else "does not expire"
        self.stdout.write(f"Token '{token.name}' for {user.email} ({expiry}). It is shown once:")
        self.stdout.write(secret)
