"""Projects, memberships and API keys (scoped: ingest or read)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from tracer.audit import Action, audit_record
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


class MembershipRefused(Exception):
    """A membership change the rules refuse; the message is written for the person who asked."""


class MembershipForbidden(MembershipRefused):
    """The actor is not an owner of the project: only owners manage its members."""


class RoleInvalid(MembershipRefused):
    """The role is not one of Membership.Role."""


def _owner_check(*, project: Project, actor: AbstractBaseUser) -> None:
    """Inside the caller's transaction: take the project's lock, then check that the actor owns it.

    Changes to one project's members take turns on the project row, so when two owners demote or
    remove each other at once, the second finds it is no longer an owner: a project always keeps
    an owner, because only an owner acts and an owner can neither lower nor remove themselves.
    """
    Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True).first()
    role = Membership.objects.filter(project=project, user_id=actor.pk).values_list("role", flat=True).first()
    if role != Membership.Role.OWNER:
        raise MembershipForbidden(f"Only an owner of {project.name} manages its members.")


def membership_save(*, project: Project, actor: AbstractBaseUser, username: str, role: str) -> Membership:
    """Give the user named `username` this role in the project: adds them, or changes their role.

    Raises RoleInvalid, MembershipForbidden (the actor is not an owner), or MembershipRefused (no
    such user; an owner lowering their own role, which another owner can do).
    """
    if role not in Membership.Role.values:
        raise RoleInvalid(f"role must be one of {', '.join(Membership.Role.values)}")
    username = username.strip()
    with transaction.atomic():
        _owner_check(project=project, actor=actor)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise MembershipRefused(f"No user named {username!r}.")
        if user.pk == actor.pk and role != Membership.Role.OWNER:
            raise MembershipRefused("You cannot lower your own role; another owner can.")
        previous = Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
        if previous != role:
            audit_record(
                project=project,
                actor=actor,
                action=Action.MEMBER_SAVE,
                target=f"member {user.get_username()}",
                details={"role": role, "previous_role": previous},
            )
    return membership


def membership_remove(*, project: Project, actor: AbstractBaseUser, member_id: int) -> Membership:
    """Remove one membership of the project; returns it (with its user), no longer stored.

    Raises MembershipForbidden (the actor is not an owner), Membership.DoesNotExist (no such
    membership in this project, including one of another project), or MembershipRefused (an owner
    removing themselves).
    """
    with transaction.atomic():
        _owner_check(project=project, actor=actor)
        membership = Membership.objects.filter(project=project, pk=member_id).select_related("user").first()
        if membership is None:
            raise Membership.DoesNotExist(f"no membership {member_id} in project {project.pk}")
        if membership.user_id == actor.pk:
            raise MembershipRefused("You cannot remove yourself.")
        membership.delete()
        audit_record(
            project=project,
            actor=actor,
            action=Action.MEMBER_REMOVE,
            target=f"member {membership.user.get_username()}",
            details={"role": membership.role},
        )
    return membership


def apikey_create(
    *,
    project: Project,
    name: str = "default",
    scopes: Collection[str] = (ApiKey.Scope.INGEST,),
    actor: AbstractBaseUser | None = None,
) -> tuple[ApiKey, str]:
    """Create a key with these scopes (ingest unless asked); returns it with its secret, which is
    not stored and cannot be shown again. Audited, with `actor` None for a command."""
    unknown = set(scopes) - set(ApiKey.Scope.values)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(ApiKey.Scope.values)}, not {sorted(scopes)!r}")
    secret = ApiKey.new_secret()
    key = ApiKey.objects.create(
        project=project,
        name=name,
        prefix=secret[:12],
        key_hash=hash_key(secret),
        scope_ingest=ApiKey.Scope.INGEST in scopes,
        scope_read=ApiKey.Scope.READ in scopes,
    )
    audit_record(
        project=project,
        actor=actor,
        action=Action.KEY_CREATE,
        target=_key_target(key),
        details={"scopes": sorted(scopes)},
    )
    return key, secret


@dataclass(frozen=True, slots=True)
class KeySplit:
    """The two keys that replace a legacy key, with their secrets (shown once)."""

    ingest: ApiKey
    ingest_secret: str
    read: ApiKey
    read_secret: str


def apikey_split(*, key: ApiKey, actor: AbstractBaseUser | None = None) -> KeySplit:
    """Replace a legacy key (both scopes) by an ingest key and a read key of the same name, and
    revoke it, all at once (audited). Raises ValueError for a key that is not legacy or not active."""
    with transaction.atomic():
        revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True, scope_ingest=True, scope_read=True).update(
            revoked_at=timezone.now()
        )
        if not revoked:
            raise ValueError(f"key {key.prefix}… is not an active legacy key")
        audit_record(
            project=key.project, actor=actor, action=Action.KEY_REVOKE, target=_key_target(key), details={"split": True}
        )
        ingest, ingest_secret = apikey_create(
            project=key.project, name=key.name, scopes=(ApiKey.Scope.INGEST,), actor=actor
        )
        read, read_secret = apikey_create(project=key.project, name=key.name, scopes=(ApiKey.Scope.READ,), actor=actor)
    return KeySplit(ingest=ingest, ingest_secret=ingest_secret, read=read, read_secret=read_secret)


def apikey_revoke(*, key: ApiKey, actor: AbstractBaseUser | None = None) -> None:
    """Revoke an active key (audited); a key revoked already is left as it is."""
    if ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit_record(project=key.project, actor=actor, action=Action.KEY_REVOKE, target=_key_target(key), details={})


def _key_target(key: ApiKey) -> str:
    return f"key {key.prefix}… ({key.name})"


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
