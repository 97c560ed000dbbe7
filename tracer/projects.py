"""Projects, memberships and ingest keys."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from tracer.models import ApiKey, Membership, Project, hash_key

# last_used_at is a hint, not an audit log: write it at most once a minute per key so that a
# busy exporter does not turn every request into an UPDATE.
LAST_USED_RESOLUTION_SECONDS = 60


def project_create(*, name: str, owner: AbstractBaseUser | None = None, slug: str = "") -> Project:
    slug = slug or slugify(name)
    if not slug:
        raise ValueError(f"cannot make a slug out of the project name {name!r}")
    with transaction.atomic():
        project = Project.objects.create(name=name, slug=slug)
        if owner is not None:
            Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    return project


def membership_for(*, user: AbstractBaseUser, slug: str) -> Membership | None:
    """The user's membership of the project with this slug (with the project), or None: the one
    tenancy check the dashboard and the read API share."""
    return Membership.objects.select_related("project").filter(user=user, project__slug=slug).first()


def apikey_create(*, project: Project, name: str = "default") -> tuple[ApiKey, str]:
    """Create a key; returns it with its secret, which is not stored and cannot be shown again."""
    secret = ApiKey.new_secret()
    key = ApiKey.objects.create(project=project, name=name, prefix=secret[:12], key_hash=hash_key(secret))
    return key, secret


def apikey_revoke(*, key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def apikey_authenticate(*, secret: str) -> ApiKey | None:
    """The active key with this secret, or None."""
    if not secret:
        return None
    key = ApiKey.objects.select_related("project").filter(key_hash=hash_key(secret), revoked_at__isnull=True).first()
    if key is None:
        return None
    now = timezone.now()
    stale = now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
    if key.last_used_at is None or key.last_used_at < stale:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
