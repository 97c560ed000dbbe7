"""Who may see what: every project page goes through `project_view`.

A project the user is not a member of is a 404, exactly like an id that does not exist, so the ids
of other tenants cannot be probed. A member whose role is too low for an action gets a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from tracer.models import Membership
from tracer.projects import membership_for

ROLE_RANK = {Membership.Role.VIEWER: 0, Membership.Role.MEMBER: 1, Membership.Role.OWNER: 2}


def project_view(min_role: str = Membership.Role.VIEWER) -> Callable:
    """Decorate `view(request, slug, ...)`: sets request.project and request.membership."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args, **kwargs) -> HttpResponse:
            membership = membership_for(user=request.user, slug=slug)
            if membership is None:
                raise Http404("no such project")
            if ROLE_RANK[membership.role] < ROLE_RANK[min_role]:
                raise PermissionDenied(f"this needs the {min_role} role in {membership.project.name}")
            request.project = membership.project
            request.membership = membership
            return view(request, slug, *args, **kwargs)

        return wrapper

    return decorate


def can_edit(request: HttpRequest) -> bool:
    """Owners manage prices, members and keys."""
    membership = getattr(request, "membership", None)
    return membership is not None and membership.role == Membership.Role.OWNER
