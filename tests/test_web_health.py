"""/healthz answers 200 when the database does and 503 when it does not."""

from __future__ import annotations

import pytest

import lookup_web
from doxa.services._proc import free_port
from lookup_web import create_app


@pytest.mark.db
def test_healthz_ok(db_url: str) -> None:
    app = create_app({"DATABASE_URL": db_url, "TESTING": True})
    try:
        response = app.test_client().get("/healthz")
        assert response.status_code == 200
        assert response.get_json() == {"status": "ok"}
    finally:
        lookup_web.close(app)


def test_healthz_unavailable() -> None:
    url = f"postgresql://doxa@127.0.0.1:{free_port()}/doxa?connect_timeout=1"
    app = create_app({"DATABASE_URL": url, "TESTING": True, "DB_POOL_TIMEOUT": 1})
    try:
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.get_json()["status"] == "unavailable"
        page = app.test_client().get("/no-such-page")
        assert page.status_code == 404
        assert b'<html lang="vi">' in page.data
    finally:
        lookup_web.close(app)
