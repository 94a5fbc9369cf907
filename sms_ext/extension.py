"""The :class:`SMS` Flask extension object."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Flask
from flask.typing import ResponseReturnValue

from . import admin, config, otp, otp_flow, outbox, runtime
from .cli import sms_cli
from .models import Gateway, Kind, Message, Status, utcnow
from .phone import normalize_phone
from .segments import analyze
from .state import SMSState, get_state
from .vault import Vault

MAX_BODY = 1600
"""Longest text we accept: the common provider limit (Twilio's) for one concatenated SMS."""


class SMS:
    """SMS sending for a Flask app: gateways with fallback, an outbox, RQ workers.

    ``SMS(app)`` or ``sms = SMS(); sms.init_app(app)``. The app must use Flask-SQLAlchemy:
    messages are stored through its session, in the caller's transaction.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._protected: dict[str, otp_flow.Protection] = {}
        self.admin_callback: Callable[[], bool | ResponseReturnValue] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read and validate the ``SMS_*`` config; register the state and ``flask sms``."""
        settings = config.load(app.config)
        db = app.extensions.get("sqlalchemy")
        if db is None:
            raise RuntimeError(
                "sms_ext stores messages with Flask-SQLAlchemy: call 'db.init_app(app)' "
                "before 'sms.init_app(app)'."
            )
        app.extensions["sms"] = SMSState(
            extension=self,
            settings=settings,
            vault=Vault(settings.encryption_key),
            db=db,
            instance_path=app.instance_path,
        )
        app.cli.add_command(sms_cli)
        app.register_blueprint(Blueprint("sms", __name__, template_folder="templates"))
        app.register_blueprint(admin.bp, url_prefix=settings.admin_url_prefix)
        app.before_request(lambda: otp_flow.handle_step(self._protected))
        app.register_error_handler(otp.OtpRateLimited, otp_flow.error_page)
        app.register_error_handler(otp.OtpUnavailable, otp_flow.error_page)
        otp_flow.register_template_globals(app)

    def admin_check(
        self, callback: Callable[[], bool | ResponseReturnValue]
    ) -> Callable[[], bool | ResponseReturnValue]:
        """Register who may use the admin pages (decorator, Flask-Login style).

        The callback runs before every admin request: ``True`` lets it through, a response
        (say, a redirect to the host's login page) is returned as is, anything else is a 403.
        Without a callback every admin page is denied.
        """
        self.admin_callback = callback
        return callback

    def protect(
        self,
        blueprint: Blueprint | str,
        *,
        on_verified: Callable[[str, bool], ResponseReturnValue],
        required: Callable[[], bool] = lambda: True,
        location: Callable[[], str | None] = lambda: None,
        region: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Add the SMS code step to a splash blueprint (before or after it is registered).

        The blueprint's view calls :meth:`verify_phone` with the typed number; the code page
        posts back to the same URL and is answered by the extension.

        :param on_verified: ``(phone_e164, verified_by_otp) -> response``, called once the
            phone is verified (or at once when ``required`` is false); it connects the guest.
        :param required: whether this request needs a code (the splash page's toggle).
        :param location: the location key: per-location limits and gateway choice.
        :param region: default region for numbers typed without ``+``.
        All callbacks run in the request context of the protected view.
        """
        name = blueprint if isinstance(blueprint, str) else blueprint.name
        self._protected[name] = otp_flow.Protection(on_verified, required, location, region)

    def verify_phone(self, raw_phone: str) -> ResponseReturnValue:
        """Verify the guest's number from inside a protected view; returns the response.

        Raises :class:`~sms_ext.PhoneNumberError` (a sentence for the guest) for a number that
        is not acceptable, :class:`~sms_ext.OtpRateLimited` (429) when limits refuse.
        """
        return otp_flow.verify_phone(self._protected, raw_phone)

    @staticmethod
    def _expiry(state: SMSState, expires_at: datetime | None) -> datetime:
        if expires_at is None:
            return utcnow() + timedelta(days=runtime.current(state).days_to_expire)
        if expires_at.tzinfo is not None:
            return expires_at.astimezone(UTC).replace(tzinfo=None)
        return expires_at

    @staticmethod
    def _check(body: str, kind: str) -> None:
        if kind not in Kind.ALL:
            raise ValueError(f"Unknown message kind {kind!r}; use one of {', '.join(Kind.ALL)}.")
        if not body or not body.strip():
            raise ValueError("The message is empty.")
        if "\x00" in body:
            raise ValueError("The message contains a NUL character.")
        if len(body) > MAX_BODY:
            raise ValueError(f"The message is longer than {MAX_BODY} characters.")

    def _row(
        self,
        state: SMSState,
        to: str,
        body: str,
        *,
        kind: str,
        location: str | None,
        customer: str | None,
        expires_at: datetime | None,
        region: str | None,
    ) -> dict:
        """A checked, ready-to-insert message row (expiry defaulted and made naive UTC)."""
        self._check(body, kind)
        info = analyze(body)
        now = utcnow()
        row = {
            "kind": kind,
            "to": normalize_phone(
                to, default_region=region or state.settings.default_region, allow_fixed_line=True
            ),
            "body": body,
            "encoding": info.encoding,
            "segments": info.segments,
            "status": Status.QUEUED,
            "location": location,
            "customer_ref": customer,
            "created_at": now,
            "next_attempt_at": now,
            "expires_at": self._expiry(state, expires_at),
            "attempts": 0,
            "only_gateway": False,
        }
        if not runtime.current(state).sending_enabled:
            row.update(
                status=Status.FAILED,
                failed_at=now,
                last_error="SMS sending is switched off.",
            )
        return row

    def send(
        self,
        to: str,
        body: str,
        *,
        kind: str = Kind.PERSONAL,
        location: str | None = None,
        customer: str | None = None,
        expires_at: datetime | None = None,
        region: str | None = None,
        gateway: Gateway | None = None,
        commit: bool = True,
    ) -> Message:
        """Queue one SMS and return its :class:`Message` row.

        :param to: the recipient, in any format phonenumbers understands with ``region`` (or
            ``SMS_DEFAULT_REGION``) as the default country; raises
            :class:`~sms_ext.phone.PhoneNumberError` when it is not a valid number.
        :param kind: one of :class:`~sms_ext.models.Kind`.
        :param location: the host's location key; picks the gateways that serve it.
        :param customer: a free reference to the host's guest/customer record.
        :param expires_at: give up after this time (default: ``SMS_DAYS_TO_EXPIRE`` days).
        :param gateway: send through this gateway only (test sends), even if disabled.
        :param commit: commit now (default). With ``False`` the row joins the caller's
            transaction and its job is enqueued when the caller commits.
        """
        state = get_state()
        row = self._row(
            state,
            to,
            body,
            kind=kind,
            location=location,
            customer=customer,
            expires_at=expires_at,
            region=region,
        )
        message = Message(**row)
        if gateway is not None:
            message.gateway_id = gateway.id
            message.only_gateway = True
        session = state.session
        if message.status == Status.QUEUED:
            message.job_id = outbox.new_job_id()
        session.add(message)
        session.flush()
        if message.status == Status.QUEUED:
            outbox.enqueue_after_commit(session, state.queue, message.job_id, [message.id])
        if commit:
            session.commit()
        return message

    def send_bulk(
        self,
        recipients: Iterable[tuple[str, str]],
        *,
        kind: str = Kind.CAMPAIGN,
        location: str | None = None,
        expires_at: datetime | None = None,
        region: str | None = None,
    ) -> list[int]:
        """Queue many messages (``(to, body)`` pairs) with bulk inserts and batched jobs.

        Each job carries ``SMS_BATCH_SIZE`` ids, so a worker sends a whole batch over one
        kept-alive connection (and a provider's bulk endpoint) and settles it in bulk. The call
        commits; numbers that are not valid raise before anything is written.
        """
        state = get_state()
        expiry = self._expiry(state, expires_at)  # once: every row of the batch shares it
        rows = [
            self._row(
                state,
                to,
                body,
                kind=kind,
                location=location,
                customer=None,
                expires_at=expiry,
                region=region,
            )
            for to, body in recipients
        ]
        size = state.settings.batch_size
        ids: list[int] = []
        for start in range(0, len(rows), size):
            ids.extend(outbox.add_rows(state.session, state.queue, rows[start : start + size]))
        state.session.commit()
        return ids

    def queue_message(
        self,
        to: str,
        body: str,
        *,
        kind: str,
        location: str | None,
        expires_at: datetime,
        region: str | None = None,
    ) -> int:
        """Like :meth:`send` with ``commit=False``, but returns only the new message's id.

        The hot path of guest codes: one Core INSERT, no ORM object to build and flush.
        """
        state = get_state()
        row = self._row(
            state,
            to,
            body,
            kind=kind,
            location=location,
            customer=None,
            expires_at=expires_at,
            region=region,
        )
        return outbox.add_rows(state.session, state.queue, [row])[0]
