"""The weights and how they leave: weight files in storage (local disk or S3, ``storage``)
and publishing them with checksums (``publishing``); a grant's download bundle of signed,
expiring, count-limited links (``tokens``, ``bundles``); the rules a download is decided by
(``rules``); the leak rule (``leak``); the attribution log of every request
(``events``); and the ``/dl/`` gateway itself (``gateway``). Pages
``/grants/<id>/downloads/`` and the reviewers' download log, API
``/api/v1/grants/<id>/download-links``.
"""
