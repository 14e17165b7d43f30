"""Dead letters in the admin UI: inspect, replay once the cause is fixed, or discard.

Replay and discard act on the ticked letters; with none ticked the page says so. Discard
asks first on a confirmation page (nothing changes until it is confirmed) and only marks the
letters discarded (``discarded_at``: the list hides them, "show all" shows them); its audit
entry keeps each letter whole. Both are audited.
"""
from __future__ import annotations

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from rop_admin.base import AdminView
from rop_admin.security import admin_ctx, requires_role
from rop_admin.selection import selected_ids

from hub.web import request_uow


def _whole(letter) -> dict:
    """Everything a dead letter holds (a discard's audit entry keeps it whole)."""
    return {"id": letter.id, "message_id": letter.message_id, "type": letter.type, "handler": letter.handler,
            "tenant_id": letter.tenant_id, "attempts": letter.attempts, "last_error": letter.last_error,
            "envelope": letter.envelope}


def _audit(uow, action: str, letters, *, whole: bool = False) -> None:
    from hub.tenancy.service import record_audit

    for letter in letters:
        record_audit(admin_ctx(), uow, action, tenant_id=letter.tenant_id, target_type="dead_letter",
                     target_id=letter.id, before=_whole(letter) if whole else None,
                     after={"type": letter.type, "handler": letter.handler})


class DeadLettersView(AdminView):
    """Dead letters: the error and envelope; replay through the bus; discard."""

    @expose("/")
    def index(self):
        from hub.bus.deadletters import list_dead_letters

        show_all = request.args.get("all") == "1"
        return self.render("rop_admin/dead_letters.html", show_all=show_all,
                           letters=list_dead_letters(request_uow(), include_replayed=show_all, limit=200))

    @expose("/replay", methods=("POST",))
    @requires_role("operator")
    def replay(self):
        from hub.bus.deadletters import replay_dead_letters

        ids = selected_ids("dead letters", "replay")
        if ids is None:
            return redirect(url_for(".index"))
        uow = request_uow()
        letters = replay_dead_letters(current_app._get_current_object(), uow, ids)
        _audit(uow, "dead_letter.replayed", letters)
        uow.commit()
        flash(f"{len(letters)} dead letter(s) replayed.", "success")
        return redirect(url_for(".index"))

    @expose("/discard", methods=("POST",))
    @requires_role("operator")
    def discard(self):
        """First a confirmation page listing the letters; discarded once ``confirmed=1`` comes back."""
        from hub.bus.deadletters import discard_dead_letters, get_dead_letters

        ids = selected_ids("dead letters", "discard")
        if ids is None:
            return redirect(url_for(".index"))
        uow = request_uow()
        if request.form.get("confirmed") != "1":
            return self.render("rop_admin/dead_letters_discard.html", letters=get_dead_letters(uow, ids))
        letters = discard_dead_letters(uow, ids)
        _audit(uow, "dead_letter.discarded", letters, whole=True)
        uow.commit()
        flash(f"{len(letters)} dead letter(s) discarded: they will not be replayed.", "success")
        return redirect(url_for(".index"))
