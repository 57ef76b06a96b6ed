"""The recall console's login: its signed session cookie, the session kept server-side,
and the CSRF token; who may change recalls is the shared token model (`lotline.runtime.auth`).

Plain Python, no I/O. A cookie names its session by a random nonce; the service keeps the
logged-in session under the nonce's hash (`RecallStore.sessions`), so logging out ends it on
every instance, and a session unused for `session_idle_s` ends too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from lotline.runtime.auth import (
    MIN_TOKEN_LENGTH,
    Credential,
    Operators,
    Role,
    TokenConfigError,
    TokenSettings,
    TokenSource,
    hash_token,
    lotline_tokens,
    parse_credentials,
    same_text,
)

__all__ = [
    "MIN_TOKEN_LENGTH",
    "AuthSettings",
    "Credential",
    "LoginRecord",
    "Operators",
    "Role",
    "Session",
    "SessionSigner",
    "TokenConfigError",
    "hash_token",
    "own_tokens",
    "parse_credentials",
    "recall_operators",
]


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
        None,
        description="More entries name:role:token for this service only (LOTLINE_TOKENS is "
        "read too), comma-separated",
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
    session_idle_s: int = Field(
        30 * 60, ge=1, description="A console login unused this long ends (within a minute)"
    )
    cookie_secure: bool = Field(False, description="Send the session cookie over HTTPS only")


def own_tokens(settings: AuthSettings) -> TokenSource:
    """RECALL_OPERATOR_TOKENS(_FILE): the recall service's variables from before the model
    was shared, read after LOTLINE_TOKENS(_FILE)."""
    return TokenSource(
        "RECALL_OPERATOR_TOKENS",
        settings.operator_tokens,
        "RECALL_OPERATOR_TOKENS_FILE",
        settings.operator_tokens_file,
    )


def recall_operators(settings: AuthSettings, shared: TokenSettings | None = None) -> Operators:
    """Everyone the recall service knows: LOTLINE_TOKENS(_FILE), then its own variables."""
    return Operators.from_sources([lotline_tokens(shared or TokenSettings()), own_tokens(settings)])


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

    @property
    def key(self) -> str:
        """What the server keeps the login under: the nonce's hash, so the database does not
        hold what a cookie needs (its signature needs the secret too)."""
        return hashlib.sha256(b"lotline-console-session:" + self.nonce.encode()).hexdigest()


@dataclass(frozen=True)
class LoginRecord:
    """A logged-in session as the recall database keeps it; deleted at logout."""

    key: str
    operator: str
    started_at: datetime
    seen_at: datetime

    def idle(self, at: datetime, idle_s: float) -> bool:
        """Unused for `idle_s`: the login has ended."""
        return at - self.seen_at >= timedelta(seconds=idle_s)

    def needs_touch(self, at: datetime, idle_s: float) -> bool:
        """Whether to write the new last-seen time: not on every request (the console polls
        every 2 s), but often enough that idleness is measured within a quarter of idle_s or
        a minute, whichever is less."""
        return at - self.seen_at >= timedelta(seconds=min(60.0, idle_s / 4))


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
        if not same_text(mac, self._mac("session", payload.encode())):
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
        return token is not None and same_text(token, self.csrf_token(session))

    def who(self, session: Session, operators: Operators) -> Credential | None:
        """The logged-in credential, if it is still configured with the same token."""
        if session.operator is None or session.token_mark is None:
            return None
        credential = operators.by_name(session.operator)
        if credential is None or not same_text(self.token_mark(credential), session.token_mark):
            return None
        return credential


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
