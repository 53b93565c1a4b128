"""``/staff/reviews``: customers' requests to change their name or address, or to take the
account over as its new owner, reviewed by staff (contract §13).

Billing staff and admins (capability ``review_accounts``) see the open requests, oldest first,
filtered by province, and approve or reject each with a reason; the decision and the value it
replaced are audited (``care.accounts.decide``). Approving a new owner runs
``care.accounts.change_owner``, the change of owner of ``doxa customers transfer``.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from care import accounts
from lookup_web import auth, db
from lookup_web.customers import _now

bp = Blueprint("reviews", __name__, url_prefix="/staff")
MAX_REASON = 500


@bp.get("/reviews")
@auth.requires("review_accounts")
def page() -> Any:
    province = request.args.get("province", "")[:100] or None
    with db.connection() as conn:
        pending = accounts.pending_requests(conn, province)
        provinces = accounts.request_provinces(conn)
    return render_template(
        "staff/reviews.html", requests=pending, provinces=provinces, province=province or ""
    )


@bp.post("/reviews/<int:request_id>")
@auth.requires("review_accounts")
def decide(request_id: int) -> Any:
    decision = request.form.get("decision")
    reason = " ".join(request.form.get("reason", "").split())
    back = url_for("reviews.page", province=request.form.get("province") or None)
    if decision not in ("approve", "reject") or not reason or len(reason) > MAX_REASON:
        flash(_("Give a reason (at most %(n)d characters) and choose approve or reject.",
                n=MAX_REASON), "error")  # fmt: skip
        return redirect(back)
    if request_id >= 2**63:
        return render_template("error.html", code=404, message=_("No such request.")), 404
    try:
        with db.connection() as conn:
            decided = accounts.decide(conn, request_id, decision == "approve", reason,
                                      current_user.username, _now(),
                                      ZoneInfo(current_app.config["TIMEZONE"]))  # fmt: skip
    except accounts.ReviewError as exc:
        flash(_(str(exc)), "error")
        return redirect(back)
    flash(
        _("Request %(id)d approved.", id=decided.id)
        if decided.state == "approved"
        else _("Request %(id)d rejected.", id=decided.id),
        "info",
    )
    return redirect(back)
