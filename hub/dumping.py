"""A marshmallow schema's dump of one plain dict, compiled.

``Schema.dump`` takes every field through ``Field.serialize``: the schema's accessor, the
dotted-path check, the default, then the field's own ``_serialize``. The accept path dumps
three envelopes' payloads and its answer, some sixty fields a purchase, and that walk was
most of their cost (bench/RESULTS.md). :class:`CompiledDump`, mixed into a schema, dumps a
plain ``dict`` with a plan made once per schema instance: each field's value read with one
``dict`` look-up and given to the same field's ``_serialize``, under the same key — the same
dict as ``Schema.dump`` (tests/test_dumping.py compares them field type by field type).

Everything else takes marshmallow's own path: ``many``, an object that is not a ``dict``,
and a schema the plan cannot mirror (dump hooks, its own ``get_attribute``, a field class
with its own ``serialize`` or ``get_value``, a field with a dump default, a dotted
``attribute``, or a key that names a ``dict`` method, which marshmallow's accessor would
read as an attribute). A plan is kept with the fields it was made from: a copy of the
schema with other fields (``Nested(instance, only=...)``) makes its own.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, missing
from marshmallow.decorators import POST_DUMP, PRE_DUMP
from marshmallow.fields import Field

_NO_PLAN = object()


def plan_for(schema: Schema) -> Callable[[dict], dict] | None:
    """The compiled dump of one dict for ``schema``, or None where it would differ from
    ``schema.dump``."""
    if schema._hooks[PRE_DUMP] or schema._hooks[POST_DUMP]:
        return None
    if type(schema).get_attribute is not Schema.get_attribute:
        return None
    steps: list[tuple[str, str, str, Callable, bool]] = []  # (name, read from, written to, serializer, reads)
    for name, field in schema.dump_fields.items():
        if type(field).serialize is not Field.serialize or type(field).get_value is not Field.get_value:
            return None  # a field reading or writing its own way
        key = field.data_key if field.data_key is not None else name
        if not field._CHECK_ATTRIBUTE:  # Method and Function fields: given None, they read obj themselves
            steps.append((name, name, key, field._serialize, False))
            continue
        source = field.attribute if field.attribute is not None else name
        if field.dump_default is not missing or "." in source or hasattr(dict, source):
            return None
        steps.append((name, source, key, field._serialize, True))
    dict_class = schema.dict_class

    def dump(obj: dict) -> dict:
        out = dict_class()
        get = obj.get
        for name, source, key, serialize, reads in steps:
            if reads:
                value = get(source, missing)
                if value is missing:
                    continue
            else:
                value = None
            value = serialize(value, name, obj)
            if value is not missing:  # marshmallow leaves such a key out too
                out[key] = value
        return out

    return dump


def dump_one(schema: Schema, obj: Any) -> Any:
    """``schema.dump(obj)`` of one object: a plain ``dict`` through the schema's plan (made on
    first use, kept on the instance) where it has one."""
    if type(obj) is dict:
        # kept with the fields it was made from: a copy of the schema (marshmallow's Nested
        # copies an instance it is given, then sets only/exclude) has fields of its own
        fields_, plan = schema.__dict__.get("_rop_dump_plan", (None, None))
        if fields_ is not schema.dump_fields:
            fields_, plan = schema.dump_fields, plan_for(schema) or _NO_PLAN
            schema.__dict__["_rop_dump_plan"] = (fields_, plan)
        if plan is not _NO_PLAN:
            return plan(obj)
    if isinstance(schema, CompiledDump):  # its class's dump would come back here
        return super(CompiledDump, schema).dump(obj, many=False)
    return schema.dump(obj, many=False)


class CompiledDump:
    """Mix into a marshmallow ``Schema`` (before it): its ``dump`` of one object is
    :func:`dump_one`'s; of many, marshmallow's."""

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        if self.many if many is None else many:
            return super().dump(obj, many=many)
        return dump_one(self, obj)
