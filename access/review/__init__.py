"""The reviewers' side of a request: the queue and its filters, claiming, notes, decisions
(approve per variant, reject with a reason, ask for more information), the two-person rule
(its counting in ``selectors``), bulk decisions, the automatic policies run on submission,
rejection templates, the digest email and the statistics page (``stats``, ``charts``).
Pages under ``/review/``, API under ``/api/v1/review/requests``; every view is behind
``permissions.reviewer_page`` or ``IsReviewer``.
"""
