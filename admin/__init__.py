"""The admin UI (``rop_admin``): Flask-Admin at ``/admin``, behind a session login.

``init_admin(app)`` mounts it (from the app factory); every view calls the owning
service's use-cases. Plugins add pages through the ``register_admin_views`` hook,
returning :class:`rop_admin.base.AdminView` instances (or plain blueprints under /admin).
"""
from rop_admin.base import AdminView
from rop_admin.security import requires_role
from rop_admin.setup import init_admin

__all__ = ["AdminView", "init_admin", "requires_role"]
