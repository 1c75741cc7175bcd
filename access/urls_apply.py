"""Filled in by the access-workflow work."""

urlpatterns: list = []
