"""Who is asking (the session a cookie names), logging in and out, and what a request gets
when its login is missing or the Server refuses it: a page goes to the login or an error page,
a `/ui/` request gets JSON."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.responses import RedirectResponse

from flamenco.client import ApiError, Unreachable
from flamenco.dashboard.sessions import COOKIE, Session
from flamenco.dashboard.views import Dashboard, log
from flamenco.errors import BadRequest, Forbidden, Unauthorized


class LoginRequired(Exception):
    """A page was asked for without a live session: go to the login page."""


async def read_form(request: Request) -> dict[str, str]:
    """A posted HTML form's fields (the first value of each); BadRequest with the reason for
    a body that is not a form in UTF-8."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("The request is not a form (application/x-www-form-urlencoded).")
    try:
        fields = parse_qs((await request.body()).decode(), errors="strict", max_num_fields=20)
    except UnicodeDecodeError as exc:
        raise BadRequest("The form is not valid UTF-8.") from exc
    except ValueError as exc:
        raise BadRequest("The form has too many fields.") from exc
    return {name: values[0] for name, values in fields.items()}


def safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def session_of(request: Request) -> Session | None:
    dash: Dashboard = request.app.state.dashboard
    session = dash.sessions.get(request.cookies.get(COOKIE))
    request.state.session = session
    return session


def page_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        raise LoginRequired()
    return session


def ui_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        dash: Dashboard = request.app.state.dashboard
        if dash.sessions.was_logged_out(request.cookies.get(COOKIE)):
            raise Unauthorized("You logged out of this Dashboard session; log in again.")
        raise Unauthorized("You are not logged in to the Dashboard, or your login expired.")
    return session


def changing_session(request: Request) -> Session:
    """For requests that change something: they must carry the page's CSRF token too."""
    session = ui_session(request)
    if request.headers.get("x-csrf-token") != session.csrf:
        raise Forbidden("The request lacks this page's CSRF token; reload the page.")
    return session


PageSession = Annotated[Session, Depends(page_session)]
UiSession = Annotated[Session, Depends(ui_session)]
ChangingSession = Annotated[Session, Depends(changing_session)]


def install_login(app: FastAPI, dash: Dashboard) -> None:
    """The error handlers and the login and logout routes, on the Dashboard's app."""
    settings = dash.settings

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        session: Session | None = getattr(request.state, "session", None)
        if exc.status == 401 and session is not None:
            dash.sessions.drop(session.id)  # the Server no longer takes its token
            request.state.session = None
        return _failure(request, exc.status, exc.message)

    @app.exception_handler(Unreachable)
    async def _unreachable(request: Request, exc: Unreachable) -> Response:
        return _failure(request, 502, str(exc))

    def _failure(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/ui/"):
            return JSONResponse({"detail": message}, status_code=status)
        if status == 401:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        return dash.render(request, "error.html", status=status, message=message, code=status)

    # ---- login ---------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        if session_of(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return dash.render(request, "login.html", next=safe_next(next), error=None, username="")

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadRequest as exc:
            return dash.render(
                request, "login.html", status=400, next="/", error=exc.message, username=""
            )
        username = form.get("username", "").strip()
        password = form.get("password", "")
        target = safe_next(form.get("next"))
        if not username or not password:
            return dash.render(
                request,
                "login.html",
                status=400,
                next=target,
                error="Enter your user name and password.",
                username=username,
            )
        try:
            address = request.client.host if request.client else ""
            token = await dash.upstream.login(username, password, address)
            me = await dash.upstream.json(token, "/api/v1/users/me")
        except ApiError as exc:
            status = 401 if exc.status in (401, 422) else exc.status
            message = "The user name or password is wrong." if status == 401 else exc.message
            refused = dash.render(
                request, "login.html", status=status, next=target, error=message, username=username
            )
            if exc.retry_after:  # too many failed logins: when to try again
                refused.headers["Retry-After"] = exc.retry_after
            return refused
        except Unreachable as exc:
            return dash.render(
                request, "login.html", status=502, next=target, error=str(exc), username=username
            )
        _, cookie = dash.sessions.create(me.get("name", username), token, bool(me.get("admin")))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            max_age=int(settings.session_idle_s),
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        # No CSRF token needed: ending a session is what its owner wants whoever asks, and
        # a page of another site cannot send the SameSite=Lax cookie along anyway.
        session = session_of(request)
        if session is not None:
            dash.sessions.log_out(session.id)
            try:  # its token on the Server ends with it
                await dash.upstream.request(session.token, "POST", "/api/v1/logout")
            except (ApiError, Unreachable) as exc:
                log.warning(
                    "logout of %s: the Server did not revoke its token: %s", session.user, exc
                )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response
