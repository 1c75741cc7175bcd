import getpass
import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal import roles
from portal.models import User
from portal.services import (
    user_create,
    user_email_mark_verified,
    user_mfa_reset,
    user_password_set,
    user_role_set,
)


class Command(BaseCommand):
    help = (
        "Manage portal accounts. `portal_user add EMAIL --role ROLE` creates an account or changes its role; "
        "`portal_user reset-mfa EMAIL` removes a lost authenticator and ends the user's sessions and API tokens."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="Create an account, or update the role of an existing one.")
        add.add_argument("email")
        add.add_argument(
            "--role",
            choices=roles.ROLES,
            default=None,
            help="New accounts default to researcher; an existing account keeps its role unless this is given.",
        )
        add.add_argument("--password", help="Set this password (otherwise asked for on a terminal).")
        add.add_argument("--verified", action="store_true", help="Mark the email address as verified.")
        reset = sub.add_parser(
            "reset-mfa",
            help="Remove a user's authenticators so they can enrol a new one; ends their sessions and API tokens.",
        )
        reset.add_argument("email")

    def handle(self, *args, action, **options):
        if action == "add":
            self._add(**options)
        elif action == "reset-mfa":
            self._reset_mfa(**options)

    def _reset_mfa(self, *, email, **_):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No account with email {email}.")
        removed = user_mfa_reset(user=user)
        if removed:
            self.stdout.write(
                self.style.SUCCESS(
                    f"removed {removed} authenticator(s) of {user.email}; "
                    "their sessions ended and their API tokens were revoked"
                )
            )
        else:
            self.stdout.write(f"{user.email} has no authenticator; nothing to do")

    def _password(self, given):
        if given is not None:
            return given
        if sys.stdin.isatty():
            first = getpass.getpass("Password (empty: the user sets one through 'forgot password'): ")
            if first and getpass.getpass("Password again: ") != first:
                raise CommandError("The passwords do not match.")
            return first or None
        return None

    @transaction.atomic
    def _add(self, *, email, role, password, verified, **_):
        password = self._password(password)
        email = email.strip().lower()
        user = User.objects.filter(email__iexact=email).first()
        try:
            if password:
                validate_password(password, user=user or User(email=email))
            if user is None:
                role = role or roles.RESEARCHER
                user = user_create(email=email, password=password, role=role, email_verified=verified)
                outcome = "created"
            else:
                if role is not None:
                    user_role_set(user=user, role=role)
                role = roles.user_primary_role(user)
                if password:
                    user_password_set(user=user, password=password)
                outcome = "updated"
            if verified:
                user_email_mark_verified(user=user)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        notes = []
        if not user.has_usable_password():
            notes.append("no password set: use 'Forgot password' on the login page")
        if role in roles.PRIVILEGED_ROLES:
            notes.append("must enrol an authenticator app at first login")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        self.stdout.write(self.style.SUCCESS(f"{outcome} {user.email} with role {role}{suffix}"))
