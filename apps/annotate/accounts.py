"""Accounts from the app, not only the admin (issue 11.10): a staff user creates an account with a
one-time password, shown once in the answer; its owner must choose a new password at the first sign-in.

``POST /api/v1/accounts/`` (staff only) creates the user and puts it in the ``MUST_CHANGE`` group. At
sign-in (``user_logged_in``) such a user's session gets a flag; ``PasswordChangeRequiredMiddleware`` then
sends every page to ``/accounts/password_change/`` and answers the API with 403 until the password is
changed (the "done" page clears the flag and the group). Token (script) clients are not affected: a
token is only issued for a user's password, which the first browser sign-in has already replaced.
"""
from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.dispatch import receiver
from django.http import JsonResponse
from django.shortcuts import redirect
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from labseg.api import error_responses

MUST_CHANGE = "must change password"
SESSION_FLAG = "labseg_must_change_password"
CHANGE_URL = "/accounts/password_change/"
DONE_URL = "/accounts/password_change/done/"


class AccountCreateSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150,
                                      help_text="Letters, digits and @ . + - _ only")
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class AccountCreatedSerializer(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    password = serializers.CharField(help_text="The one-time password: shown only in this answer")
    must_change_password = serializers.BooleanField()


def one_time_password() -> str:
    """12 characters from an alphabet without look-alikes (no 0/O, 1/l/I), easy to read out."""
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(12))


@transaction.atomic
def create_account(*, username: str, email: str = "") -> tuple[object, str]:
    """A new active, non-staff user with a one-time password it must change; returns (user, password)."""
    User = get_user_model()
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": f"{username!r} is taken; choose another username."})
    if email and User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": f"an account with {email!r} exists already."})
    password = one_time_password()
    user = User.objects.create_user(username=username, email=email, password=password)
    user.groups.add(Group.objects.get_or_create(name=MUST_CHANGE)[0])
    return user, password


class AccountListView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=AccountCreateSerializer,
                   responses={201: AccountCreatedSerializer, **error_responses(400, 403, 413, 415)}, tags=["auth"])
    def post(self, request):
        """Create an account (staff only). The one-time password is in this answer and nowhere else."""
        ser = AccountCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        user, password = create_account(**ser.validated_data)
        return Response({"username": user.username, "email": user.email, "password": password,
                         "must_change_password": True}, status=status.HTTP_201_CREATED)


@receiver(user_logged_in)
def _flag_one_time_password(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session") and user.groups.filter(name=MUST_CHANGE).exists():
        request.session[SESSION_FLAG] = True


class PasswordChangeRequiredMiddleware:
    """Until a one-time password is changed: pages redirect to the change form, the API answers 403."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if session is None or not session.get(SESSION_FLAG):
            return self.get_response(request)
        path = request.path
        if path == DONE_URL:
            request.user.groups.remove(*Group.objects.filter(name=MUST_CHANGE))
            del session[SESSION_FLAG]
            return self.get_response(request)
        if path.startswith(("/accounts/", "/static/")):
            return self.get_response(request)
        if path.startswith("/api/"):
            return JsonResponse({"detail": "Choose a new password first: the one you signed in with was for "
                                           "one use only.", "code": "password_change_required"}, status=403)
        return redirect(f"{CHANGE_URL}?first=1")
