"""Resources that configure the platform: tenants, endpoints, the event-type catalogue
(conventions: :mod:`hookyard_client.methods`)."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import TypeAdapter

from hookyard_client.core import Call, Listing, compact
from hookyard_client.fields import UNSET, Unset, When, changes, nothing, route_path
from hookyard_client.methods import M, Resource, listing, operation
from hookyard_client.models import (
    ApiKey,
    ApiKeyCreated,
    Endpoint,
    EndpointWithSecret,
    EventType,
    PortalLink,
    RecoverResult,
    Secret,
    Tenant,
    TenantCreated,
)

# An alias: inside a resource class ``list`` names its list method, not the builtin.
ApiKeyList = list[ApiKey]
_API_KEYS = TypeAdapter(ApiKeyList)


class Tenants(Resource[M]):
    """Tenants, their API keys and portal links (admin token; a tenant key may read its own)."""

    @operation
    def create(self, name: str) -> Call[TenantCreated]:
        """``POST /v1/tenants``: a tenant and its first API key (``api_key``, shown once). Not retried."""
        return Call("POST", "/v1/tenants", TenantCreated.model_validate, json={"name": name})

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[Tenant]:
        """``GET /v1/tenants``: every tenant, newest first."""
        return Listing("/v1/tenants", Tenant.model_validate, page_size=page_size)

    @operation
    def get(self, tenant_id: str) -> Call[Tenant]:
        """``GET /v1/tenants/{id}``."""
        return Call("GET", route_path("/v1/tenants/{}", tenant_id), Tenant.model_validate, retry_safe=True)

    @operation
    def delete(self, tenant_id: str) -> Call[None]:
        """``DELETE /v1/tenants/{id}``: the tenant, its keys and endpoints at once; its data in an RQ
        job (``GET /v1/tenants/{id}/deletion`` follows it)."""
        return Call("DELETE", route_path("/v1/tenants/{}", tenant_id), nothing, retry_safe=True)

    @operation
    def create_api_key(self, tenant_id: str) -> Call[ApiKeyCreated]:
        """``POST /v1/tenants/{id}/api-keys``: one more key (``api_key``, shown once). Not retried."""
        return Call("POST", route_path("/v1/tenants/{}/api-keys", tenant_id), ApiKeyCreated.model_validate)

    @operation
    def list_api_keys(self, tenant_id: str) -> Call[ApiKeyList]:
        """``GET /v1/tenants/{id}/api-keys``: the tenant's keys (their prefixes, never the keys)."""
        path = route_path("/v1/tenants/{}/api-keys", tenant_id)
        return Call("GET", path, _API_KEYS.validate_python, retry_safe=True)

    @operation
    def revoke_api_key(self, tenant_id: str, key_id: str) -> Call[None]:
        """``DELETE /v1/tenants/{id}/api-keys/{key_id}``: the key stops working."""
        path = route_path("/v1/tenants/{}/api-keys/{}", tenant_id, key_id)
        return Call("DELETE", path, nothing, retry_safe=True)

    @operation
    def create_portal_link(self, tenant_id: str, *, expires_in_s: float | None = None) -> Call[PortalLink]:
        """``POST /v1/tenants/{id}/portal-links``: a one-time sign-in link to the tenant's portal.
        Not retried."""
        path = route_path("/v1/tenants/{}/portal-links", tenant_id)
        return Call("POST", path, PortalLink.model_validate, json=compact(expires_in_s=expires_in_s))


