"""Who is asking: server-side sessions, CSRF tokens, API tokens and basic auth, login limits.

A browser gets an opaque random session id in an HttpOnly, SameSite cookie (Secure over HTTPS);
the session itself (user, CSRF token, password generation) stays in memory here, so logging out
or changing a password ends it at once and a restart ends them all. Every state-changing request
made with a session cookie must carry the session's CSRF token (form field ``csrf_token`` or
header ``X-CSRF-Token``). Machines use an API token (``Authorization: Bearer …``) or HTTP basic
auth; those carry no ambient credential, so they need no CSRF token.

Views state who may call them with ``public``, ``admin_only`` and ``self_service``; the
default is any signed-in user (read-only users only for safe methods).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import trio
from quart import Response, current_app, g, redirect, request, url_for

from mbusgw.gateway.facade import WARNING, LoginLimiter
from mbusgw.web import audit
from mbusgw.web.errors import (
    CsrfRefused,
    Forbidden,
    PasswordChangeRequired,
    TooManyAttempts,
    Unauthorized,
)
from mbusgw.web.users import User, UserDirectory

COOKIE = "mbusgw_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_IDLE_S = 8 * 3600
ANONYMOUS_IDLE_S = 3600
MAX_SESSIONS = 2000

F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Anyone may call this view (login page, static files, the OpenAPI document)."""
    view._access = "public"  # type: ignore[attr-defined]
    return view


def own_token(accepts: Callable[[str], bool]) -> Callable[[F], F]:
    """A view a machine may also reach with a bearer token of its own (the metrics' scrape
    token): ``accepts(token)`` tells whether the token sent is that one. The view is public to
    the gate and checks ``g.via == "own_token"`` or a signed-in user itself."""

    def mark(view: F) -> F:
        view._access = "public"  # type: ignore[attr-defined]
        view._own_token = accepts  # type: ignore[attr-defined]
        return view

    return mark


def admin_only(view: F) -> F:
    view._access = "admin"  # type: ignore[attr-defined]
    return view


def self_service(view: F) -> F:
    """A signed-in user's own business (sign out, own password, own tokens): reachable by
    read-only users."""
    view._self_service = True  # type: ignore[attr-defined]
    return view


def first_change(view: F) -> F:
    """One of the few views an account that must still change its password may reach (the
    change itself, sign out, who am I); everything else, token creation included, waits."""
    view._self_service = True  # type: ignore[attr-defined]
    view._first_change = True  # type: ignore[attr-defined]
    return view


@dataclass
class Session:
    csrf: str
    last_seen: float
    user: str | None = None
    generation: int = 0


