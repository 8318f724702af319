"""The notification secret's routes on the Server's app (administrators only): read it, or
replace it. What they do is `notifications.notify_secret`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI
from sqlalchemy.orm import sessionmaker

from flamenco import wire
from flamenco.apidoc import error_answers
from flamenco.errors import Forbidden
from flamenco.server.models import User
from flamenco.server.notifications import notify_secret


def install_notify_routes(
    app: FastAPI, sessions: sessionmaker, current_user: Callable[..., User]
) -> None:
    def administrator(user: User = Depends(current_user)) -> User:
        if not user.is_admin:
            raise Forbidden("Only an administrator can see or rotate the notification secret.")
        return user

    @app.get("/api/v1/notify/secret", responses=error_answers(403))
    def get_notify_secret(_: User = Depends(administrator)) -> wire.NotifySecret:
        """The key the Server signs notifications with (made at first need)."""
        return notify_secret(sessions)

    @app.post("/api/v1/notify/secret", responses=error_answers(403))
    def rotate_notify_secret(_: User = Depends(administrator)) -> wire.NotifySecret:
        """A new key; the old one signs nothing from now on."""
        return notify_secret(sessions, rotate=True)
