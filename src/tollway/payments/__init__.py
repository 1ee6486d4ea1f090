"""Adapters to card payment gateways (SPEC §17.2); the composition root picks one, the services see the port."""
