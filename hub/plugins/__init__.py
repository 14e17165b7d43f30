"""Plugins: the hookspecs (the partner's manual, :mod:`hub.plugins.hookspecs`), the plugin
manager, and the ``rop plugins`` commands. See docs/plugins.md."""
from __future__ import annotations

from hub.plugins.manager import PluginHost, PluginLoadError, build_plugin_manager, plugin_host
from hub.plugins.markers import hookimpl, hookspec

__all__ = [
    "PluginHost",
    "PluginLoadError",
    "build_plugin_manager",
    "dispatch_to_plugins",
    "hookimpl",
    "hookspec",
    "init_app",
    "plugin_host",
    "register_admin_views",
]


def init_app(app, api) -> None:
    """Build the plugin manager for this app and apply ``register_blueprints``."""
    host = build_plugin_manager()
    app.extensions["rop"].extras["plugins"] = host
    if host.warnings:
        import structlog

        for warning in host.warnings:
            structlog.get_logger("hub.plugins").warning("plugin installation", problem=warning)
    for blueprints in host.hook.register_blueprints(app=app):
        for blueprint in blueprints or []:
            app.register_blueprint(blueprint)
    if host.hook.handle_event.get_hookimpls():  # no extra job per event unless a plugin listens
        from hub.bus import add_global_listener

        add_global_listener(app, dispatch_to_plugins)


def dispatch_to_plugins(ctx, uow, message) -> None:
    """The bus's global listener: hand every event to the ``handle_event`` hook."""
    if getattr(message, "kind", None) != "event":
        return
    from flask import current_app

    host = plugin_host(current_app)
    host.hook.handle_event(event_type=message.type, payload=dict(message.payload),
                           envelope=message.envelope())


def register_admin_views(app, admin) -> None:
    """Called by the admin UI once it is mounted: apply ``register_admin_views``.

    Each returned item is a Flask-Admin view (added to ``admin`` and its menu) or a plain
    blueprint under ``/admin`` (registered on the app); both sit behind the admin login.
    """
    from flask import Blueprint

    host = app.extensions["rop"].extras.get("plugins")
    if host is None:
        return
    for items in host.hook.register_admin_views(app=app, admin=admin):
        for item in items or []:
            if isinstance(item, Blueprint):
                app.register_blueprint(item)
            else:
                admin.add_view(item)
