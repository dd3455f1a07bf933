def organization(request):
    return {
        "current_membership": getattr(request, "membership", None),
        "current_organization": getattr(request, "organization", None),
    }
