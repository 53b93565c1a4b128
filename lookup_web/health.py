"""``/healthz``: 200 when the database answers, 503 otherwise (for load balancers)."""

from __future__ import annotations

import psycopg
from flask import Blueprint, jsonify
from psycopg_pool import PoolTimeout

from lookup_web import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    try:
        with db.connection() as conn:
            conn.execute("SELECT 1")
    except (psycopg.Error, PoolTimeout):
        return jsonify(status="unavailable", reason="database unreachable"), 503
    return jsonify(status="ok")
