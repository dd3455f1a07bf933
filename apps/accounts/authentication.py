from django.utils import timezone
from rest_framework import authentication, exceptions

from apps.accounts import selectors
from apps.accounts.models import ApiToken


class MembershipTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` (or `Token <key>`): the request acts as the token's membership."""

    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode().lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        key = header[1].decode(errors="replace")
        membership = selectors.api_token_membership(key=key)
        if membership is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        ApiToken.objects.filter(key_hash=ApiToken.hash_key(key)).update(last_used_at=timezone.now())
        request._request.membership = membership
        request._request.organization = membership.organization
        return membership.user, membership

    def authenticate_header(self, request):
        return "Bearer"
