"""Access granted to one user for one variant: its state machine (active, license required,
suspended, revoked, expired), the status it is enforced with (``grant_status_effective``:
the current license accepted, the end date not passed), license acceptances, expiry and
reminders, and grants managed by reviewers (grant by hand, suspend, reinstate, revoke).
Pages ``/grants/`` and ``/review/grants/``, API ``/api/v1/grants`` and
``/api/v1/review/grants``.
"""
