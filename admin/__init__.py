"""The admin UI (``rop_admin``): session login for admin users, and views over the services.

``init_admin(app)`` mounts it at ``/admin``; every view calls the owning service's use-cases.
"""
from rop_admin.views import init_admin

__all__ = ["init_admin"]
