"""The :class:`SMS` Flask extension object: configuration, registration, and thin methods
that hand the work to the domain packages (:mod:`sms_ext.messages`, :mod:`sms_ext.otp`,
:mod:`sms_ext.gateways`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask
from flask.typing import ResponseReturnValue

from . import admin, config, hooks
from .balance.mail import init_mail
from .campaigns import AudienceSource, Campaigns, OptOuts
from .cli import sms_cli
from .errors import OtpRateLimited, OtpUnavailable
from .gateways import locations as gateway_locations
from .gateways import store as gateway_store
from .gateways.vault import Vault
from .messages import outbox, template_store
from .models import Gateway, Kind, Message, MessageTemplate
from .otp import flow as otp_flow
from .state import Registrations, SMSState, get_state


class SMS:
    """SMS sending for a Flask app: gateways with fallback, an outbox, RQ workers.

    ``SMS(app)`` or ``sms = SMS(); sms.init_app(app)``. The app must use Flask-SQLAlchemy:
    messages are stored through its session, in the caller's transaction.

    Transactions: every method that writes takes ``commit=``. With ``commit=True`` (the
    default) the method commits; with ``False`` its rows join the caller's transaction and
    their delivery jobs are enqueued when the caller commits (nothing is sent on rollback).
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._registrations = Registrations()
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
            settings=settings,
            vault=Vault(settings.encryption_key),
            db=db,
            instance_path=app.instance_path,
            registrations=self._registrations,
        )
        app.cli.add_command(sms_cli)
        app.register_blueprint(Blueprint("sms", __name__, template_folder="templates"))
        app.register_blueprint(admin.bp, url_prefix=settings.admin_url_prefix)
        hooks.register(app, settings)
        app.before_request(otp_flow.handle_step)
        app.register_error_handler(OtpRateLimited, otp_flow.error_page)
        app.register_error_handler(OtpUnavailable, otp_flow.error_page)
        otp_flow.register_template_globals(app)
        init_mail(app)  # balance alerts: the host's Flask-Mail, or one of our own

    def admin_check(
        self, callback: Callable[[], bool | ResponseReturnValue]
    ) -> Callable[[], bool | ResponseReturnValue]:
        """Register who may use the admin pages (decorator, Flask-Login style).

        The callback runs before every admin request: ``True`` lets it through, a response
        (say, a redirect to the host's login page) is returned as is, anything else is a 403.
        Without a callback every admin page is denied.
        """
        self._registrations.admin_callback = callback
        return callback

    def admin_name(self, callback: Callable[[], str | None]) -> Callable[[], str | None]:
        """Register who the current admin is (decorator): the name is recorded as the sender
        of test messages and the creator of campaigns made on the admin pages, so the SMS log
        says who sent what. Without one those fields stay empty."""
        self._registrations.admin_name = callback
        return callback

    def admin_page(self, endpoint: str, label: str) -> None:
        """Show a host page in the admin menu, after the extension's own areas.

        The page stays the host's (its view, its access check); extending
        ``sms/admin/base.html`` gives it the same header, menu and styles.
        """
        pages = self._registrations.admin_pages
        if (endpoint, label) not in pages:
            pages.append((endpoint, label))

    def protect(
        self,
        blueprint: Blueprint | str,
        *,
        on_verified: Callable[[str, bool], ResponseReturnValue],
        required: Callable[[], bool] = lambda: True,
        location: Callable[[], str | None] = lambda: None,
        region: Callable[[], str | None] = lambda: None,
        branding: Callable[[], Mapping[str, str]] | None = None,
        language: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Add the SMS code step to a splash blueprint (before or after it is registered).

        The blueprint's view calls :meth:`verify_phone` with the typed number; the code page
        posts back to the same URL and is answered by the extension.

        :param on_verified: ``(phone_e164, verified_by_otp) -> response``, called once the
            phone is verified (or at once when ``required`` is false); it connects the guest.
        :param required: whether this request needs a code (the splash page's toggle).
        :param location: the location key: per-location limits and gateway choice.
        :param region: default region for numbers typed without ``+``.
        :param branding: the venue's look on the code and error pages, so the guest stays on
            "the venue's page": a mapping with any of ``name`` (shown above the card),
            ``title``, ``logo_url``, ``accent`` (a CSS colour for buttons and links) and
            ``background`` (a CSS colour). A host wanting more overrides
            ``sms/otp/base.html`` in its own templates.
        :param language: the guest's language tag (``es``): the code SMS is the ``otp``
            template of that language, else the English one, else ``SMS_OTP_MESSAGE``.
        All callbacks run in the request context of the protected view.
        """
        name = blueprint if isinstance(blueprint, str) else blueprint.name
        protection = otp_flow.Protection(
            on_verified, required, location, region, branding, language
        )
        self._registrations.protected[name] = protection

    def verify_phone(self, raw_phone: str) -> ResponseReturnValue:
        """Verify the guest's number from inside a protected view; returns the response.

        Raises :class:`~sms_ext.PhoneNumberError` (a sentence for the guest) for a number that
        is not acceptable, :class:`~sms_ext.OtpRateLimited` (429) when limits refuse.
        """
        return otp_flow.verify_phone(raw_phone)

    def send(
        self,
        to: str,
        body: str,
        *,
        kind: str = Kind.PERSONAL,
        location: str | None = None,
        customer: str | None = None,
        sent_by: str | None = None,
        expires_at: datetime | None = None,
        region: str | None = None,
        gateway: Gateway | None = None,
        commit: bool = True,
    ) -> Message:
        """Queue one SMS and return its :class:`~sms_ext.Message` row.

        :param to: the recipient, in any format phonenumbers understands with ``region`` (or
            ``SMS_DEFAULT_REGION``) as the default country; raises
            :class:`~sms_ext.PhoneNumberError` when it is not a valid number, and
            :class:`~sms_ext.MessageError` for an empty or too long text or an unknown kind.
        :param kind: one of :class:`~sms_ext.Kind`.
        :param location: the host's location key; picks the gateways that serve it.
        :param customer: a free reference to the host's guest/customer record.
        :param sent_by: who sent it by hand (an admin's username), shown in the SMS log.
        :param expires_at: give up after this time (default: the "days to expire" setting).
        :param gateway: send through this gateway only (test sends), even if disabled.
        :param commit: commit now (default), or leave the row in the caller's transaction.
        """
        state = get_state()
        row = outbox.compose(
            state,
            to,
            body,
            kind=kind,
            location=location,
            customer=customer,
            sent_by=sent_by,
            expires_at=expires_at,
            region=region,
            gateway=gateway,
        )
        return outbox.queue_one(state, row, commit=commit)

    def send_bulk(
        self,
        recipients: Iterable[tuple[str, str]],
        *,
        kind: str = Kind.CAMPAIGN,
        location: str | None = None,
        sent_by: str | None = None,
        expires_at: datetime | None = None,
        region: str | None = None,
        commit: bool = True,
    ) -> list[int]:
        """Queue many messages (``(to, body)`` pairs); returns their ids, in order.

        Rows go in with bulk inserts and each job carries ``SMS_BATCH_SIZE`` ids, so a worker
        sends a whole batch over kept-alive connections (and a provider's bulk endpoint);
        ``sent_by`` names the admin who started it, on every row (see :meth:`send`).
        Every number and text is checked before anything is written: one bad entry raises
        (see :meth:`send`) and nothing is queued.
        """
        state = get_state()
        expiry = outbox.expiry(state, expires_at)  # once: every row of the batch shares it
        rows = [
            outbox.compose(
                state,
                to,
                body,
                kind=kind,
                location=location,
                sent_by=sent_by,
                expires_at=expiry,
                region=region,
            )
            for to, body in recipients
        ]
        ids = outbox.queue(state, rows)
        if commit:
            state.session.commit()
        return ids

    def templates(
        self, kind: str | None = None, language: str | None = None
    ) -> list[MessageTemplate]:
        """The stored SMS templates by kind, language and name, optionally only one kind
        (``"otp"``, ``"voucher"``, ``"personal"``, ``"campaign"``, ``"notice"``) or language."""
        return template_store.listed(get_state().session, kind, language)

    def render_template(
        self,
        kind: str,
        variables: Mapping[str, object],
        *,
        language: str | None = None,
        template_id: int | None = None,
    ) -> str:
        """The text of an SMS template with ``variables`` (see
        ``sms_ext.text.templates.VARIABLES[kind]``; missing ones render empty).

        The template is ``template_id`` when given, else the ``kind`` template in ``language``
        (``es-mx``, then ``es``), else in English; the first by name when several match. Raises
        :class:`~sms_ext.TemplateError` when there is none or it cannot be rendered (the text
        would exceed 1,600 characters, say).
        """
        return template_store.render(
            get_state().session, kind, variables, language=language, template_id=template_id
        )

    def save_gateway(
        self, data: Mapping[str, Any], gateway: Gateway | None = None, *, commit: bool = True
    ) -> Gateway:
        """Create a gateway (or update ``gateway``) from form-shaped ``data``.

        Field names are those of the admin form and of ``flask sms gateways export``; secrets
        are encrypted, and a blank secret on update keeps the stored one. Raises
        :class:`~sms_ext.GatewayConfigError` with a message per field.
        """
        state = get_state()
        deny_private = state.settings.gateway_deny_private
        saved = gateway_store.save_gateway(
            state.session, state.vault, data, gateway, deny_private=deny_private
        )
        if commit:
            state.session.commit()
        return saved

    def import_gateways(
        self, items: Sequence[Mapping[str, Any]], *, commit: bool = True
    ) -> list[Gateway]:
        """Create or update (by name) every gateway in ``items``, all or nothing.

        Raises :class:`~sms_ext.GatewayConfigError` whose fields name the entry (``"2.url"``);
        every entry is checked before any is written, so a refused file changes nothing.
        """
        state = get_state()
        saved = gateway_store.import_gateways(
            state.session, state.vault, items, deny_private=state.settings.gateway_deny_private
        )
        if commit:
            state.session.commit()
        return saved

    def gateways_for_location(self, key: str) -> list[Gateway]:
        """Every gateway (enabled or not) that serves location ``key``, in priority order."""
        return gateway_locations.gateways_for_location(get_state().session, key)

    def set_location_gateways(
        self,
        key: str,
        gateway_ids: Iterable[int],
        *,
        all_locations: Iterable[str],
        commit: bool = True,
    ) -> None:
        """Make exactly the gateways ``gateway_ids`` serve location ``key``; none given means
        every gateway. Every other location of ``all_locations`` (the host's location keys)
        keeps the gateways it had. Raises :class:`~sms_ext.GatewayConfigError` (field
        ``gateways``) before changing anything.
        """
        state = get_state()
        gateway_locations.set_location_gateways(state.session, key, gateway_ids, all_locations)
        if commit:
            state.session.commit()

    def campaign_audience(self, source: AudienceSource) -> AudienceSource:
        """Register where campaigns find the host's guests (see
        :class:`~sms_ext.campaigns.AudienceSource`); returns it. Without one, campaigns
        reach pasted lists of numbers only."""
        self._registrations.audience = source
        return source

    @property
    def campaigns(self) -> Campaigns:
        """Mass SMS campaigns (:class:`~sms_ext.campaigns.Campaigns`), inside an app context."""
        return Campaigns()

    @property
    def opt_outs(self) -> OptOuts:
        """The opt-out list campaigns never reach (:class:`~sms_ext.campaigns.OptOuts`)."""
        return OptOuts()

    def rename_location(self, old: str, new: str, *, commit: bool = True) -> None:
        """The host renamed location key ``old`` to ``new``: its gateways follow it."""
        state = get_state()
        gateway_locations.rename_location(state.session, old, new)
        if commit:
            state.session.commit()
