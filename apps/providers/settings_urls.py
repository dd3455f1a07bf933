from apps.providers import catalog

app_name = "settings"

# The settings pages the kinds declare (Meta's connect flow in Settings → Integrations).
urlpatterns = [*catalog.settings_urls()]
