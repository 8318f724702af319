"""What the Server's routes depend on: its services, its metrics, and who a request is from
(a user's token, a Manager's token, or either)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security

from flamenco.apidoc import MANAGER_TOKEN_SCHEME, USER_TOKEN_SCHEME, BearerToken
from flamenco.server.metrics import ServerMetrics
from flamenco.server.models import ManagerRow, User
from flamenco.server.services import ServerServices


def services(request: Request) -> ServerServices:
    return request.app.state.services


def meters(request: Request) -> ServerMetrics:
    """What the routes count and time; `install_metrics` puts it on the app."""
    return request.app.state.metrics


Services = Annotated[ServerServices, Depends(services)]
Meters = Annotated[ServerMetrics, Depends(meters)]


USER_TOKEN = BearerToken(USER_TOKEN_SCHEME, "A user's token, from POST /api/v1/login.")
MANAGER_TOKEN = BearerToken(
    MANAGER_TOKEN_SCHEME, "A Manager's token (flm_...), from POST /api/v1/managers."
)
UserToken = Annotated[str | None, Security(USER_TOKEN)]
ManagerToken = Annotated[str | None, Security(MANAGER_TOKEN)]


def current_user(token: UserToken, svc: Services) -> User:
    return svc.auth.user_for_token(token)


def current_manager(request: Request, token: ManagerToken, svc: Services) -> ManagerRow:
    address = request.client.host if request.client else ""
    return svc.auth.manager_for_token(token, address)


# Both schemes read the same header; naming both documents the route as open to either.
def user_or_manager(
    request: Request, token: UserToken, _manager_token: ManagerToken, svc: Services
) -> str:
    if token and token.startswith("flm_"):
        return current_manager(request, token, svc).name
    return current_user(token, svc).name


def uploader(
    request: Request, token: UserToken, _manager_token: ManagerToken, svc: Services
) -> str:
    """Whose uploads these are: each user and each Manager resumes its own (resumable.py)."""
    if token and token.startswith("flm_"):
        return f"manager {current_manager(request, token, svc).name}"
    return f"user {current_user(token, svc).name}"


AnyUser = Annotated[User, Depends(current_user)]
AnyManager = Annotated[ManagerRow, Depends(current_manager)]
Uploader = Annotated[str, Depends(uploader)]
