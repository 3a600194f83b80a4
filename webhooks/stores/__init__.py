"""The stores: tenants and API keys, endpoints, events/deliveries/dead letters as callers read
them, replays, the event-type catalogue, paging, and the policy the store applies.
:class:`webhooks.stores.store.Store` is the one way the API and the CLI read or change them.
"""
