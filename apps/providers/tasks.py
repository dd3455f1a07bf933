"""The provider layer's tasks: collecting from providers that keep mail for us (a kind's
`poll`: an IMAP mailbox), and the sandbox's simulated provider, declared with its kind
(imported here so Celery's autodiscovery registers it)."""

from celery import shared_task

from apps.providers import services
from apps.providers.kinds.sandbox import sandbox_simulate_task


@shared_task(ignore_result=True)
def channels_poll_task() -> None:
    """Beat: one collection task per active channel of a kind that polls."""
    for channel_id in services.channels_to_poll():
        channel_poll_task.delay(channel_id)


@shared_task(ignore_result=True, acks_late=True)
def channel_poll_task(channel_id: int) -> int:
    return services.channel_poll(channel_id=channel_id)


__all__ = ["channel_poll_task", "channels_poll_task", "sandbox_simulate_task"]