class Endpoints(Resource[M]):
    """Where a tenant's events go."""

    @operation
    def create(
        self,
        url: str,
        *,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit_per_s: float | None = None,
        max_in_flight: int | None = None,
        ordering: Literal["fifo"] | str | None = None,
        signing: Literal["hmac-sha256", "ed25519"] | str | None = None,
        disabled: bool | None = None,
    ) -> Call[EndpointWithSecret]:
        """``POST /v1/endpoints``: the endpoint with its signing ``secret``. Not retried.

        Fields left None take the server's defaults (all event types, no custom headers...).
        """
        body = compact(
            url=url,
            description=description,
            event_types=None if event_types is None else list(event_types),
            headers=None if headers is None else dict(headers),
            rate_limit_per_s=rate_limit_per_s,
            max_in_flight=max_in_flight,
            ordering=ordering,
            signing=signing,
            disabled=disabled,
        )
        return Call("POST", "/v1/endpoints", EndpointWithSecret.model_validate, json=body)

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[Endpoint]:
        """``GET /v1/endpoints``: every endpoint of the tenant, newest first."""
        return Listing("/v1/endpoints", Endpoint.model_validate, page_size=page_size)

    @operation
    def get(self, endpoint_id: str) -> Call[Endpoint]:
        """``GET /v1/endpoints/{id}``."""
        return Call(
            "GET", route_path("/v1/endpoints/{}", endpoint_id), Endpoint.model_validate, retry_safe=True
        )

    @operation
    def update(
        self,
        endpoint_id: str,
        *,
        url: str | Unset = UNSET,
        description: str | Unset | None = UNSET,
        event_types: Sequence[str] | Unset | None = UNSET,
        headers: Mapping[str, str] | Unset | None = UNSET,
        rate_limit_per_s: float | Unset | None = UNSET,
        max_in_flight: int | Unset | None = UNSET,
        ordering: str | Unset | None = UNSET,
        disabled: bool | Unset = UNSET,
        paused: bool | Unset = UNSET,
    ) -> Call[Endpoint]:
        """``PATCH /v1/endpoints/{id}``: changes the fields given (None sets one to null: all event
        types, no rate limit...); ``disabled=False`` re-enables; ``paused=True`` holds every
        delivery (pending, nothing sent) until ``paused=False``. Retried (it sets values)."""
        body = changes(
            url=url,
            description=description,
            event_types=event_types if not isinstance(event_types, Sequence) else list(event_types),
            headers=headers if not isinstance(headers, Mapping) else dict(headers),
            rate_limit_per_s=rate_limit_per_s,
            max_in_flight=max_in_flight,
            ordering=ordering,
            disabled=disabled,
            paused=paused,
        )
        path = route_path("/v1/endpoints/{}", endpoint_id)
        return Call("PATCH", path, Endpoint.model_validate, json=body, retry_safe=True)

    @operation
    def delete(self, endpoint_id: str) -> Call[None]:
        """``DELETE /v1/endpoints/{id}``: nothing more is routed to it."""
        return Call("DELETE", route_path("/v1/endpoints/{}", endpoint_id), nothing, retry_safe=True)

    @operation
    def get_secret(self, endpoint_id: str) -> Call[Secret]:
        """``GET /v1/endpoints/{id}/secret``: the current signing secret."""
        path = route_path("/v1/endpoints/{}/secret", endpoint_id)
        return Call("GET", path, Secret.model_validate, retry_safe=True)

    @operation
    def rotate_secret(self, endpoint_id: str, *, grace_period_s: float | None = None) -> Call[Secret]:
        """``POST /v1/endpoints/{id}/secret/rotate``: a new secret; the old one keeps signing (a
        second signature) for ``grace_period_s`` (server default 86400). Not retried."""
        path = route_path("/v1/endpoints/{}/secret/rotate", endpoint_id)
        return Call("POST", path, Secret.model_validate, json=compact(grace_period_s=grace_period_s))

    @operation
    def recover(self, endpoint_id: str, since: When, until: When | None = None) -> Call[RecoverResult]:
        """``POST /v1/endpoints/{id}/recover``: re-sends what died at this endpoint between ``since``
        and ``until`` (default now), as a replay. Not retried."""
        path = route_path("/v1/endpoints/{}/recover", endpoint_id)
        return Call("POST", path, RecoverResult.model_validate, json=compact(since=since, until=until))


class EventTypes(Resource[M]):
    """The tenant's event-type catalogue; a catalogued type's JSON Schema is checked at ingest."""

    @operation
    def create(
        self,
        name: str,
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        archived: bool | None = None,
    ) -> Call[EventType]:
        """``POST /v1/event-types``. Not retried."""
        body = compact(
            name=name,
            description=description,
            schema=None if schema is None else dict(schema),
            archived=archived,
        )
        return Call("POST", "/v1/event-types", EventType.model_validate, json=body)

    @listing
    def list(self, *, page_size: int | None = None) -> Listing[EventType]:
        """``GET /v1/event-types``."""
        return Listing("/v1/event-types", EventType.model_validate, page_size=page_size)

    @operation
    def get(self, name: str) -> Call[EventType]:
        """``GET /v1/event-types/{name}``."""
        return Call("GET", route_path("/v1/event-types/{}", name), EventType.model_validate, retry_safe=True)

    @operation
    def update(
        self,
        name: str,
        *,
        description: str | Unset | None = UNSET,
        schema: Mapping[str, Any] | Unset | None = UNSET,
        archived: bool | Unset = UNSET,
    ) -> Call[EventType]:
        """``PATCH /v1/event-types/{name}``: changes the fields given (``schema=None`` drops the
        schema). Retried (it sets values)."""
        body = changes(
            description=description,
            schema=schema if not isinstance(schema, Mapping) else dict(schema),
            archived=archived,
        )
        path = route_path("/v1/event-types/{}", name)
        return Call("PATCH", path, EventType.model_validate, json=body, retry_safe=True)

    @operation
    def delete(self, name: str) -> Call[None]:
        """``DELETE /v1/event-types/{name}``."""
        return Call("DELETE", route_path("/v1/event-types/{}", name), nothing, retry_safe=True)
