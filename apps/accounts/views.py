"""Signing in and out, and choosing which organization the session works in."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from apps.accounts import selectors
from apps.accounts.middleware import SESSION_KEY

login_view = auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True)
logout_view = auth_views.LogoutView.as_view()


@login_required
@require_POST
def organization_switch(request):
    organization_id = request.POST.get("organization", "")
    membership = (
        selectors.membership_get(user=request.user, organization_id=organization_id) if organization_id.isdigit() else None
    )
    if membership is None:
        raise Http404("Organization not found.")
    request.session[SESSION_KEY] = membership.organization_id
    return redirect("inbox:index")
