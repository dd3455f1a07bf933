"""What every page view of an organization checks first: signed in, working in an organization
(and, for settings, its owner or admin). A service's NotFound answers 404."""

import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from apps.core.errors import NotFound


def member_required(view):
    """Signed in and working in an organization; a service's NotFound answers 404."""

    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.membership is None:
            return render(request, "accounts/no_organization.html", status=403)
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from None

    return wrapped


def admin_required(view):
    """Signed in, working in an organization, and its owner or admin."""

    @functools.wraps(view)
    def checked(request, *args, **kwargs):
        if not request.membership.is_admin:
            raise PermissionDenied("Only owners and admins can manage integrations.")
        return view(request, *args, **kwargs)

    return member_required(checked)
