"""The HTTP side: authlib's OAuth2Client over httpx2, every call with a deadline and a size cap.

authlib sends the requests (PKCE, client authentication at the token endpoint, the grants); its
answers are read here so that an error keeps Entra's `error_codes`, and so no answer can be
larger than MAX_RESPONSE or take longer than the deadline, even one dripped a byte at a time.
"""

from __future__ import annotations

import math
import re
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx2
from authlib.integrations.httpx_client import OAuth2Client
from httpx2._utils import get_environment_proxies

from ..credentials import Secret
from ..status import Status
from .errors import OAuth2Error, decode, unreachable
from .settings import OAuth2Settings

MAX_RESPONSE = 64 * 1024  # a token answer is a few kB; a page of HTML is not one
USER_AGENT = "connected-emails"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # none can go inside a SASL string

T = TypeVar("T")


class _TooLarge(Exception):
    pass


class _Deadline:
    """One exchange's deadline, kept however the server drips its answer: a byte a second never
    trips a read timeout, so at the deadline a timer shuts the connection's socket down, which
    ends the read blocked on it."""

    def __init__(self, seconds: float):
        self.expired = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace extension: it hands over the connection as it opens."""
        if event == "connection.connect_tcp.complete":
            opened = info["return_value"].get_extra_info("socket")
            if opened is None:  # a stream without one: nothing to cut
                return
            with self._lock:
                # A duplicate of its descriptor: TLS wraps the socket into another object and
                # leaves this one with none, while a shutdown through either ends the connection.
                self._socket = opened.dup()
                if self.expired:
                    _shut(self._socket)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._socket is not None:
                _shut(self._socket)

    def failed(self, exc: httpx2.TransportError) -> httpx2.TransportError:
        """What the exchange failed with; a cut at the deadline is a timeout."""
        self.cancel()
        return httpx2.ReadTimeout("the answer did not finish in time") if self.expired else exc

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()  # the duplicate only: the connection is httpcore's


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the exchange ended as the deadline came


class _BoundedStream(httpx2.SyncByteStream):
    def __init__(self, stream: httpx2.SyncByteStream, deadline: _Deadline):
        self._stream, self._deadline = stream, deadline

    def __iter__(self) -> Iterator[bytes]:
        total = 0
        try:
            for chunk in self._stream:
                total += len(chunk)
                if total > MAX_RESPONSE:
                    raise _TooLarge(f"the answer was larger than {MAX_RESPONSE // 1024} kB")
                yield chunk
        except httpx2.TransportError as exc:
            raise self._deadline.failed(exc) from None

    def close(self) -> None:
        self._deadline.cancel()
        self._stream.close()


class _BoundedTransport(httpx2.HTTPTransport):
    """Reads each answer under a size cap and the whole call's deadline."""

    def __init__(self, timeout: float, **kwargs: Any):
        # A new connection for every request: the deadline's timer needs the socket as it opens.
        super().__init__(limits=httpx2.Limits(max_keepalive_connections=0), **kwargs)
        self._timeout = timeout

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        deadline = _Deadline(self._timeout)
        request.extensions = {**request.extensions, "trace": deadline.trace}
        try:
            response = super().handle_request(request)
        except httpx2.TransportError as exc:
            raise deadline.failed(exc) from None
        assert isinstance(response.stream, httpx2.SyncByteStream)  # a sync transport's answer
        response.stream = _BoundedStream(response.stream, deadline)
        return response


