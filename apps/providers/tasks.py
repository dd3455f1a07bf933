"""The provider layer's tasks: the sandbox's simulated provider, declared with its kind
(imported here so Celery's autodiscovery registers it)."""

from apps.providers.kinds.sandbox import sandbox_simulate_task

__all__ = ["sandbox_simulate_task"]
