"""Who may do what over HTTP: the people's tokens and roles, and the throttle on bad logins.

One model for every service. People are configured as entries `name:role:token`, separated
by commas (`LOTLINE_TOKENS`) or new lines (the file `LOTLINE_TOKENS_FILE`, `#` starts a
comment); instead of the token an entry may give its hash, `sha256:<64 hex>`, so a tokens
file need not hold the secrets themselves. Every service is given the same entries; the
role decides what each person may do there:

    role       change recalls   change products   read customer references
    operator   yes              yes               yes
    catalog    no               yes               no
    staff      no               no                yes

Only hashes are kept in memory, and a presented token is compared with every one by
`hmac.compare_digest`. Failed logins and bad Bearer tokens are throttled per operator name
and per client address (backoff, then lockout), in the memory of each process.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")

log = structlog.get_logger("auth")


class Role(StrEnum):
    OPERATOR = "operator"  # issues and closes recalls, changes products, reads customers
    CATALOG = "catalog"  # changes products
    STAFF = "staff"  # reads recalls with their customers, changes nothing


class TokenConfigError(ValueError):
    """The tokens are misconfigured; the message names the entry, never a secret."""


class TokenSettings(BaseSettings):
    """The people every service knows, and how failed logins are throttled (LOTLINE_*)."""

    model_config = SettingsConfigDict(
        env_prefix="LOTLINE_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    tokens: SecretStr | None = Field(
        None, description="Entries name:role:token (or name:role:sha256:<hex>), comma-separated"
    )
    tokens_file: Path | None = Field(
        None, description="A file of such entries, one a line (# starts a comment)"
    )
    login_free_failures: int = Field(
        3, ge=1, description="Failed logins per name or address before the backoff starts"
    )
    login_backoff_s: float = Field(
        1.0, ge=0, description="First wait after those (doubling with each further failure)"
    )
    login_lockout_failures: int = Field(
        10, ge=1, description="Failed logins per name or address that lock it out"
    )
    login_lockout_s: float = Field(900.0, gt=0, description="How long a lockout lasts")


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

    @property
    def may_change_products(self) -> bool:
        return self.role in (Role.OPERATOR, Role.CATALOG)

    @property
    def may_read_personal_data(self) -> bool:
        """Customer references: the recall's contacts and flagged sales, a unit's buyer."""
        return self.role in (Role.OPERATOR, Role.STAFF)


def may_read_personal_data(credential: Credential | None) -> bool:
    return credential is not None and credential.may_read_personal_data


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
    roles = ", ".join(repr(role.value) for role in Role)
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
                f"{where} ({name}): role {role_text!r} is not one of {roles}"
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


@dataclass(frozen=True)
class TokenSource:
    """Where entries come from: a variable's value and/or a file, named as in the environment."""

    variable: str
    value: SecretStr | None
    file_variable: str
    file: Path | None


def lotline_tokens(settings: TokenSettings) -> TokenSource:
    return TokenSource(
        "LOTLINE_TOKENS", settings.tokens, "LOTLINE_TOKENS_FILE", settings.tokens_file
    )


class Operators:
    """The configured credentials; empty means nobody may change anything."""

    def __init__(self, credentials: list[Credential]) -> None:
        self._credentials = list(credentials)

    @classmethod
    def from_sources(cls, sources: Sequence[TokenSource]) -> Operators:
        """Every source's entries. One person given the same way by two sources (the same
        name, role and token) counts once; anything else under one name is an error."""
        credentials: list[Credential] = []
        for source in sources:
            if source.value is not None:
                credentials += parse_credentials(source.value.get_secret_value(), source.variable)
            if source.file is not None:
                path = source.file.expanduser()
                try:
                    text = path.read_text()
                except OSError as error:
                    raise TokenConfigError(
                        f"{source.file_variable}: cannot read {path}: {error.strerror}"
                    ) from None
                credentials += parse_credentials(text, f"{source.file_variable} {path}")
        unique = list(dict.fromkeys(credentials))
        names = [c.name for c in unique]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise TokenConfigError(f"operator {duplicated[0]!r} is configured twice")
        return cls(unique)

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
        if found is None or (name is not None and not same_text(found.name, name)):
            return None
        return found

    def by_name(self, name: str) -> Credential | None:
        return next((c for c in self._credentials if c.name == name), None)


def same_text(given: str, expected: str) -> bool:
    """Constant-time equality of text from outside (any characters, unlike compare_digest's
    str form, which refuses non-ASCII)."""
    return hmac.compare_digest(given.encode(), expected.encode())


