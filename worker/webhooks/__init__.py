"""Lifecycle webhooks (E7): the outbox dispatcher, the delivery job, their processes."""
