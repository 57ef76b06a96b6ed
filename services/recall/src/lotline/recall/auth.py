"""Who may change recalls: operator tokens, the console's signed session and its CSRF token.

Plain Python, no I/O but reading the tokens file. Tokens are configured as entries
`name:role:token` (role `operator` may issue and close recalls, `staff` may only read),
separated by commas or new lines; instead of the token an entry may give its hash,
`sha256:<64 hex>`, so a tokens file need not hold the secrets themselves. Only hashes are
kept in memory, and a presented token is compared with every one by `hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")


class Role(StrEnum):
    OPERATOR = "operator"  # issues and closes recalls
    STAFF = "staff"  # reads them


class TokenConfigError(ValueError):
    """The operator tokens are misconfigured; the message names the entry, never a secret."""


class AuthSettings(BaseSettings):
    """The recall service's own knobs for authentication (RECALL_* in the environment)."""

    model_config = SettingsConfigDict(
        env_prefix="RECALL_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    operator_tokens: SecretStr | None = Field(
        None, description="Entries name:role:token (or name:role:sha256:<hex>), comma-separated"
    )
    operator_tokens_file: Path | None = Field(
        None, description="A file of such entries, one a line (# starts a comment)"
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Signs the console's session cookies; random per process when unset "
        "(sessions then end when the service restarts, and differ between instances)",
    )
    session_max_age_s: int = Field(8 * 3600, ge=60, description="How long a console login lasts")
    cookie_secure: bool = Field(False, description="Send the session cookie over HTTPS only")


def hash_token(token: str) -> str:
    """What a tokens file may hold instead of the token: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credential:
    name: str
    role: Role
    digest: bytes  # sha256 of the token

    def __repr__(self) -> str:  # the digest is a secret's stand-in: keep it out of logs
        return f"Credential(name={self.name!r}, role={self.role.value!r})"

    @property
    def may_change_recalls(self) -> bool:
        return self.role is Role.OPERATOR


def parse_credentials(text: str, source: str) -> list[Credential]:
    """Entries `name:role:token` or `name:role:sha256:<hex>`, by comma or line."""
    found: list[Credential] = []
    names: set[str] = set()
    entries = [
        entry.strip()
        for line in text.splitlines()
        for entry in line.split("#", 1)[0].split(",")
        if entry.strip()
    ]
    for number, entry in enumerate(entries, start=1):
        name, _, rest = entry.partition(":")
        role_text, _, secret = rest.partition(":")
        where = f"{source}, entry {number}"
        if not _NAME.match(name):
            raise TokenConfigError(
                f"{where}: operator name {name!r} must be 1-64 letters, digits or ._@-"
            )
        try:
            role = Role(role_text)
        except ValueError:
            raise TokenConfigError(
                f"{where} ({name}): role {role_text!r} is not one of 'operator', 'staff'"
            ) from None
        if (hashed := _HASH.match(secret)) is not None:
            digest = bytes.fromhex(hashed.group(1))
        elif secret.startswith("sha256:"):
            raise TokenConfigError(f"{where} ({name}): a hash must be sha256: and 64 hex digits")
        elif len(secret) < MIN_TOKEN_LENGTH or any(c.isspace() for c in secret):
            raise TokenConfigError(
                f"{where} ({name}): the token must be at least {MIN_TOKEN_LENGTH} characters "
                "without spaces"
            )
        else:
            digest = hashlib.sha256(secret.encode()).digest()
        if name in names:
            raise TokenConfigError(f"{where}: operator {name!r} is configured twice")
        names.add(name)
        found.append(Credential(name, role, digest))
    return found


class Operators:
    """The configured credentials; empty means nobody may change recalls."""

    def __init__(self, credentials: list[Credential]) -> None:
        self._credentials = list(credentials)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Operators:
        credentials: list[Credential] = []
        if settings.operator_tokens is not None:
            credentials += parse_credentials(
                settings.operator_tokens.get_secret_value(), "RECALL_OPERATOR_TOKENS"
            )
        if settings.operator_tokens_file is not None:
            path = settings.operator_tokens_file.expanduser()
            try:
                text = path.read_text()
            except OSError as error:
                raise TokenConfigError(
                    f"RECALL_OPERATOR_TOKENS_FILE: cannot read {path}: {error.strerror}"
                ) from None
            credentials += parse_credentials(text, f"RECALL_OPERATOR_TOKENS_FILE {path}")
        names = [c.name for c in credentials]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise TokenConfigError(f"operator {duplicated[0]!r} is configured twice")
        return cls(credentials)

    @property
    def configured(self) -> bool:
        return bool(self._credentials)

    def authenticate(self, token: str, name: str | None = None) -> Credential | None:
        """The credential whose token this is (and, if given, whose name), else None.

        Every credential is compared, in constant time each, so how long it takes does not
        tell how close a guess came."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for credential in self._credentials:
            if hmac.compare_digest(credential.digest, digest):
                found = credential
        if found is None or (name is not None and not _same(found.name, name)):
            return None
        return found

    def by_name(self, name: str) -> Credential | None:
        return next((c for c in self._credentials if c.name == name), None)


# --- the console's session ---------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A console visitor: `nonce` binds the CSRF token; `operator` is set once logged in."""

    nonce: str
    operator: str | None = None
    token_mark: str | None = None  # which token logged in: a changed token ends the session
    expires: int = 0

    @classmethod
    def anonymous(cls, max_age_s: int) -> Session:
        return cls(secrets.token_urlsafe(18), expires=int(time.time()) + max_age_s)


class SessionSigner:
    """Session cookies and CSRF tokens, both HMAC-SHA256 under one secret."""

    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self._key = hashlib.sha256(b"lotline-recall-session:" + secret).digest()
        self.max_age_s = max_age_s

    def _mac(self, purpose: str, data: bytes) -> str:
        mac = hmac.new(self._key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()
        return _b64(mac)

    def dumps(self, session: Session) -> str:
        payload = _b64(
            json.dumps(
                {
                    "n": session.nonce,
                    "o": session.operator,
                    "t": session.token_mark,
                    "e": session.expires,
                },
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._mac('session', payload.encode())}"

    def loads(self, value: str | None) -> Session | None:
        """The session a cookie holds, or None if it is forged, damaged or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not _same(mac, self._mac("session", payload.encode())):
            return None
        try:
            fields: dict[str, Any] = json.loads(_unb64(payload))
            session = Session(str(fields["n"]), fields["o"], fields["t"], int(fields["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def token_mark(self, credential: Credential) -> str:
        return self._mac("token", credential.digest)[:22]

    def login(self, credential: Credential) -> Session:
        """A fresh session (new nonce, so a token planted before login is worthless)."""
        fresh = Session.anonymous(self.max_age_s)
        return Session(fresh.nonce, credential.name, self.token_mark(credential), fresh.expires)

    def csrf_token(self, session: Session) -> str:
        return self._mac("csrf", session.nonce.encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and _same(token, self.csrf_token(session))

    def who(self, session: Session, operators: Operators) -> Credential | None:
        """The logged-in credential, if it is still configured with the same token."""
        if session.operator is None or session.token_mark is None:
            return None
        credential = operators.by_name(session.operator)
        if credential is None or not _same(self.token_mark(credential), session.token_mark):
            return None
        return credential


def _same(given: str, expected: str) -> bool:
    """Constant-time equality of text from outside (any characters, unlike compare_digest's
    str form, which refuses non-ASCII)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
