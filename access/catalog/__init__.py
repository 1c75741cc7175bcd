"""What can be requested: model families, their variants (one per size, with their two-person
rule, sandbox and download settings) and the family's license versions, which take effect on a
date. Public pages and API (``/``, ``/models/``, ``/licenses/``, ``/api/v1/models``), the
admin pages that edit them, and the LLaMA seed (``catalog_seed_llama``).
"""
