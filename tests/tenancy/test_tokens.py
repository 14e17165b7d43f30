"""POST /oauth/token and bearer-token checks: every way a token can be wrong."""
from __future__ import annotations

import base64
import time

import pytest
from sqlalchemy import select

import hub.auth as auth
from hub.auth import issue_access_token
from hub.context import CallContext
from hub.db import unit_of_work
from hub.tenancy import service


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_client_credentials_with_basic_auth_gives_a_working_token(client, tenant_factory):
    t = tenant_factory()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers=_basic(t.client_id, t.client_secret))
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert response.headers["Cache-Control"] == "no-store"
    me = client.get("/v1/tenant", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == t.id


def test_client_credentials_with_form_fields_and_narrowed_scope(client, tenant_factory):
    t = tenant_factory()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": t.client_id,
                                                 "client_secret": t.client_secret, "scope": "products:read"})
    assert response.status_code == 200
    token = response.get_json()["access_token"]
    assert response.get_json()["scope"] == "products:read"
    # the narrowed token lacks tenant:read
    denied = client.get("/v1/tenant", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403


@pytest.mark.parametrize("data, headers_for, status, error", [
    ({"grant_type": "client_credentials"}, "wrong-secret", 401, "invalid_client"),
    ({"grant_type": "client_credentials"}, "unknown-client", 401, "invalid_client"),
    ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
    ({"grant_type": "password"}, "good", 400, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "wallets:hold"}, "good", 400, "invalid_scope"),
])
def test_bad_token_requests_get_rfc6749_errors(client, tenant_factory, data, headers_for, status, error):
    t = tenant_factory()
    headers = {"good": _basic(t.client_id, t.client_secret),
               "wrong-secret": _basic(t.client_id, t.client_secret + "x"),
               "unknown-client": _basic("cli_nobody", t.client_secret), None: {}}[headers_for]
    response = client.post("/oauth/token", data=data, headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"] == error
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Basic")


def _assert_401(response):
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_missing_and_malformed_tokens_are_401(client):
    _assert_401(client.get("/v1/tenant"))
    _assert_401(client.get("/v1/tenant", headers={"Authorization": "Bearer"}))
    _assert_401(client.get("/v1/tenant", headers={"Authorization": "Token abc"}))
    _assert_401(client.get("/v1/tenant", headers={"Authorization": "Bearer not.a.jwt"}))
    _assert_401(client.get("/v1/tenant", headers={"Authorization": "Bearer garbage"}))


def test_tampered_signature_is_401(client, tenant_factory):
    t = tenant_factory()
    header, payload, signature = t.token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    _assert_401(client.get("/v1/tenant", headers={"Authorization": f"Bearer {header}.{payload}.{flipped}"}))


def test_tampered_claims_are_401(client, tenant_factory):
    victim, attacker = tenant_factory(), tenant_factory()
    import json

    header, payload, signature = attacker.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tid"] = victim.id
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    _assert_401(client.get("/v1/tenant", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}))


def test_token_signed_with_another_key_is_401(client, tenant_factory):
    t = tenant_factory()
    token = issue_access_token("another-secret-key-of-enough-length", t.client_id, t.id, t.scopes, 600)
    _assert_401(client.get("/v1/tenant", headers={"Authorization": f"Bearer {token}"}))


def test_unsigned_alg_none_token_is_401(client, tenant_factory):
    t = tenant_factory()
    import json

    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'iss': 'rop-hub', 'sub': t.client_id, 'tid': t.id, 'scope': 'tenant:read', 'exp': int(time.time()) + 600})}."
    _assert_401(client.get("/v1/tenant", headers={"Authorization": f"Bearer {token}"}))


def test_expired_token_is_401(app, client, tenant_factory):
    t = tenant_factory()
    state = app.extensions["rop"]
    token = issue_access_token(state.config.secret_key, t.client_id, t.id, t.scopes, ttl=60,
                               now=time.time() - 3600)
    response = client.get("/v1/tenant", headers={"Authorization": f"Bearer {token}"})
    _assert_401(response)
    assert "expired" in response.get_json()["detail"]


