from __future__ import annotations

from django.http import HttpRequest

from tracer.models import Membership


def projects(request: HttpRequest) -> dict:
    """The project switcher: the user's projects, read lazily (only pages that show it pay)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def memberships() -> list[Membership]:
        return list(Membership.objects.filter(user=user).select_related("project").order_by("project__name"))

    return {"memberships": memberships, "project": getattr(request, "project", None)}