class Client(OAuth2Client):
    """authlib's client whose token answers raise OAuth2Error with the answer decoded."""

    def __init__(self, settings: OAuth2Settings, secret: Secret | None, timeout: float, **kw: Any):
        self.redact: tuple[str, ...] = (secret.reveal(),) if secret else ()
        super().__init__(
            client_id=settings.client_id,
            client_secret=secret.reveal() if secret else None,
            # Google's Desktop clients send their secret in the body; public clients send none.
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            scope=" ".join(settings.scopes) or None,
            timeout=httpx2.Timeout(timeout),
            transport=_BoundedTransport(timeout, verify=True, retries=0),
            mounts=_proxies(timeout),
            follow_redirects=False,
            trust_env=True,
            headers={"User-Agent": USER_AGENT},
            **kw,
        )

    def parse_response_token(self, resp: httpx2.Response) -> dict[str, Any]:
        body = answer_json(resp)
        if resp.status_code >= 400 or "error" in body:
            raise decode(resp.status_code, body, self.redact)
        if not body.get("access_token"):
            raise OAuth2Error(
                "the token endpoint answered without an access token; check oauth2.scopes.",
                Status.REQUEST_IS_INVALID,
            )
        for field, name in (
            ("access_token", "an access token"),
            ("refresh_token", "a refresh token"),
        ):
            given = body.get(field)
            if given is not None and (not isinstance(given, str) or _CONTROL.search(given)):
                raise OAuth2Error(
                    f"the token endpoint answered with {name} that cannot be sent (not text, "
                    "or with a control character in it); check the oauth2 endpoints.",
                    Status.REQUEST_IS_INVALID,
                )
        for field in ("expires_in", "expires_at"):
            if body.get(field) is not None and not _whole_seconds(body[field]):
                raise OAuth2Error(
                    f"the token endpoint answered with an {field} that is not a number; check "
                    "the oauth2 endpoints.",
                    Status.REQUEST_IS_INVALID,
                )
        self.token = body
        token: dict[str, Any] = self.token  # authlib's OAuth2Token, a dict
        return token


def _proxies(timeout: float) -> dict[str, httpx2.BaseTransport | None]:
    """HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY as httpx reads them, each proxy through a
    bounded transport: a client given its own transport reads none of them itself."""
    try:
        return {
            pattern: None  # NO_PROXY: straight through the client's own transport
            if url is None
            else _BoundedTransport(timeout, verify=True, retries=0, proxy=url)
            for pattern, url in get_environment_proxies().items()
        }
    except (ValueError, ImportError) as exc:  # an unknown scheme; socks5 without socksio
        # The variable's value is not quoted: a proxy address can carry a password.
        raise OAuth2Error(
            f"the proxy in HTTPS_PROXY, HTTP_PROXY or ALL_PROXY cannot be used "
            f"({type(exc).__name__}); give it as http://host:port, or unset it.",
            Status.REQUEST_IS_INVALID,
            remote=False,
        ) from None


def _whole_seconds(value: object) -> bool:
    """What authlib's int() takes of an expiry: a finite number, or a whole one in a string
    (some endpoints quote it). Anything else raised out of the check, and out of `check`."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        try:
            return math.isfinite(float(value))
        except OverflowError:  # an int past any float: no lifetime a clock can add
            return False
    if isinstance(value, str):
        return re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None
    return False


def answer_json(resp: httpx2.Response) -> dict[str, Any]:
    """The JSON object of an answer, or an error body standing in for one (a proxy's page)."""
    try:
        body = resp.json()
    except (ValueError, RecursionError):  # JSON nested past the parser's depth is no JSON
        body = None
    if isinstance(body, dict):
        return body
    return {"error": f"HTTP {resp.status_code}, not a JSON answer"}


def call(url: str, fn: Callable[[], T]) -> T:
    """Run one HTTP exchange; transport failures become No Service Connection in words."""
    try:
        return fn()
    except OAuth2Error:
        raise
    except _TooLarge as exc:
        raise OAuth2Error(
            f"the token endpoint {urlsplit(url).hostname} sent an answer that is not a token "
            f"({exc}); check the endpoint URL.",
            Status.REQUEST_IS_INVALID,
        ) from None
    except (httpx2.TransportError, OSError) as exc:
        raise unreachable(urlsplit(url).hostname or url, exc) from None
