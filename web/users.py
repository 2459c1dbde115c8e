"""User accounts: argon2 password hashes, roles, API tokens, and the first-login rule.

Accounts live in the store's ``users`` table, one JSON record per user name; this module is the
only one that writes them and keeps a copy in memory, so checking a request costs no store read.
A fresh gateway has one account, ``admin`` with the password ``admin``, flagged so that its
first login must choose a new user name and password before anything else is allowed.

A record never holds a password or a token in the clear: passwords are argon2id hashes
(memory-hard, salted), API tokens are random 32-byte secrets of which only the SHA-256 is kept
(a token is already high-entropy, so a fast hash suffices and checking one stays cheap).
A password change revokes every token of the account.

HTTP basic auth sends the password with every request; checking the argon2 hash each time
would make it cost a hundred times what a token costs, so a successful check is remembered
for a short while (``VerifiedCache``), keyed by an HMAC under a per-process random key and
valid only while the account keeps the hash it was checked against.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mbusgw.web import audit
from mbusgw.web.errors import BadRequest, Conflict, InvalidPassword, NotFound

TABLE = "users"
ROLES = ("admin", "read-only")
DEFAULT_NAME = "admin"
DEFAULT_PASSWORD = "admin"
SECRET_RECORD = "#session-secret"  # '#' cannot start a user name
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = "mbgw"
MAX_TOKENS = 16
VERIFIED_TTL_S = 60.0
VERIFIED_MAX = 256


class RecordTable(Protocol):
    """Named JSON records (the store's ``users`` table)."""

    def records(self, table: str) -> dict[str, object]: ...

    async def put_record(self, table: str, name: str, record: object) -> None: ...

    async def delete_record(self, table: str, name: str) -> bool: ...


def check_password_rule(password: str) -> str | None:
    """SPEC §6: at least 8 characters with letters and digits (case-sensitive). None = fine."""
    if not isinstance(password, str) or len(password) < 8:
        return "must be at least 8 characters"
    if len(password) > 256:
        return "must be at most 256 characters"
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        return "must contain letters and digits"
    return None


def check_name_rule(name: str) -> str | None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return "1-64 letters, digits or . _ @ - (starting with a letter or digit)"
    return None


@dataclass(frozen=True)
class ApiToken:
    id: str
    digest: str  # SHA-256 of the secret, hex
    label: str
    created: str


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str = field(repr=False)
    role: str = "read-only"
    must_change: bool = False  # the first login of admin/admin: name and password must change
    generation: int = 0  # bumped on every password change: older sessions end
    tokens: tuple[ApiToken, ...] = ()
    created: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def public(self) -> dict[str, Any]:
        """What the API and the pages show: never the hash, never a token digest."""
        return {
            "name": self.name,
            "role": self.role,
            "must_change_password": self.must_change,
            "created": self.created,
            "tokens": [{"id": t.id, "label": t.label, "created": t.created} for t in self.tokens],
        }

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        del record["name"]
        record["tokens"] = [asdict(t) for t in self.tokens]
        return record

    @classmethod
    def from_record(cls, name: str, record: dict[str, Any]) -> User:
        tokens = tuple(ApiToken(**t) for t in record.get("tokens", ()))
        return cls(
            name=name,
            password_hash=record["password_hash"],
            role=record.get("role", "read-only"),
            must_change=bool(record.get("must_change", False)),
            generation=int(record.get("generation", 0)),
            tokens=tokens,
            created=record.get("created", ""),
        )


class VerifiedCache:
    """Recent successful password checks. The key is an HMAC of name and password under a
    random key of this process: the table holds nothing that would help guess a password
    (nor survives a restart). An entry counts only while the account still has the hash it
    was checked against, so a password change, a rename or a removal ends it at once."""

    def __init__(self, ttl_s: float = VERIFIED_TTL_S, limit: int = VERIFIED_MAX) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl_s = ttl_s
        self._limit = limit
        self._entries: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()

    def _mac(self, name: str, password: str) -> bytes:
        message = name.encode() + b"\0" + password.encode()
        return hmac.digest(self._key, message, "sha256")

    def get(self, name: str, password: str, user: User | None) -> bool:
        """Whether ``user`` (the account called ``name`` now) passed this check recently."""
        mac = self._mac(name, password)
        entry = self._entries.get(mac)
        if entry is None:
            return False
        cached_name, digest, expires = entry
        fresh = trio.current_time() < expires
        if fresh and user is not None and user.name == cached_name and digest == user.password_hash:
            return True
        del self._entries[mac]
        return False

    def put(self, user: User, password: str) -> None:
        mac = self._mac(user.name, password)
        expires = trio.current_time() + self._ttl_s
        self._entries[mac] = (user.name, user.password_hash, expires)
        self._entries.move_to_end(mac)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def forget(self, name: str) -> None:
        for mac in [m for m, entry in self._entries.items() if entry[0] == name]:
            del self._entries[mac]


class UserDirectory:
    """The accounts; every change is written to the store before it takes effect here."""

    def __init__(
        self,
        table: RecordTable,
        now: Callable[[], datetime],
        *,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._table = table
        self._now = now
        self._hasher = hasher or PasswordHasher()
        self._users: dict[str, User] = {}
        self._token_index: dict[str, tuple[str, ApiToken]] = {}
        self._verified = VerifiedCache()
        self.secret = b""
        self.log: audit.Log | None = None  # the system log: account and role changes

    async def load(self) -> None:
        """Read the accounts; a store without any gets admin/admin (must change on first use)
        and a session secret."""
        records = self._table.records(TABLE)
        secret = records.pop(SECRET_RECORD, None)
        if isinstance(secret, dict) and isinstance(secret.get("hex"), str):
            self.secret = bytes.fromhex(secret["hex"])
        else:
            self.secret = secrets.token_bytes(32)
            await self._table.put_record(TABLE, SECRET_RECORD, {"hex": self.secret.hex()})
        self._users = {
            name: User.from_record(name, record)
            for name, record in records.items()
            if isinstance(record, dict) and "password_hash" in record
        }
        if not self._users:
            admin = User(
                DEFAULT_NAME,
                await self._hash(DEFAULT_PASSWORD),
                role="admin",
                must_change=True,
                created=self._stamp(),
            )
            await self._save(admin)
        self._reindex()

    # -- reading

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def all(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.name)

    def require(self, name: str) -> User:
        user = self._users.get(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    async def verify(self, name: str, password: str, *, remember: bool = False) -> User | None:
        """The user if the password is right; the hash is checked even for unknown names, so
        timing does not tell which names exist. ``remember``: a recent successful check of the
        same name and password counts (basic auth); a failed check is never remembered."""
        user = self._users.get(name)
        if remember and self._verified.get(name, password, user):
            return user
        digest = user.password_hash if user else self._dummy_hash()
        ok = await trio.to_thread.run_sync(self._check, digest, password)
        if not ok or user is None:
            return None
        if remember:
            self._verified.put(user, password)
        return user

    def user_for_token(self, token: str) -> User | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            return None
        found = self._token_index.get(parts[1])
        if found is None:
            return None
        name, entry = found
        digest = hashlib.sha256(parts[2].encode()).hexdigest()
        if not hmac.compare_digest(digest, entry.digest):
            return None
        return self._users.get(name)

    # -- changing

    async def add(self, name: str, password: str, role: str) -> User:
        self._check_new(name, password, role)
        if name in self._users:
            raise Conflict(f"user {name!r} exists already")
        user = User(name, await self._hash(password), role=role, created=self._stamp())
        await self._save(user)
        audit.record(self.log, f"account {name} added with the role {role}")
        return user

    async def update(
        self, name: str, *, password: str | None = None, role: str | None = None
    ) -> User:
        user = self.require(name)
        changes: dict[str, Any] = {}
        if role is not None:
            if role not in ROLES:
                raise BadRequest("unknown role", {"role": f"must be one of {', '.join(ROLES)}"})
            if user.is_admin and role != "admin" and self._admins() == [name]:
                raise Conflict("the last administrator cannot lose the admin role")
            changes["role"] = role
        if password is not None:
            problem = check_password_rule(password)
            if problem:
                raise InvalidPassword(f"password {problem}", {"password": problem})
            changes["password_hash"] = await self._hash(password)
            changes["generation"] = user.generation + 1
            changes["must_change"] = False
            changes["tokens"] = ()
        updated = replace(user, **changes)
        await self._save(updated)
        if role is not None and role != user.role:
            audit.record(self.log, f"account {name}: role {user.role} changed to {role}")
        if password is not None:
            audit.record(self.log, f"account {name}: password changed, its API tokens revoked")
        return updated

    async def delete(self, name: str) -> None:
        user = self.require(name)
        if user.is_admin and self._admins() == [name]:
            raise Conflict("the last administrator cannot be deleted")
        await self._table.delete_record(TABLE, name)
        del self._users[name]
        self._verified.forget(name)
        self._reindex()
        audit.record(self.log, f"account {name} deleted")

    async def complete_first_login(self, name: str, new_name: str, password: str) -> User:
        """Replace the default account by one with a new name and password (SPEC §6)."""
        user = self.require(name)
        details = {}
        problem = check_name_rule(new_name)
        if problem:
            details["username"] = problem
        elif new_name == DEFAULT_NAME:
            details["username"] = "must differ from the default user name"
        elif new_name != name and new_name in self._users:
            details["username"] = "this name is taken"
        problem = check_password_rule(password)
        if problem:
            details["password"] = problem
        elif password == DEFAULT_PASSWORD:
            details["password"] = "must differ from the default password"
        if details:
            raise InvalidPassword("choose a new user name and password", details)
        renamed = replace(
            user,
            name=new_name,
            password_hash=await self._hash(password),
            must_change=False,
            generation=user.generation + 1,
            tokens=(),
        )
        await self._save(renamed)
        if new_name != name:
            await self._table.delete_record(TABLE, name)
            del self._users[name]
            self._verified.forget(name)
            self._reindex()
        audit.record(self.log, f"first sign-in: account {name} is now {new_name}")
        return renamed

    async def create_token(self, name: str, label: str) -> str:
        """A new API token for ``name``; the secret is returned once and never again."""
        user = self.require(name)
        if len(user.tokens) >= MAX_TOKENS:
            raise Conflict(f"a user has at most {MAX_TOKENS} tokens; delete one first")
        label = (label or "").strip()[:64] or "token"
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        entry = ApiToken(
            token_id, hashlib.sha256(secret.encode()).hexdigest(), label, self._stamp()
        )
        await self._save(replace(user, tokens=user.tokens + (entry,)))
        return f"{TOKEN_PREFIX}.{token_id}.{secret}"

    async def delete_token(self, name: str, token_id: str) -> None:
        user = self.require(name)
        kept = tuple(t for t in user.tokens if t.id != token_id)
        if len(kept) == len(user.tokens):
            raise NotFound(f"no token {token_id!r}")
        await self._save(replace(user, tokens=kept))

    # -- inside

    def _check_new(self, name: str, password: str, role: str) -> None:
        details = {}
        problem = check_name_rule(name)
        if problem:
            details["name"] = problem
        problem = check_password_rule(password)
        if problem:
            details["password"] = problem
        if role not in ROLES:
            details["role"] = f"must be one of {', '.join(ROLES)}"
        if details:
            raise InvalidPassword("the account was refused", details)

    def _admins(self) -> list[str]:
        return [u.name for u in self._users.values() if u.is_admin]

    async def _save(self, user: User) -> None:
        await self._table.put_record(TABLE, user.name, user.to_record())
        previous = self._users.get(user.name)
        if previous is not None and previous.password_hash != user.password_hash:
            self._verified.forget(user.name)
        self._users[user.name] = user
        self._reindex()

    def _reindex(self) -> None:
        self._token_index = {
            token.id: (user.name, token) for user in self._users.values() for token in user.tokens
        }

    async def _hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self._hasher.hash, password)

    def _check(self, digest: str, password: str) -> bool:
        try:
            return self._hasher.verify(digest, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy_hash(self) -> str:
        if not hasattr(self, "_dummy"):
            self._dummy = self._hasher.hash(secrets.token_hex(16))
        return self._dummy

    def _stamp(self) -> str:
        return self._now().isoformat(timespec="seconds")
