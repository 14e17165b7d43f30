"""Editing a tenant: rename and settings through tenancy's use-case, audited with before/after."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.errors import NotFound, ValidationFailed
from hub.tenancy import service

ADMIN = CallContext.system(actor="admin:ops@example.com")


def _in_uow(app, fn, *args, **kwargs):
    with unit_of_work(app.extensions["rop"].db) as uow:
        result = fn(ADMIN, uow, *args, **kwargs)
        uow.commit()
        return result.id if hasattr(result, "id") else result


def _audit(app):
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(a.action, a.actor, a.before, a.after) for a in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "tenant.updated"))]


def test_rename_and_new_settings_keep_the_slug_and_are_audited(app):
    tenant_id = _in_uow(app, service.create_tenant, "Old Name", "old-name")
    _in_uow(app, service.update_tenant, tenant_id, name="  New Name ", settings={"note": "vip"})
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        tenant = service.get_tenant(uow, tenant_id)
        assert (tenant.name, tenant.slug, tenant.settings) == ("New Name", "old-name", {"note": "vip"})
    [(_, actor, before, after)] = _audit(app)
    assert actor == "admin:ops@example.com"
    assert before["name"] == "Old Name" and after["name"] == "New Name" and after["settings"] == {"note": "vip"}


def test_an_unchanged_edit_writes_no_audit_entry(app):
    tenant_id = _in_uow(app, service.create_tenant, "Same", "same")
    _in_uow(app, service.update_tenant, tenant_id, name="Same")
    assert _audit(app) == []


@pytest.mark.parametrize("changes", [{"name": ""}, {"name": "x" * 201}, {"settings": ["not", "an", "object"]}])
def test_a_bad_edit_is_refused(app, changes):
    tenant_id = _in_uow(app, service.create_tenant, "Valid", "valid")
    with pytest.raises(ValidationFailed):
        _in_uow(app, service.update_tenant, tenant_id, **changes)


def test_an_unknown_tenant_is_not_found(app):
    with pytest.raises(NotFound):
        _in_uow(app, service.update_tenant, "ten_missing", name="x")
