"""Who handles what: one handler per command, any number of subscribers per event.

The registry lives in the app (``app.extensions["rop"].extras["bus"]``), filled by each
service's ``init_app``. A handler is a plain function ``handler(ctx, uow, message)``; it is
named by ``module.qualname`` so that a worker can find it again.

A handler registered with ``own_uow=True`` is ``handler(ctx, message)`` instead: the runner
opens no unit of work around it (it opens its own short ones, never one held across a
provider call) and records the processed message after it returns (docs/bus.md, "own_uow").

Global listeners see every event (the tenant webhook delivery is one; the plugin manager
registers ``dispatch_to_plugins`` here through :func:`add_global_listener`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask

from hub.bus.messages import Command, Event, Message

Handler = Callable[..., None]


def handler_name(func: Handler) -> str:
    return f"{func.__module__}.{func.__qualname__}"


@dataclass
class Registry:
    commands: dict[str, Handler] = field(default_factory=dict)
    events: dict[str, dict[str, Handler]] = field(default_factory=dict)
    global_listeners: dict[str, Handler] = field(default_factory=dict)
    #: Names of the handlers that open their own units of work (``own_uow=True``).
    own_uow: set[str] = field(default_factory=set)
    #: ``own_uow`` handlers' batch forms, by the handler's name: ``batch(messages)`` does for
    #: many messages at once what the handler does for one (see :func:`register_command_handler`).
    batches: dict[str, Handler] = field(default_factory=dict)
    #: ``own_uow`` handlers that keep no processed-message record (``recorded=False``): their
    #: own state machine is what makes a replay harmless (see :func:`register_command_handler`)
    unrecorded: set[str] = field(default_factory=set)
    #: subscribers' conditions, by (event type, handler name): ``when(payload)`` (see :func:`subscribe`)
    conditions: dict[tuple[str, str], Callable[[dict], bool]] = field(default_factory=dict)

    def handlers_for(self, message_type: str, kind: str, payload: dict | None = None) -> dict[str, Handler]:
        """The handlers of a message, by name; with its ``payload``, only the subscribers whose
        condition (if any) holds for it."""
        if kind == "command":
            func = self.commands.get(message_type)
            return {handler_name(func): func} if func else {}
        found = dict(self.events.get(message_type, {}))
        if payload is not None and self.conditions:
            for name in list(found):
                when = self.conditions.get((message_type, name))
                if when is not None and not when(payload):
                    del found[name]
        found.update(self.global_listeners)
        return found

    def lookup(self, name: str) -> Handler | None:
        for func in self.commands.values():
            if handler_name(func) == name:
                return func
        for handlers in self.events.values():
            if name in handlers:
                return handlers[name]
        return self.global_listeners.get(name)

    def owns_uow(self, name: str) -> bool:
        """Whether handler ``name`` was registered with ``own_uow=True``."""
        return name in self.own_uow

    def records(self, name: str) -> bool:
        """Whether the runner keeps a processed-message record for handler ``name``."""
        return name not in self.unrecorded

    def batch_for(self, name: str) -> Handler | None:
        """The batch form of ``own_uow`` handler ``name``, if it has one."""
        return self.batches.get(name)


def registry(app: Flask) -> Registry:
    """The bus registry of ``app`` (made on first use)."""
    return app.extensions["rop"].extras.setdefault("bus", Registry())


def register_command_handler(app: Flask, command: type[Command], func: Handler, *, own_uow: bool = False,
                             batch: Handler | None = None, recorded: bool = True) -> None:
    """Make ``func`` the one handler of ``command``.

    :param own_uow: ``func(ctx, message)`` opens its own units of work; the runner skips a
        message already recorded for it and records it after ``func`` returns. ``func`` must
        be safe to run again for the same message (docs/bus.md, "own_uow").
    :param batch: with ``own_uow``: ``batch(messages)`` handles several of these commands at
        once (the ones published by one unit of work reach one job; docs/bus.md, "Batches").
        It must have the effect of ``func`` on each, be as safe to run again, and may raise
        only for a failure that a retry of all of them can mend.
    :param recorded: with ``own_uow``, False: the runner neither looks up nor writes a
        processed-message record for these commands (two round trips and a row per message
        saved). Only for a handler whose every write is guarded by the state it expects, so
        that running it again for a message, at any moment and concurrently too, changes
        nothing that the first run decided (the transactions driver: docs/bus.md, "own_uow").
    :raise ValueError: when the command already has a different handler, or ``batch`` or
        ``recorded=False`` is given without ``own_uow``.
    """
    if batch is not None and not own_uow:
        raise ValueError("a batch form is for own_uow handlers (the others are batched by the runner)")
    if not recorded and not own_uow:
        raise ValueError("only an own_uow handler may go without a processed-message record")
    reg = registry(app)
    existing = reg.commands.get(command.type)
    if existing is not None and existing is not func:
        raise ValueError(f"command {command.type!r} already has the handler {handler_name(existing)}")
    reg.commands[command.type] = func
    _mark_own_uow(reg, func, own_uow)
    if recorded:
        reg.unrecorded.discard(handler_name(func))
    else:
        reg.unrecorded.add(handler_name(func))
    if batch is not None:
        reg.batches[handler_name(func)] = batch
    else:
        reg.batches.pop(handler_name(func), None)


def subscribe(app: Flask, event: type[Event], func: Handler, *, own_uow: bool = False,
              when: Callable[[dict], bool] | None = None) -> None:
    """Add ``func`` to the subscribers of ``event`` (each runs and retries on its own).

    :param own_uow: as for :func:`register_command_handler`.
    :param when: ``when(payload)``: only the events for which it is true reach ``func``;
        the others are not even written to the outbox for it (an event no handler takes
        gets no outbox row, no relay, no job). Judged at publish time and again by the
        relay, on the payload alone: a pure function of it.
    """
    reg = registry(app)
    reg.events.setdefault(event.type, {})[handler_name(func)] = func
    if when is None:
        reg.conditions.pop((event.type, handler_name(func)), None)
    else:
        reg.conditions[(event.type, handler_name(func))] = when
    _mark_own_uow(reg, func, own_uow)


def _mark_own_uow(reg: Registry, func: Handler, own_uow: bool) -> None:
    if own_uow:
        reg.own_uow.add(handler_name(func))
    else:
        reg.own_uow.discard(handler_name(func))


def add_global_listener(app: Flask, func: Handler) -> None:
    """Let ``func(ctx, uow, event)`` see every event (plugins, webhooks)."""
    registry(app).global_listeners[handler_name(func)] = func


def message_class(message_type: str) -> type[Message] | None:
    from hub.bus.messages import MESSAGE_TYPES

    return MESSAGE_TYPES.get(message_type)
