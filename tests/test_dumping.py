"""hub.dumping: a compiled dump gives what marshmallow's ``Schema.dump`` gives."""
from __future__ import annotations

import datetime as dt
import decimal

import pytest
from marshmallow import Schema, fields, pre_dump

import hub.app  # noqa: F401 - every service's messages registered
from hub.bus.messages import MESSAGE_TYPES
from hub.dumping import CompiledDump, dump_one, plan_for
from hub.transactions.messages import TransactionViewSchema

NOW = dt.datetime(2026, 12, 7, 23, 40, 1, 123456, tzinfo=dt.UTC)


class Inner(Schema):
    code = fields.String()
    n = fields.Integer()


class Everything(Schema):
    text = fields.String()
    maybe = fields.String(allow_none=True)
    count = fields.Integer()
    ratio = fields.Float()
    money = fields.Decimal(as_string=True)
    flag = fields.Boolean()
    at = fields.DateTime()
    stamp = fields.DateTime(format="timestamp")
    day = fields.Date()
    detail = fields.Dict()
    tags = fields.List(fields.String())
    inner = fields.Nested(Inner)
    inners = fields.List(fields.Nested(Inner))
    renamed = fields.String(data_key="renamedKey")
    source = fields.Integer(attribute="elsewhere")
    loud = fields.Method("shout")
    length = fields.Function(lambda obj: len(obj.get("text") or ""))
    secret = fields.String(load_only=True)

    def shout(self, obj):
        return (obj.get("text") or "").upper()


FULL = {"text": "pulsa", "maybe": None, "count": "7", "ratio": 1.5, "money": decimal.Decimal("10.50"),
        "flag": 1, "at": NOW, "stamp": NOW, "day": NOW.date(), "detail": {"a": [1, 2]}, "tags": ["x", 3],
        "inner": {"code": "TEL10", "n": 4, "extra": True}, "inners": [{"code": "a"}, {"n": 2}],
        "renamed": "r", "elsewhere": 12, "source": 99, "secret": "never", "unknown": "dropped"}


@pytest.mark.parametrize("payload", [
    FULL,
    {},
    {"text": None, "count": None, "at": None, "inner": None, "tags": None},
    {key: value for key, value in FULL.items() if key in ("text", "at", "renamed")},
], ids=["full", "empty", "nones", "some"])
def test_a_compiled_dump_is_marshmallows(payload):
    schema = Everything()
    assert plan_for(schema) is not None
    assert dump_one(schema, payload) == Schema.dump(schema, payload)


def test_a_bad_value_fails_as_in_marshmallow():
    schema = Everything()
    with pytest.raises(ValueError):
        Schema.dump(schema, {"count": "seven"})
    with pytest.raises(ValueError):
        dump_one(schema, {"count": "seven"})


class Hooked(Schema):
    a = fields.String()

    @pre_dump
    def upper(self, data, **kwargs):
        return {"a": data["a"].upper()}


class Defaulted(Schema):
    a = fields.String(dump_default="none given")


class Dotted(Schema):
    a = fields.String(attribute="outer.inner")


class Shadowing(Schema):
    items = fields.List(fields.Integer())


@pytest.mark.parametrize("schema, payload", [
    (Hooked(), {"a": "x"}),
    (Defaulted(), {}),
    (Dotted(), {"outer": {"inner": "deep"}}),
    (Shadowing(), {"items": [1, "2"]}),
], ids=["pre_dump", "dump_default", "dotted", "dict-method-name"])
def test_what_a_plan_cannot_mirror_is_dumped_by_marshmallow(schema, payload):
    assert plan_for(schema) is None
    assert dump_one(schema, payload) == Schema.dump(schema, payload)


def test_an_object_and_many_are_dumped_by_marshmallow():
    class View(CompiledDump, Inner):
        pass

    class Row:
        code, n = "TEL5", 5

    schema = View()
    assert schema.dump(Row()) == {"code": "TEL5", "n": 5}
    assert schema.dump([{"code": "a"}, {"n": "2"}], many=True) == [{"code": "a"}, {"n": 2}]
    assert View(many=True).dump([{"code": "a"}]) == [{"code": "a"}]


def _sample(field: fields.Field):
    """A value of ``field``'s type."""
    if isinstance(field, fields.Nested):
        return {}
    for kind, value in ((fields.DateTime, NOW), (fields.Date, NOW.date()), (fields.Boolean, True),
                        (fields.Integer, 42), (fields.Float, 2.5), (fields.Decimal, decimal.Decimal("1.25")),
                        (fields.Dict, {"k": "v"}), (fields.List, []), (fields.String, "s")):
        if isinstance(field, kind):
            return value
    return "raw"


@pytest.mark.parametrize("message_type", sorted(MESSAGE_TYPES))
def test_every_message_payload_dumps_as_marshmallow_dumps_it(message_type):
    schema = MESSAGE_TYPES[message_type]._schema()
    payload = {name: _sample(field) for name, field in schema.dump_fields.items()}
    assert dump_one(schema, payload) == Schema.dump(schema, payload)
    half = dict(list(payload.items())[::2])
    assert dump_one(schema, half) == Schema.dump(schema, half)


def test_the_transaction_view_dumps_through_its_plan():
    view = {"id": "trx_1", "ref_id": "r", "product_code": "TEL10", "customer_no": "0812", "status": "pending",
            "price": 10350, "currency": "IDR", "wallet_id": "wal_1", "inquiry_id": None, "serial_number": None,
            "provider_ref": None, "provider_code": None, "error": None, "source": None, "created_at": NOW,
            "updated_at": NOW, "completed_at": None}
    schema = TransactionViewSchema()
    assert plan_for(schema) is not None
    assert schema.dump(view) == Schema.dump(schema, view)
    assert schema.dump(view)["created_at"] == NOW.isoformat()


def test_a_copy_with_other_fields_gets_its_own_plan():
    """marshmallow's Nested copies a schema instance it is given, then sets only/exclude:
    the copy must not dump through the original's plan (its excluded fields would show)."""
    class View(CompiledDump, Inner):
        pass

    class Outer(Schema):
        inner = fields.Nested(View(), exclude=("n",))

    original = View()
    payload = {"code": "TEL10", "n": 4}
    assert original.dump(payload) == {"code": "TEL10", "n": 4}
    nested = fields.Nested(original, exclude=("n",))
    assert nested.schema.dump(payload) == {"code": "TEL10"}
    assert Outer().dump({"inner": payload}) == {"inner": {"code": "TEL10"}}
    assert original.dump(payload) == {"code": "TEL10", "n": 4}


def test_a_missing_from_a_field_leaves_its_key_out():
    class Maybe(Schema):
        a = fields.String()
        maybe = fields.Method("nothing")
        bare = fields.Method()

        def nothing(self, obj):
            from marshmallow import missing
            return missing

    schema = Maybe()
    assert plan_for(schema) is not None
    assert dump_one(schema, {"a": 1}) == Schema.dump(schema, {"a": 1}) == {"a": "1"}


def test_a_field_with_its_own_serialize_or_get_value_is_dumped_by_marshmallow():
    class Loud(fields.String):
        def serialize(self, attr, obj, accessor=None, **kwargs):
            return super().serialize(attr, obj, accessor, **kwargs).upper()

    class Elsewhere(fields.String):
        def get_value(self, obj, attr, accessor=None, default=None):
            return obj.get("other")

    class Custom(Schema):
        a = Loud()
        b = Elsewhere()

    schema = Custom()
    assert plan_for(schema) is None
    assert dump_one(schema, {"a": "x", "other": "y"}) == {"a": "X", "b": "y"}
