"""API plumbing of accounts: how the OpenAPI schema describes token authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class MembershipTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.MembershipTokenAuthentication"
    name = "membershipToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <key>`: the request acts as the token's membership.",
        }
