"""The admin pages, as Django's admin looks for them: they live in ``inference.sandbox.admin``."""

from inference.sandbox import admin as sandbox_admin

__all__ = ["sandbox_admin"]
