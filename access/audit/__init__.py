"""The audit log: one append-only row per state change, written in the same transaction as the
change (``audit_event_record``), readable and exportable by admins. The database refuses
updates and deletes of its rows.
"""
