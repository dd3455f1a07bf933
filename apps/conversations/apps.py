from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "apps.conversations"
    label = "conversations"

    def ready(self):
        # Recorded webhook events are processed here, one layer above where they are recorded.
        from apps.conversations import inbound
        from apps.providers import events

        events.processor_register(inbound.Processor())