def test_a_remembered_token_still_expires_and_its_tampered_copies_are_still_refused(app, client, tenant_factory,
                                                                                    monkeypatch):
    """Verified tokens are remembered per process; that must not keep an expired one alive
    nor let a changed byte ride on the remembered verification."""
    t = tenant_factory()
    state = app.extensions["rop"]
    now = [time.time()]
    monkeypatch.setattr(auth.time, "time", lambda: now[0])
    token = issue_access_token(state.config.secret_key, t.client_id, t.id, t.scopes, ttl=60, now=now[0])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/tenant", headers=headers).status_code == 200
    assert client.get("/v1/tenant", headers=headers).status_code == 200  # served from the memory
    remembered = state.extras["auth_verified_tokens"]
    assert (state.config.secret_key, token) in remembered._claims

    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    _assert_401(client.get("/v1/tenant", headers={"Authorization": f"Bearer {header}.{payload}.{flipped}"}))
    _assert_401(client.get("/v1/tenant", headers={"Authorization": f"Bearer {token}x"}))
    assert (state.config.secret_key, f"{header}.{payload}.{flipped}") not in remembered._claims

    now[0] += 61
    response = client.get("/v1/tenant", headers=headers)
    _assert_401(response)
    assert "expired" in response.get_json()["detail"]


def test_the_token_memory_is_bounded():
    memory = auth._VerifiedTokens(size=3)
    secret = "a-secret-key-of-enough-length-for-hs256"
    tokens = [issue_access_token(secret, f"cli_{i}", "ten_1", frozenset({"tenant:read"}), 600) for i in range(7)]
    for token in tokens:
        assert memory.decode(secret, token)["sub"].startswith("cli_")
        assert len(memory._claims) <= 3
    with pytest.raises(auth.Unauthorized):
        memory.decode("another-secret-key-of-enough-length", tokens[-1])


def _forget_status_cache(app):
    app.extensions["rop"].extras.get("auth_status_cache") and app.extensions["rop"].extras["auth_status_cache"].forget()


def test_revoked_client_token_stops_working_within_the_status_ttl(app, client, tenant_factory, monkeypatch):
    t = tenant_factory()
    assert client.get("/v1/tenant", headers=t.headers).status_code == 200  # status now cached
    with unit_of_work(app.extensions["rop"].db) as uow:
        service.revoke_client(CallContext.system(), uow, t.client_id)
        uow.commit()
    # Within the TTL the cached status may still answer; once it lapses the token is dead.
    assert auth.STATUS_TTL <= 5
    clock = [time.monotonic()]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    clock[0] += auth.STATUS_TTL + 0.01
    _assert_401(client.get("/v1/tenant", headers=t.headers))
    # and the secret no longer gets tokens
    assert client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers=_basic(t.client_id, t.client_secret)).status_code == 401


def test_an_expired_status_is_read_again_by_one_thread_while_the_others_answer_from_it(monkeypatch):
    """A busy process's request threads all find the status expired at once: one reads it
    again, the others answer from the entry meanwhile, within STATUS_RELOAD_GRACE; past it
    (the reader stuck), a thread reads it itself. The TTL and the grace stay under 5 s."""
    import threading

    assert auth.STATUS_TTL + auth.STATUS_RELOAD_GRACE <= 5
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    cache = auth._StatusCache()
    old, new = object(), object()
    assert cache.get("cli_a", lambda _id: old) is old
    clock[0] += auth.STATUS_TTL + 0.01  # expired
    reading, release, loads = threading.Event(), threading.Event(), []

    def slow(_id):
        loads.append(_id)
        reading.set()
        release.wait(10)
        return new

    reader = threading.Thread(target=lambda: cache.get("cli_a", slow))
    reader.start()
    assert reading.wait(10)
    answers = []
    others = [threading.Thread(target=lambda: answers.append(cache.get("cli_a", slow))) for _ in range(8)]
    for thread in others:
        thread.start()
    for thread in others:
        thread.join(10)
    assert answers == [old] * 8 and loads == ["cli_a"]  # one read; the others did not wait
    clock[0] += auth.STATUS_RELOAD_GRACE  # the reader is stuck past the grace: read again
    assert cache.get("cli_a", lambda _id: new) is new
    release.set()
    reader.join(10)
    assert cache.get("cli_a", slow) is new and loads == ["cli_a"]


