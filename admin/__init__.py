"""The hub's admin UI (Flask-Admin), installed under the import name ``rop_admin``."""
