"""Which gateways serve a location, seen from the location's side.

A gateway keeps the list of location keys it serves, and an empty list means every location
(new ones included). A host's location settings page asks the other way round: "which gateways
does this location use?". Changing that answer for one location must leave every other
location's gateways as they were, so a gateway open to every location that is taken off one
location gets the explicit list of the host's other locations, and a gateway ticked again for
every location the host has goes back to its empty "every location" list.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy.orm import Session

from ..errors import GatewayConfigError
from ..models import Gateway


def gateways_for_location(session: Session, key: str) -> list[Gateway]:
    """Every gateway (enabled or not) that serves ``key``, in priority order."""
    return [gateway for gateway in session.scalars(Gateway.in_order()) if gateway.serves(key)]


def _served_list(gateway: Gateway, key: str, serve: bool, all_keys: Collection[str]) -> list[str]:
    """The new ``locations`` of ``gateway`` once it does (or does not) serve ``key``."""
    current = list(gateway.locations or [])
    if serve:
        if not current:
            return []
        listed = current if key in current else [*current, key]
        # Open to every location the host has: say "every location" again, so new ones join.
        return [] if set(all_keys) <= set(listed) else listed
    base = current or sorted(all_keys)
    remaining = [other for other in base if other != key]
    if not remaining:
        raise GatewayConfigError(
            {
                "gateways": f"Gateway {gateway.name!r} serves no other location: keep it "
                "ticked, or disable it on the Gateways page."
            }
        )
    return remaining


def set_location_gateways(
    session: Session, key: str, gateway_ids: Iterable[int], all_keys: Iterable[str]
) -> None:
    """Make exactly the gateways ``gateway_ids`` serve ``key`` (none given: every gateway);
    what every other location of ``all_keys`` uses stays the same.

    Checks everything before changing anything; not committed (the caller's transaction).

    :param all_keys: every location key of the host, ``key`` included.
    :raises GatewayConfigError: (field ``gateways``) an unknown id, or a gateway that would be
        left serving no location at all.
    """
    keys = {*all_keys, key}
    gateways = list(session.scalars(Gateway.in_order()))
    wanted = set(gateway_ids)
    if unknown := wanted - {gateway.id for gateway in gateways}:
        raise GatewayConfigError({"gateways": f"No gateway with id {min(unknown)}."})
    if not wanted:
        wanted = {gateway.id for gateway in gateways}
    planned = [
        (gateway, _served_list(gateway, key, gateway.id in wanted, keys)) for gateway in gateways
    ]
    for gateway, locations in planned:
        if locations != list(gateway.locations or []):
            gateway.locations = locations


def rename_location(session: Session, old: str, new: str) -> None:
    """Carry the gateways of location ``old`` over to its new key ``new``; not committed."""
    for gateway in session.scalars(Gateway.in_order()):
        current = list(gateway.locations or [])
        if old in current:
            renamed = [new if item == old else item for item in current]
            gateway.locations = list(dict.fromkeys(renamed))