def test_disabled_tenant_tokens_stop_working(app, client, tenant_factory, monkeypatch):
    t = tenant_factory()
    assert client.get("/v1/tenant", headers=t.headers).status_code == 200
    with unit_of_work(app.extensions["rop"].db) as uow:
        service.set_tenant_status(CallContext.system(), uow, t.slug, "disabled")
        uow.commit()
    clock = [time.monotonic() + auth.STATUS_TTL + 0.01]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    response = client.get("/v1/tenant", headers=t.headers)
    _assert_401(response)
    assert "disabled" in response.get_json()["detail"]
    assert client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers=_basic(t.client_id, t.client_secret)).status_code == 401


def test_wrong_scope_is_403(client, tenant_factory):
    t = tenant_factory(scopes=["products:read"])
    response = client.get("/v1/tenant", headers=t.headers)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert "tenant:read" in response.get_json()["detail"]


def test_secrets_are_never_stored_in_clear(app, tenant_factory):
    made = [tenant_factory() for _ in range(3)]
    from sqlalchemy import MetaData

    engine = app.extensions["rop"].db.engine
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        dump = " ".join(str(v) for table in metadata.sorted_tables
                        for row in conn.execute(select(table)) for v in row)
    for t in made:
        assert t.client_secret not in dump
        assert t.client_id in dump  # the scan did see the rows
    assert "$argon2" in dump


def test_secrets_are_verified_with_argon2_and_unknown_ids_are_refused_without_it(app, tenant_factory, argon2_calls):
    t = tenant_factory()
    with unit_of_work(app.extensions["rop"].db) as uow:
        assert service.authenticate_client(uow, t.client_id, t.client_secret) is not None
        assert service.authenticate_client(uow, t.client_id, "wrong") is None
        assert service.authenticate_client(uow, "cli_unknown", "wrong") is None
    # the known id's attempts went through argon2's verify; the unknown id cost no verification
    assert len(argon2_calls) == 2 and all(h.startswith("$argon2") for h in argon2_calls)


def test_secrets_are_hashed_with_rfc_9106_parameters_outside_the_suite_and_either_kind_verifies():
    """The suite's apps (Config.testing) hash with argon2's CHEAPEST profile; every other app,
    the default, with RFC 9106's low-memory one (t=3, 64 MiB, p=4). A hash carries its own
    parameters: a secret hashed under one profile verifies under the other."""
    from hub.tenancy.service import _Argon2

    hasher = _Argon2()
    strong = hasher.hash("s3cret")
    assert strong.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert hasher.dummy.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    hasher.use(cheap=True)
    cheap = hasher.hash("s3cret")
    assert cheap.startswith("$argon2id$v=19$m=8,t=1,p=1$") and hasher.dummy.startswith("$argon2id$v=19$m=8,")
    assert hasher.verify(strong, "s3cret") and hasher.verify(cheap, "s3cret")
    hasher.use(cheap=False)
    assert hasher.verify(cheap, "s3cret") and hasher.hash("x").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_only_an_app_made_for_tests_hashes_cheaply(app):
    assert app.config["TESTING"] and service._hasher.params.time_cost == 1
    from hub.app import create_app
    from hub.config import Config

    state = app.extensions["rop"]
    real = create_app(Config.from_env({}, instance_path=state.config.instance_path,
                                      database_url=state.config.database_url, redis_url=state.config.redis_url))
    try:
        assert not real.config["TESTING"] and service._hasher.params.memory_cost == 65536
    finally:
        real.extensions["rop"].close()
        service.use_cheap_password_hashing(True)


def test_service_context_carries_the_service_identity_and_the_originating_tenant(tenant_factory):
    from hub.auth import require_service_call, service_context
    from hub.errors import Forbidden

    t = tenant_factory()
    svc = service_context(t.ctx, "transactions")
    assert svc.client_id == "svc_transactions" and svc.tenant_id == t.id
    assert svc.on_behalf_of == t.client_id
    require_service_call(svc, "wallets:hold")  # accepted
    with pytest.raises(Forbidden):
        require_service_call(t.ctx, "wallets:hold")  # a tenant's own client may not
    with pytest.raises(Forbidden):
        require_service_call(service_context(t.ctx, "products"), "wallets:hold")  # wrong scope


