"""Email: delivery (``email_send``, plain text and HTML from templates), who the reviewers are
(``reviewer_emails``), the absolute links emails carry, and the retry policy of email tasks.
Each domain's tasks decide when to write; this package only knows how.
"""
