from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        # Registers how the OpenAPI schema describes Bearer-token authentication.
        from apps.accounts import api  # noqa: F401
