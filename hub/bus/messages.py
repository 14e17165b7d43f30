"""Messages: commands and events, and the envelope they travel in.

Declare a message as a small class in the owning service's ``messages.py``::

    class TransactionSucceeded(Event):
        \"\"\"A transaction reached success.\"\"\"
        type = "transaction.succeeded"
        schema = TransactionSucceededSchema

and publish it with :func:`hub.bus.publish`. The schema (marshmallow) validates the payload
when the message is made and loads it again when a handler receives it.
"""
from __future__ import annotations

import datetime as dt
import random
from typing import Any, ClassVar

from marshmallow import Schema

from hub.context import CallContext
from hub.db import new_id, utcnow
from hub.dumping import dump_one

#: Every message class by its ``type`` (filled in by ``__init_subclass__``).
MESSAGE_TYPES: dict[str, type[Message]] = {}


class Message:
    """A command or an event. Subclasses set ``type`` and ``schema`` (and may tune retries).

    :cvar type: the message type, e.g. ``"transaction.succeeded"``.
    :cvar version: the payload version.
    :cvar schema: the marshmallow schema of the payload.
    :cvar max_retries: retries after the first attempt before a dead letter.
    :cvar retry_base: the first retry's delay in seconds (doubled each time, with jitter).
    :cvar retry_cap: the longest delay between two attempts.
    :cvar queue: the RQ queue its jobs go to; :meth:`queue_for` may choose one of the
        queue's lanes (``hub.queues.LANES``) for a message from its payload.
    """

    kind: ClassVar[str] = "message"
    queue: ClassVar[str] = "default"
    type: ClassVar[str]
    version: ClassVar[int] = 1
    schema: ClassVar[type[Schema]] = Schema
    max_retries: ClassVar[int] = 5
    retry_base: ClassVar[float] = 2.0
    retry_cap: ClassVar[float] = 600.0

    @classmethod
    def queue_for(cls, payload: dict) -> str:
        """The queue of one message of this kind: :attr:`queue` unless a subclass picks one
        of its lanes from ``payload`` (a pure function of it: the relay calls it again)."""
        return cls.queue

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            MESSAGE_TYPES[cls.type] = cls

    @classmethod
    def _schema(cls) -> Schema:
        """One schema instance per message class (marshmallow schemas are reusable and
        making one costs more than the dump and validation of a payload)."""
        instance = cls.__dict__.get("_schema_instance")
        if instance is None or not isinstance(instance, cls.schema):
            instance = cls.schema()
            cls._schema_instance = instance
        return instance

    def __init__(self, **payload: Any):
        schema = self._schema()
        dumped = dump_one(schema, payload)
        errors = schema.validate(dumped)
        if errors:
            from hub.errors import ValidationFailed

            raise ValidationFailed(f"invalid {self.type} message", errors=errors)
        self._fill(dumped)

    @classmethod
    def built(cls, **payload: Any) -> Message:
        """A message whose payload the hub built itself from its own typed values (the accept
        path: a transaction's view, a hold's row): dumped through the schema as by the
        constructor, not validated again (the validation was a fifth of the accept's message
        work). Anything from outside — a plugin's, a request's — goes through the constructor.
        tests/transactions/test_accept_function.py validates what the accept path builds."""
        message = cls.__new__(cls)
        message._fill(dump_one(cls._schema(), payload))
        return message

    def _fill(self, dumped: dict[str, Any]) -> None:
        self.payload: dict[str, Any] = dumped
        self.id: str = new_id("msg")
        self.tenant_id: str | None = None
        self.client_id: str | None = None
        self.correlation_id: str | None = None
        self.causation_id: str | None = None
        self.occurred_at: dt.datetime = utcnow()
        self.context: dict[str, Any] = {}

    @property
    def data(self) -> dict[str, Any]:
        """The payload loaded through the schema (dates as datetimes and so on)."""
        return self._schema().load(self.payload)

    @classmethod
    def retry_intervals(cls, rng: random.Random | None = None) -> list[float]:
        """The delays before each retry: exponential from ``retry_base``, capped, with ±50 % jitter."""
        rng = rng or random
        delays = []
        for attempt in range(cls.max_retries):
            base = min(cls.retry_cap, cls.retry_base * (2 ** attempt))
            delays.append(round(base * rng.uniform(0.5, 1.5), 3) if base > 0 else 0)
        return delays

    def envelope(self) -> dict[str, Any]:
        """The message as it is stored in the outbox and the event store and sent to workers."""
        return {
            "id": self.id, "type": self.type, "kind": self.kind, "version": self.version,
            "tenant_id": self.tenant_id, "client_id": self.client_id,
            "correlation_id": self.correlation_id, "causation_id": self.causation_id,
            "occurred_at": self.occurred_at.isoformat(), "payload": self.payload, "context": self.context,
        }

    def call_context(self) -> CallContext:
        """The caller a handler of this message acts for: the context it was published in (or
        just its tenant, for a message published without one)."""
        return CallContext.from_dict(self.context or {"tenant_id": self.tenant_id})

    @classmethod
    def from_envelope(cls, envelope: dict[str, Any]) -> Message:
        """Rebuild a message from its envelope (the class is looked up by ``type``)."""
        klass = MESSAGE_TYPES.get(envelope["type"])
        if klass is None:
            raise LookupError(f"unknown message type {envelope['type']!r}")
        message = klass.__new__(klass)
        message.payload = envelope["payload"]
        message.id = envelope["id"]
        message.tenant_id = envelope.get("tenant_id")
        message.client_id = envelope.get("client_id")
        message.correlation_id = envelope.get("correlation_id")
        message.causation_id = envelope.get("causation_id")
        message.occurred_at = dt.datetime.fromisoformat(envelope["occurred_at"])
        message.context = envelope.get("context") or {}
        return message

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.payload!r}>"


class Command(Message):
    """Asks one service to do something: exactly one handler."""

    kind: ClassVar[str] = "command"
    queue: ClassVar[str] = "commands"


class Event(Message):
    """Says something happened: any number of subscribers, and the tenant's events feed."""

    kind: ClassVar[str] = "event"
    queue: ClassVar[str] = "events"
    #: Whether the tenant sees it (``GET /v1/events`` and webhooks). Set ``public = False`` on
    #: internal events (e.g. carrying provider costs); subscribers get them either way.
    public: ClassVar[bool] = True
