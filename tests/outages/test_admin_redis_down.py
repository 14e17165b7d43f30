"""The admin UI keeps its sessions in Redis: while Redis is away its pages answer 503 with
Retry-After (never a 500 from the session layer), and log in again once Redis is back."""
from __future__ import annotations

from hub.availability import RETRY_AFTER
from tests.admin.conftest import csrf_from, login, make_admin


def test_admin_pages_answer_503_without_redis_and_work_again_once_it_is_back(app, client, own_redis):
    email = make_admin(app)
    assert login(client, email).status_code == 302
    token = csrf_from(client, "/admin/tenants/")
    own_redis.stop()
    try:
        for response in (client.get("/admin/tenants/"), client.post("/admin/logout", data={"csrf_token": token})):
            assert response.status_code == 503, response.get_data(as_text=True)
            assert response.headers["Retry-After"] == str(RETRY_AFTER)
        assert client.get("/admin/assets/admin.css").status_code == 200
    finally:
        own_redis.start()
    # A restarted (empty) Redis holds no session: back to the login page, then in again.
    assert client.get("/admin/tenants/").headers["Location"].startswith("/admin/login")
    assert login(client, email).status_code == 302
    assert client.get("/admin/tenants/").status_code == 200
