from apps.accounts import selectors

SESSION_KEY = "organization_id"


class CurrentOrganizationMiddleware:
    """Sets `request.membership` and `request.organization` from the session's chosen organization.

    A user may belong to several organizations; the switcher stores the choice in the session.
    API token requests get theirs from the token (see authentication.py).

    Sync-only on purpose, like AgentTimezoneMiddleware: with every middleware async-capable,
    Django's own middlewares (MiddlewareMixin) each hop to a thread twice per request, and the
    webhook path measured slower (docs/benchmarks-notes.md, ingest).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = None
        request.organization = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            membership = None
            chosen = request.session.get(SESSION_KEY)
            if chosen:
                membership = selectors.membership_get(user=user, organization_id=chosen)
            if membership is None:
                membership = selectors.membership_default(user=user)
                if membership is not None:
                    request.session[SESSION_KEY] = membership.organization_id
            if membership is not None:
                request.membership = membership
                request.organization = membership.organization
        return self.get_response(request)
