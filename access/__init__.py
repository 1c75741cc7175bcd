"""Who may get which weights, and what they did with them: the ``access`` Django app.

One app (label ``access``: tables, permissions and audit strings depend on it), one
package per domain:

- ``audit``: the append-only audit log every state change writes to.
- ``notifications``: email delivery and the links emails carry.
- ``catalog``: model families, their variants (sizes) and license versions.
- ``requests``: a researcher's access request: the application, its screening,
  editing, resubmitting and withdrawing, and what the applicant sees of its progress.
- ``review``: the reviewers' queue, notes, decisions, the two-person rule, the
  automatic policies and the statistics.
- ``grants``: access granted per variant, license acceptances, the effective
  status a grant is enforced with, and grants managed by reviewers.
- ``distribution``: weight files in storage, download bundles and links, the leak
  rule, the attribution log and the ``/dl/`` gateway.

Each domain holds what it needs of ``models``, ``services`` (every write),
``selectors`` (reads), ``forms``, ``views``, ``api``, ``serializers``, ``urls``,
``api_urls``, ``admin`` and ``tasks``, and modules of its own topics. Another domain
may import only its ``models``, ``services``, ``selectors``, ``serializers`` and
``permissions``; no two modules import each other in a cycle; the tables depend
downwards only. ``lint-imports`` checks all three (contracts in ``pyproject.toml``).
The domains are not a strict stack: the catalog's pages show the caller's access
(grants), and a submission runs the review policies.

``access.models``, ``access.admin`` and ``access.tasks`` are the indexes Django and
Celery look for; they only import the domains' modules.
"""
