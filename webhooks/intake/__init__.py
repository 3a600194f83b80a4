"""Ingest: what an event goes through before it is queued (validation, event types and their
schemas, routing to endpoints, group commit), and the platform's own operational events.
"""