def test_service_client_may_act_for_a_tenant_over_http_only_with_the_scope(app, client, tenant_factory):
    t = tenant_factory()
    state = app.extensions["rop"]
    with unit_of_work(state.db) as uow:
        ctx = CallContext.system()
        svc, _ = service.create_client(ctx, uow, None, kind="service", scopes=["tenants:act-as", "tenant:read"])
        plain, _ = service.create_client(ctx, uow, None, kind="service", scopes=["tenant:read"])
        uow.commit()

    def token(c):
        return {"Authorization": "Bearer " + issue_access_token(state.config.secret_key, c.id, None, c.scope_set, 600)}

    ok = client.get("/v1/tenant", headers={**token(svc), "ROP-On-Behalf-Of": t.id})
    assert ok.status_code == 200 and ok.get_json()["id"] == t.id
    assert client.get("/v1/tenant", headers={**token(plain), "ROP-On-Behalf-Of": t.id}).status_code == 403
    assert client.get("/v1/tenant", headers={**t.headers, "ROP-On-Behalf-Of": t.id}).status_code == 403
    assert client.get("/v1/tenant", headers={**token(svc), "ROP-On-Behalf-Of": "ten_nope"}).status_code == 404


def test_client_management_is_audited(app, tenant_factory):
    from hub.tenancy.models import AuditEntry

    t = tenant_factory()
    with unit_of_work(app.extensions["rop"].db) as uow:
        service.revoke_client(CallContext.system(actor="admin:ops@example.com"), uow, t.client_id)
        uow.commit()
        entries = list(uow.session.scalars(select(AuditEntry).where(AuditEntry.tenant_id == t.id).order_by(AuditEntry.id)))
    actions = [e.action for e in entries]
    assert actions == ["tenant.created", "client.created", "client.revoked"]
    revoked = entries[-1]
    assert revoked.actor == "admin:ops@example.com" and revoked.actor_type == "admin"
    assert revoked.before["status"] == "active" and revoked.after["status"] == "revoked"


def _token_for(client, client_id: str, secret: str) -> dict[str, str]:
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=_basic(client_id, secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def test_rotating_the_secret_ends_the_tokens_issued_before_it(app, config, client, tenant_factory, monkeypatch,
                                                               capsys):
    from hub.cli import main

    t = tenant_factory()
    before = _token_for(client, t.client_id, t.client_secret)
    assert client.get("/v1/tenant", headers=before).status_code == 200  # the client's status is cached now

    # The operator rotates from the CLI, another process as far as this app is concerned.
    monkeypatch.setenv("ROP_DATABASE_URL", config.database_url)
    monkeypatch.setenv("ROP_REDIS_URL", app.extensions["rop"].redis_url)
    monkeypatch.setenv("ROP_INSTANCE_PATH", str(config.instance_path))
    assert main(["clients", "rotate-secret", t.client_id]) == 0
    new_secret = capsys.readouterr().out.strip().removeprefix("client_secret: ")
    assert new_secret and new_secret != t.client_secret

    # Within the status TTL (<= 5 s, as for a revocation) the old token is dead.
    assert auth.STATUS_TTL <= 5
    clock = [time.monotonic() + auth.STATUS_TTL + 0.01]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    refused = client.get("/v1/tenant", headers=before)
    _assert_401(refused)
    assert "rotated" in refused.get_json()["detail"]
    # The old secret gets no token; the new one does, and that token works.
    assert client.post("/oauth/token", data={"grant_type": "client_credentials"},
                       headers=_basic(t.client_id, t.client_secret)).status_code == 401
    after = _token_for(client, t.client_id, new_secret)
    assert client.get("/v1/tenant", headers=after).get_json()["id"] == t.id
    # A second rotation ends that one too; the audit log has both versions.
    with unit_of_work(app.extensions["rop"].db) as uow:
        service.rotate_client_secret(CallContext.system(), uow, t.client_id)
        uow.commit()
    clock[0] += auth.STATUS_TTL + 0.01
    _assert_401(client.get("/v1/tenant", headers=after))
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rotations = uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "client.secret_rotated",
                                                                 AuditEntry.target_id == t.client_id)
                                        .order_by(AuditEntry.id)).all()
        assert [(e.before, e.after) for e in rotations] == [
            ({"token_version": 0}, {"token_version": 1}), ({"token_version": 1}, {"token_version": 2})]


