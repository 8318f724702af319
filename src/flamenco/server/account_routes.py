"""The Server's routes for people and credentials: login and logout, tokens, users, Managers
(their tokens, their list) and a Worker's wanted state."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, Query, Request

from flamenco import wire
from flamenco.apidoc import error_answers
from flamenco.errors import Forbidden
from flamenco.server.deps import AnyUser, Services, UserToken

WorkerAction = Literal["sleep", "wake", "disable", "enable"]
WORKER_STATES = {"sleep": "asleep", "wake": "awake", "disable": "disabled", "enable": "awake"}


def install_account_routes(app: FastAPI) -> None:
    """Login and logout, tokens, users, Managers, a Worker's wanted state: on the app."""

    @app.post("/api/v1/login", responses=error_answers(401, 429))
    def login(req: wire.LoginRequest, request: Request, svc: Services) -> wire.TokenIssued:
        # The client's address; behind the Dashboard (or a proxy on this machine) the one it
        # forwards in X-Forwarded-For (uvicorn trusts that from FORWARDED_ALLOW_IPS only).
        address = request.client.host if request.client else ""
        token = svc.auth.login(req.username, req.password, address)
        return wire.TokenIssued(token=token, name=req.username)

    # ---- users (Dashboard work) --------------------------------------------------------------

    @app.post("/api/v1/logout", status_code=204)
    def logout(token: UserToken, _: AnyUser, svc: Services) -> None:
        """Revoke the token this request is made with."""
        svc.auth.logout(token or "")

    @app.get("/api/v1/tokens")
    def list_tokens(
        token: UserToken,
        user: AnyUser,
        svc: Services,
        everyone: Annotated[bool, Query(alias="all")] = False,
    ) -> list[wire.TokenInfo]:
        """The caller's live tokens; with all=true (administrators), every user's."""
        return svc.auth.tokens(user, token or "", everyone=everyone)

    @app.delete("/api/v1/tokens/{token_id}", status_code=204)
    def revoke_token(token_id: int, user: AnyUser, svc: Services) -> None:
        svc.auth.revoke_token(user, token_id)

    @app.get("/api/v1/users/me")
    def who_am_i(user: AnyUser) -> wire.UserInfo:
        return wire.UserInfo(name=user.name, admin=user.is_admin)

    @app.post("/api/v1/users", status_code=201)
    def create_user(req: wire.UserCreate, user: AnyUser, svc: Services) -> wire.UserInfo:
        if not user.is_admin:
            raise Forbidden("Only an administrator can add users.")
        svc.auth.create_user(req.name, req.password, admin=req.admin)
        return wire.UserInfo(name=req.name, admin=req.admin)

    @app.put("/api/v1/users/{name}/password", status_code=204)
    def change_password(
        name: str, req: wire.PasswordChange, token: UserToken, user: AnyUser, svc: Services
    ) -> None:
        svc.auth.change_password(user, name, req.password, token or "")

    @app.delete("/api/v1/users/{name}", status_code=204, responses=error_answers(409))
    def remove_user(name: str, user: AnyUser, svc: Services) -> None:
        svc.auth.remove_user(user, name)

    # ---- Managers and their Workers ----------------------------------------------------------

    @app.post("/api/v1/managers")
    def create_manager(req: wire.ManagerCreate, user: AnyUser, svc: Services) -> wire.TokenIssued:
        if not user.is_admin:
            raise Forbidden("Only an administrator can add Managers.")
        return wire.TokenIssued(token=svc.auth.create_manager(req.name), name=req.name)

    @app.post("/api/v1/managers/{name}/rotate")
    def rotate_manager(name: str, user: AnyUser, svc: Services) -> wire.TokenIssued:
        """A new token for the Manager; the old one stops working at once."""
        if not user.is_admin:
            raise Forbidden("Only an administrator can replace a Manager's token.")
        return wire.TokenIssued(token=svc.auth.rotate_manager(name), name=name)

    @app.post("/api/v1/managers/{name}/revoke", status_code=204, responses=error_answers(409))
    def revoke_manager(name: str, user: AnyUser, svc: Services) -> None:
        if not user.is_admin:
            raise Forbidden("Only an administrator can revoke a Manager's token.")
        svc.auth.revoke_manager(name)

    @app.post("/api/v1/managers/{manager}/workers/{worker}/{action}")
    def worker_action(
        manager: str, worker: str, action: WorkerAction, user: AnyUser, svc: Services
    ) -> dict[str, str]:
        if not user.is_admin:
            raise Forbidden("Only an administrator can put Workers to sleep or wake them.")
        state = WORKER_STATES[action]
        svc.leases.set_worker_state(manager, worker, state)
        return {"status": state}

    @app.get("/api/v1/managers")
    def list_managers(_: AnyUser, svc: Services) -> list[wire.ManagerInfo]:
        return svc.leases.managers()
