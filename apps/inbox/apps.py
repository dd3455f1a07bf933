from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "apps.inbox"
    label = "inbox"

    def ready(self):
        # Live updates: every committed change of a conversation or message, rendered once and
        # published to the organization's sockets.
        from apps.conversations import events
        from apps.inbox import broadcast

        events.subscribe(broadcast.publish)