class SessionTable:
    """Sessions by the SHA-256 of their id (a leaked memory dump does not give cookies)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._limit = limit

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def new(self, user: str | None = None, generation: int = 0) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), trio.current_time(), user, generation)
        self._sessions[self._key(session_id)] = session
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        key = self._key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        idle = SESSION_IDLE_S if session.user else ANONYMOUS_IDLE_S
        now = trio.current_time()
        if now - session.last_seen > idle:
            del self._sessions[key]
            return None
        session.last_seen = now
        self._sessions.move_to_end(key)
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(self._key(session_id), None)

    def drop_user(self, name: str) -> None:
        for key in [k for k, s in self._sessions.items() if s.user == name]:
            del self._sessions[key]


def client_address() -> str:
    return request.remote_addr or "unknown"


@dataclass
class Auth:
    """Everything the request checks need, kept in the app (no module globals)."""

    users: UserDirectory
    sessions: SessionTable = field(default_factory=SessionTable)
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    log: audit.Log | None = None  # the system log: sign-ins and refusals

    async def login(self, name: str, password: str, *, remember: bool = False) -> User:
        """Check a name and password against the limits; raises ``Unauthorized`` or
        ``TooManyAttempts``. ``remember``: basic auth, which sends the password with every
        request, may reuse a recent successful check (see ``UserDirectory.verify``)."""
        keys = (f"addr:{client_address()}", f"user:{name}")
        wait = self.limiter.wait_s(*keys)
        if wait:
            raise TooManyAttempts(f"too many failed logins; try again in {wait} s", wait)
        user = await self.users.verify(name, password, remember=remember)
        if user is None:
            self.limiter.failed(*keys)
            audit.record(self.log, f"sign-in refused for {audit.quoted(name)}", WARNING)
            raise Unauthorized("wrong user name or password")
        self.limiter.succeeded(f"user:{name}")
        if not remember:  # basic auth checks on every request: its successes are not news
            audit.record(self.log, f"{name} signed in")
        return user

    async def identify(self) -> None:
        """Set ``g.user``, ``g.session`` and ``g.via`` from the request's credentials."""
        g.user, g.session, g.session_id, g.via = None, None, None, None
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            g.user = self.users.user_for_token(value.strip())
            if g.user is None:
                view = current_app.view_functions.get(request.endpoint or "")
                accepts = getattr(view, "_own_token", None)
                if accepts is not None and accepts(value.strip()):
                    g.via = "own_token"
                    return
                raise Unauthorized("unknown or revoked API token")
            if g.user.must_change:
                # a token cannot change a password, so it has nothing to do before the change
                raise PasswordChangeRequired(
                    "the account must first change its password; tokens wait until then"
                )
            g.via = "token"
            return
        if scheme.lower() == "basic":
            name, password = _basic_credentials(value)
            g.user = await self.login(name, password, remember=True)
            g.via = "basic"
            return
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.get(session_id) if session_id else None
        if session is None:
            return
        g.session, g.session_id, g.via = session, session_id, "session"
        if session.user is not None:
            user = self.users.get(session.user)
            if user is None or user.generation != session.generation:
                self.sessions.drop(session_id)
                g.session, g.session_id, g.via = None, None, None
                return
            g.user = user

    def ensure_session(self) -> Session:
        """The request's session, or a new anonymous one (for the login form's CSRF token)."""
        if g.get("session") is None:
            g.session_id, g.session = self.sessions.new()
            g.new_session = True
        return g.session

    def start_session(self, user: User) -> None:
        """Sign in: a fresh session id (no fixation) with a fresh CSRF token."""
        if g.get("session_id"):
            self.sessions.drop(g.session_id)
        g.session_id, g.session = self.sessions.new(user.name, user.generation)
        g.user, g.via, g.new_session = user, "session", True

    def password_changed(self, old_name: str, updated: User) -> None:
        """After ``old_name`` changed its password (and maybe its name): every session of that
        account ends; the session that made the change, if the request came with one,
        continues under a fresh id. The directory has already revoked the account's tokens."""
        self.sessions.drop_user(old_name)
        self.sessions.drop_user(updated.name)
        if g.get("via") == "session" and g.user is not None and g.user.name == old_name:
            self.start_session(updated)

    def end_session(self) -> None:
        if g.get("session_id"):
            self.sessions.drop(g.session_id)
        g.session, g.session_id, g.user = None, None, None
        g.clear_cookie = True

    async def check_request(self) -> Response | None:
        """The before-request gate: identity, access rule, first-login rule, CSRF."""
        await self.identify()
        view = current_app.view_functions.get(request.endpoint or "")
        access = "public" if request.endpoint == "static" else getattr(view, "_access", "user")
        if access == "public":
            if request.method not in SAFE_METHODS:
                await self.check_csrf()
            return None
        user: User | None = g.user
        if user is None:
            if request.path.startswith("/api/"):
                raise Unauthorized("sign in, or send an API token or basic credentials")
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        if user.must_change and not getattr(view, "_first_change", False):
            if request.path.startswith("/api/"):
                raise PasswordChangeRequired(
                    "the default account must first choose a new user name and password"
                )
            return redirect(url_for("pages.first_login"))
        if access == "admin" and not user.is_admin:
            raise Forbidden("this needs the admin role")
        if request.method not in SAFE_METHODS:
            if not user.is_admin and not getattr(view, "_self_service", False):
                raise Forbidden("read-only users cannot change anything")
            if g.via == "session":
                await self.check_csrf()
        return None

    async def check_csrf(self) -> None:
        session = g.get("session")
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            sent = (await request.form).get("csrf_token")
        if session is None or not sent or not hmac.compare_digest(sent, session.csrf):
            raise CsrfRefused("the form is missing its security token or it expired; reload it")

    def set_cookie(self, response: Response) -> Response:
        if g.get("clear_cookie"):
            response.delete_cookie(COOKIE, path="/")
        if g.get("new_session") and g.get("session_id"):
            response.set_cookie(
                COOKIE,
                g.session_id,
                httponly=True,
                secure=request.scheme == "https",
                samesite="Lax",
                path="/",
            )
        return response


def same_site_path(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirect after a login).

    Browsers read ``\\`` as ``/`` and drop tabs and line breaks from a URL, so ``/\\x`` and
    ``/\t/x`` lead to the host ``x`` just as ``//x`` does; such characters, any other control
    or space character, and their percent-encoded forms, are refused outright rather than
    cleaned, as is anything that is not a plain absolute path."""
    if not target or len(target) > 2048 or not target.startswith("/"):
        return None
    decoded = unquote(target)
    for text in (target, decoded):
        if "\\" in text or any(c.isspace() or unicodedata.category(c)[0] == "C" for c in text):
            return None
        if text.startswith("//"):
            return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _basic_credentials(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed basic credentials") from None
    name, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized("malformed basic credentials")
    return name, password