def test_a_token_signed_with_the_real_key_but_naming_another_tenant_is_refused(app, client, tenant_factory):
    """Defence in depth: were the signing key to leak (or a bug mint one), a token claiming
    another tenant for a client does not act for that tenant."""
    victim, attacker = tenant_factory(), tenant_factory()
    state = app.extensions["rop"]
    key = state.config.secret_key
    forged = issue_access_token(key, attacker.client_id, victim.id, attacker.scopes, 600)
    response = client.get("/v1/tenant", headers={"Authorization": f"Bearer {forged}"})
    _assert_401(response)
    assert client.get("/v1/wallets", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    # No tenant at all for a tenant's client, and a tenant for a platform (service) client: refused too.
    _assert_401(client.get("/v1/tenant", headers={
        "Authorization": "Bearer " + issue_access_token(key, attacker.client_id, None, attacker.scopes, 600)}))
    with unit_of_work(state.db) as uow:
        svc, _ = service.create_client(CallContext.system(), uow, None, kind="service",
                                       scopes=["tenants:act-as", "tenant:read"])
        uow.commit()
    _assert_401(client.get("/v1/tenant", headers={
        "Authorization": "Bearer " + issue_access_token(key, svc.id, victim.id, svc.scope_set, 600)}))
    # The untampered tokens of both still work.
    assert client.get("/v1/tenant", headers=attacker.headers).get_json()["id"] == attacker.id
    assert client.get("/v1/tenant", headers=victim.headers).get_json()["id"] == victim.id


def test_a_service_client_is_never_given_a_secret(app, client, tenant_factory):
    """The hub's services act in-process (hub.auth.service_context): their client rows have
    no usable secret. Rotating one would mint a credential that, over HTTP with
    ROP-On-Behalf-Of, buys for every tenant (svc_bulk holds transactions:write and
    tenants:act-as) and appears in no client list: refused, nothing changed."""
    from hub.errors import Conflict
    from hub.tenancy.models import ApiClient

    t = tenant_factory()
    state = app.extensions["rop"]
    with unit_of_work(state.db) as uow:
        service.ensure_service_clients(uow)
        uow.commit()
    with unit_of_work(state.db) as uow:
        before = uow.session.get(ApiClient, "svc_bulk")
        hash_before, version_before = before.secret_hash, before.token_version
        with pytest.raises(Conflict):
            service.rotate_client_secret(CallContext.system(actor="admin:ops@example.com"), uow, "svc_bulk")
        uow.rollback()
    with unit_of_work(state.db) as uow:
        after = uow.session.get(ApiClient, "svc_bulk")
        assert (after.secret_hash, after.token_version) == (hash_before, version_before)
    # A tenant's client still rotates.
    with unit_of_work(state.db) as uow:
        _, secret = service.rotate_client_secret(CallContext.system(), uow, t.client_id)
        uow.commit()
    assert client.get("/v1/tenant", headers=_token_for(client, t.client_id, secret)).status_code == 200


def test_a_service_client_gets_no_token_even_with_a_secret_set_before_that_rule(app, client, argon2_calls):
    """A deployment where a ``svc_*`` row was given a secret (before rotation refused it):
    POST /oauth/token answers invalid_client for it, as for an unknown id, without argon2."""
    import secrets as secrets_

    from hub.tenancy.models import ApiClient

    state = app.extensions["rop"]
    with unit_of_work(state.db) as uow:
        service.ensure_service_clients(uow)
        uow.commit()
    secret = secrets_.token_urlsafe(32)
    with unit_of_work(state.db) as uow:  # what a rotation did before
        uow.session.get(ApiClient, "svc_bulk").secret_hash = service._hasher.hash(secret)
        uow.commit()
    answer = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": "Basic " + base64.b64encode(f"svc_bulk:{secret}".encode()).decode()})
    assert answer.status_code == 401 and answer.json["error"] == "invalid_client"
    assert argon2_calls == []
