"""Northbound push: what the platform's core says about subscriptions of outside systems
(the city operations platform, integrators) to its events. Pure parts (filters, the
envelope, the signature, secrets at rest, the event sources' queries) and the registry
tables; the pusher that runs them is ``alarms/northbound`` (docs/northbound.md)."""
