"""The plugin manager: the hub's built-in plugins plus every distribution in the entry-point
group ``rop``. Built by the app factory (never at import time) and kept in
``app.extensions["rop"].extras["plugins"]``."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from hub.plugins import hookspecs
from hub.plugins.markers import PROJECT

#: The hub's own plugins, registered through the same hooks (with ``trylast``).
BUILTIN_PLUGINS: tuple[str, ...] = ("hub.plugins.builtin",)

ENTRY_POINT_GROUP = "rop"


class PluginLoadError(Exception):
    """A plugin could not be loaded; the message is one line naming it and why."""


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    builtin: bool = False
    providers: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "module": self.module, "builtin": self.builtin, "providers": self.providers,
                "hooks": self.hooks}


@dataclass
class PluginHost:
    """The loaded plugins: the pluggy manager, what each plugin is, the provider classes, and
    warnings about the installation (``rop plugins list`` prints them)."""

    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    providers: dict[str, type]
    warnings: list[str] = field(default_factory=list)

    @property
    def hook(self):
        return self.pm.hook

    def provider_class(self, code: str) -> type:
        from hub.errors import NotFound

        try:
            return self.providers[code]
        except KeyError:
            raise NotFound(f"no provider with code {code!r}") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _new_pm() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def build_plugin_manager(*, entry_point_group: str = ENTRY_POINT_GROUP,
                         extra: list[Any] | None = None) -> PluginHost:
    """Load the built-in plugins and every installed ``rop`` entry point.

    :param extra: more plugin objects (modules) to register, for tests.
    :raises PluginLoadError: naming the plugin and the reason, in one line.
    """
    pm = _new_pm()
    infos: list[PluginInfo] = []
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        from hub import __version__

        infos.append(PluginInfo(module_name.rsplit(".", 1)[-1], "rop-hub", __version__,
                                module_name, builtin=True))
    warnings: list[str] = []
    for ep in _unique_entry_points(entry_point_group, warnings):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        label = f"plugin {ep.name!r} (distribution {dist})"
        try:
            obj = ep.load()
        except Exception as exc:
            raise PluginLoadError(f"{label} failed to load: {_one_line(exc)}") from exc
        try:
            pm.register(obj, name=ep.name)
        except Exception as exc:
            raise PluginLoadError(f"{label} failed to register: {_one_line(exc)}") from exc
        infos.append(PluginInfo(ep.name, dist, version, getattr(obj, "__name__", str(obj))))
    for obj in extra or []:
        name = getattr(obj, "__name__", repr(obj))
        pm.register(obj, name=name)
        infos.append(PluginInfo(name, "(test)", "0", name))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = getattr(exc, "plugin", None)
        name = pm.get_name(plugin) if plugin is not None else "?"
        raise PluginLoadError(f"plugin {name!r}: {_one_line(exc)}") from exc

    providers: dict[str, type] = {}
    by_name = {info.name: info for info in infos}
    for impl in pm.hook.register_providers.get_hookimpls():
        info = by_name.get(impl.plugin_name) or by_name.get(impl.plugin_name.rsplit(".", 1)[-1])
        try:
            classes = impl.function() or []
        except Exception as exc:
            raise PluginLoadError(f"plugin {impl.plugin_name!r} failed in register_providers: "
                                  f"{_one_line(exc)}") from exc
        for cls in classes:
            code = getattr(cls, "code", None)
            if not code:
                raise PluginLoadError(f"plugin {impl.plugin_name!r} registered a provider "
                                      f"without a code: {cls!r}")
            if code in providers and providers[code] is not cls:
                raise PluginLoadError(f"plugin {impl.plugin_name!r} registered provider {code!r}, "
                                      f"already registered by another plugin")
            providers[code] = cls
            if info is not None:
                info.providers.append(code)
    for info in infos:
        plugin = pm.get_plugin(info.module if info.builtin else info.name)
        if plugin is not None:
            info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return PluginHost(pm=pm, plugins=infos, providers=providers, warnings=warnings)


def _unique_entry_points(group: str, warnings: list[str]) -> list[Any]:
    """The group's entry points, one per name and per module: the first found on ``sys.path``.

    The same distribution seen twice on ``sys.path`` is silently one. Two *distributions*
    with the same entry point name or module (a plugin re-installed under another
    distribution name, the old one left behind) load one and add a warning naming both.
    """
    kept: dict[str, Any] = {}
    by_module: dict[str, Any] = {}
    for ep in entry_points(group=group):
        dist = _dist(ep)
        first = kept.get(ep.name) or by_module.get(ep.value)
        if first is None:
            kept[ep.name] = by_module[ep.value] = ep
            continue
        if _dist(first) == dist:
            continue
        what = f"entry point {ep.name!r}" if first.name == ep.name else f"module {ep.value!r}"
        warnings.append(f"{what} is installed by two distributions: {_dist(first)} (loaded) and {dist} "
                        f"(ignored); uninstall one: pip uninstall {dist}")
    return sorted(kept.values(), key=lambda e: e.name)


def _dist(ep: Any) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"


def plugin_host(app=None) -> PluginHost:
    """The app's :class:`PluginHost` (the current app's when ``app`` is omitted)."""
    from flask import current_app

    app = app or current_app
    return app.extensions["rop"].extras["plugins"]