# --- throttling failed logins ---------------------------------------------------------------


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Backoff, then lockout, per key (`name:<operator>`, `address:<client>`).

    The first `free_failures` failures of a key cost nothing; each further one makes the
    key wait `backoff_s`, doubling (1, 2, 4 ... s); the `lockout_failures`-th locks it out
    for `lockout_s`. An attempt while a key waits is refused without being checked, so it
    neither counts nor tells whether it was right. A key's count is forgotten once it has
    been quiet for `lockout_s`. A success clears the operator name's count only: one valid
    token must not reset the count of the address guessing others' tokens."""

    def __init__(
        self,
        *,
        free_failures: int = 3,
        backoff_s: float = 1.0,
        lockout_failures: int = 10,
        lockout_s: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.backoff_s = backoff_s
        self.lockout_failures = max(lockout_failures, 1)
        self.lockout_s = lockout_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[str, _Failures] = {}

    @classmethod
    def from_settings(cls, settings: TokenSettings) -> LoginThrottle:
        return cls(
            free_failures=settings.login_free_failures,
            backoff_s=settings.login_backoff_s,
            lockout_failures=settings.login_lockout_failures,
            lockout_s=settings.login_lockout_s,
        )

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until these keys may try again; 0 if they may now."""
        now = self._clock()
        waits = [f.blocked_until - now for key in keys if (f := self._failures.get(key))]
        return max([0.0, *waits])

    def failures(self, key: str) -> int:
        found = self._failures.get(key)
        return found.count if found else 0

    def failed(self, keys: Iterable[str]) -> float:
        """Count a failure against every key; how long they must now wait."""
        now = self._clock()
        keys = list(keys)
        for key in keys:
            found = self._failures.pop(key, None) or _Failures()
            if now - found.last >= self.lockout_s and found.blocked_until <= now:
                found = _Failures()  # quiet long enough, or a lockout served: start again
            found.count += 1
            found.last = now
            if found.count >= self.lockout_failures:
                found.blocked_until = now + self.lockout_s
            elif found.count > self.free_failures:
                wait = self.backoff_s * 2 ** (found.count - self.free_failures - 1)
                found.blocked_until = now + min(wait, self.lockout_s)
            self._failures[key] = found  # re-inserted: the dict stays in order of last failure
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]
        return self.retry_after(keys)

    def succeeded(self, name_key: str) -> None:
        self._failures.pop(name_key, None)


def name_key(name: str) -> str:
    return f"name:{name}"


def address_key(request: Request) -> str:
    # The peer's address as the server sees it: behind a proxy, that is the proxy's (a
    # forwarded header is anyone's to write, so it is not believed).
    return f"address:{request.client.host if request.client else 'unknown'}"


def too_many_attempts(wait_s: float, what: str) -> HTTPException:
    seconds = max(1, math.ceil(wait_s))
    return HTTPException(
        429,
        f"too many failed {what} from this operator name or address: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


# --- the HTTP side -----------------------------------------------------------------------------


class Access:
    """What a service's HTTP side knows of its people; on `app.state.access`."""

    def __init__(
        self, people: Operators, throttle: LoginThrottle, service: str, sources: str
    ) -> None:
        self.people = people
        self.throttle = throttle
        self.service = service
        self.sources = sources  # how to configure people, for the 503

    @classmethod
    def from_env(cls, service: str, extra: Sequence[TokenSource] = ()) -> Access:
        """LOTLINE_TOKENS(_FILE), plus the service's own older variables, if any."""
        settings = TokenSettings()
        sources = [lotline_tokens(settings), *extra]
        variables = [v for s in sources for v in (s.variable, s.file_variable)]
        named = ", ".join(variables[:-1]) + " or " + variables[-1]
        return cls(
            Operators.from_sources(sources), LoginThrottle.from_settings(settings), service, named
        )

    @property
    def no_tokens(self) -> str:
        return (
            f"changes are refused: the {self.service} service has no tokens configured "
            f"(set {self.sources})"
        )

    def bearer(self, request: Request, token: str | None) -> Credential | None:
        """The credential of a presented Bearer token; None without one. A wrong token is a
        401, a throttled address a 429 (checked first, so a locked-out guess tells nothing)."""
        if token is None or not self.people.configured:
            return None
        keys = [address_key(request)]
        if (wait := self.throttle.retry_after(keys)) > 0:
            log.warning("token_refused_throttled", address=keys[0], retry_after_s=round(wait, 1))
            raise too_many_attempts(wait, "tokens")
        credential = self.people.authenticate(token)
        if credential is None:
            wait = self.throttle.failed(keys)
            log.warning(
                "token_invalid",
                address=keys[0],
                failures=self.throttle.failures(keys[0]),
                retry_after_s=round(wait, 1),
            )
            raise HTTPException(
                401,
                "the token is not valid",
                headers={
                    "WWW-Authenticate": f'Bearer realm="lotline-{self.service}", '
                    'error="invalid_token"'
                },
            )
        return credential

    def allowed(
        self,
        credential: Credential | None,
        permitted: Callable[[Credential], bool],
        what: str,
        needed: str,
        how: str,
    ) -> Credential:
        """The rule every change obeys: 503 without people, 401 anonymous, 403 wrong role."""
        if not self.people.configured:
            raise HTTPException(503, self.no_tokens)
        if credential is None:
            raise HTTPException(
                401,
                f"log in to {what}: {how}",
                headers={"WWW-Authenticate": f'Bearer realm="lotline-{self.service}"'},
            )
        if not permitted(credential):
            raise HTTPException(
                403,
                f"{credential.name!r} may not {what} (role {credential.role.value}; "
                f"{needed} is needed)",
            )
        return credential


def access_of(request: Request) -> Access:
    access: Access = request.app.state.access
    return access


_bearer = HTTPBearer(auto_error=False, description="A token from LOTLINE_TOKENS")


async def bearer_credential(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Credential | None:
    """Who sent the request by `Authorization: Bearer`, or None for an anonymous reader."""
    return access_of(request).bearer(request, bearer.credentials if bearer else None)


Caller = Annotated[Credential | None, Depends(bearer_credential)]

# Responses that carry customer references: no shared cache, no browser history copy.
NO_STORE = {"Cache-Control": "no-store"}
