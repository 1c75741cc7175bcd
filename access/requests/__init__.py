"""A researcher's access request, from the applicant's side: the application and its rules
(``application``), the screening flags raised on submission (``screening``), submitting,
editing and resubmitting while more information is asked for, withdrawing
(``services``), and what the applicant sees: status, queue position, estimated decision date
and history (``selectors``). Pages under ``/apply/`` and ``/requests/``, API under
``/api/v1/access-requests``.
"""
