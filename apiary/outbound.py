"""The outbound-URL policy: which user-given URLs the platform may call, checked twice.

Every URL a user can make Apiary call -- an LLM provider's ``api_base``, an OIDC issuer and
the endpoints its discovery document names, an alert webhook -- goes through one
:class:`OutboundPolicy` (see ``docs/architecture.md`` and ``docs/security.md``):

* **when the URL is accepted** (:meth:`OutboundPolicy.check_url`): ``https`` only, no
  ``user:password@``, and neither a literal address nor any address the host name resolves
  to may be loopback, private, link-local, multicast, reserved, unspecified or otherwise
  not globally routable (IPv4-mapped, 6to4, Teredo and NAT64 IPv6 addresses are judged by
  the IPv4 address they carry). The refusal is :class:`~apiary.errors.OutboundUrlRefused`
  (400), naming the field and the reason.
* **when a connection is made** (:meth:`OutboundPolicy.client`,
  :meth:`OutboundPolicy.async_client`): every new TCP connection resolves the host again,
  refuses if *any* address breaks the policy (so a name whose DNS answer changed since the
  check -- DNS rebinding -- cannot reach inside) and connects to one of the addresses it just
  checked, never to a second resolution. TLS still verifies the certificate against the
  host *name* (httpcore passes it to ``start_tls`` as ``server_hostname``). Redirects are
  never followed, since a public server could redirect inside.

The operator's allow-list (``APIARY_OUTBOUND_ALLOWLIST``: host names, matched exactly, and
IP networks) lifts the address checks for the hosts and addresses it names and admits
plain ``http`` for those hosts (a listed name or address, or a name whose every address
lies in a listed network); it exists for development, tests and on-premises providers.

This module sits below both planes: it imports only :mod:`apiary.errors`,
:mod:`apiary.settings`, the standard library and httpx/httpcore (with anyio, which they run
on).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpcore
import httpx

from apiary.errors import OutboundUrlRefused

if TYPE_CHECKING:
    from apiary.settings import ApiarySettings

__all__ = ["OutboundPolicy", "Resolver", "system_resolver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``resolver(host, port)`` -> the addresses (as strings) a TCP connection to ``host`` may
#: use. Injectable so that tests can play a DNS server that changes its answer.
Resolver = Callable[[str, int], Sequence[str]]

# 64:ff9b::/96 is the well-known NAT64 prefix: its last 32 bits are an IPv4 address that a
# NAT64 gateway would connect to.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# httpx's own default pool limits.
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# Client arguments that would bypass the connect-time check (another transport, a proxy
# that resolves the name itself, a Unix socket) or follow redirects inside.
_FORBIDDEN_CLIENT_ARGS = frozenset({"transport", "mounts", "proxy", "uds", "app"})
# Client arguments that configure the transport this module builds.
_TRANSPORT_ARGS = frozenset(
    {"verify", "cert", "http1", "http2", "limits", "trust_env", "local_address", "retries",
     "socket_options"}
)


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host`` (``getaddrinfo``), distinct addresses in its order.

    Raises :class:`OSError` (``socket.gaierror``) when the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address, where the traffic ends up
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination (a short reason), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return _address_refusal(embedded)
        if address.is_site_local:
            return "private_address"
    if address.is_unspecified:
        return "unspecified_address"
    if address.is_loopback:
        return "loopback_address"
    if address.is_link_local:
        return "link_local_address"
    if address.is_multicast:
        return "multicast_address"
    if address.is_reserved:
        return "reserved_address"
    if address.is_private:
        return "private_address"
    if not address.is_global:
        # e.g. 100.64.0.0/10 (carrier-grade NAT), which is neither private nor public.
        return "non_public_address"
    return None


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


_REASON_TEXT = {
    "malformed": "is not a valid URL",
    "scheme": "must be an https:// URL",
    "http_not_allowed": "must be https:// (http:// is allowed only for hosts on the "
    "operator's APIARY_OUTBOUND_ALLOWLIST)",
    "userinfo": "must not carry a user name or password (user:password@host)",
    "no_host": "has no host",
    "unspecified_address": "points at an unspecified address (0.0.0.0 or ::)",
    "loopback_address": "points at a loopback address",
    "link_local_address": "points at a link-local address (such as a cloud metadata "
    "service)",
    "multicast_address": "points at a multicast address",
    "private_address": "points at a private network address",
    "reserved_address": "points at a reserved address",
    "non_public_address": "points at an address that is not publicly routable",
}


class OutboundPolicy:
    """Decides whether the platform may call a URL, at check time and at connect time.

    ``allowlist`` holds host names (matched exactly, case-insensitively, without a trailing
    dot) and IP networks (``10.0.0.0/8``, or a single address). A host name on it may be
    called over http too, and any address it resolves to is accepted; an address inside a
    listed network is accepted whatever name led to it, and a name whose every address is
    inside listed networks may be called over http. ``resolver`` exists for tests.
    """

    def __init__(
        self, allowlist: Sequence[str] = (), *, resolver: Resolver | None = None
    ) -> None:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in allowlist:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry)
        self._hosts = frozenset(hosts)
        self._networks = tuple(networks)
        self._resolve: Resolver = resolver if resolver is not None else system_resolver

    @classmethod
    def from_settings(cls, settings: ApiarySettings) -> OutboundPolicy:
        """The policy the operator configured (``APIARY_OUTBOUND_ALLOWLIST``)."""
        return cls(settings.outbound_allowlist)

    # --- the policy itself ----------------------------------------------------------------

    def _host_allowed(self, host: str) -> bool:
        """Whether ``host`` (a name or a literal address) is on the allow-list."""
        host = host.strip("[]").lower().rstrip(".")
        if host in self._hosts:
            return True
        address = _parse_address(host)
        return address is not None and self._address_allowed(address)

    def _address_allowed(self, address: IPAddress) -> bool:
        if any(address in network for network in self._networks):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                return any(embedded in network for network in self._networks)
        return False

    def _address_problem(self, address: IPAddress) -> str | None:
        """The reason ``address`` is refused, or None when it may be connected to."""
        if self._address_allowed(address):
            return None
        return _address_refusal(address)

    def _refuse(
        self, url: str, field: str, reason: str, *, address: str | None = None
    ) -> OutboundUrlRefused:
        text = _REASON_TEXT.get(reason, "is refused by the outbound-URL policy")
        return OutboundUrlRefused(
            f"{field} {text}; the platform only calls public https:// URLs unless the "
            "operator allow-lists the host (APIARY_OUTBOUND_ALLOWLIST)",
            url=url, field=field, reason=reason, address=address,
        )

    def check_url(self, url: str, *, field: str) -> str:
        """The normalized form of ``url`` if the platform may call it, else raises.

        Raises :class:`~apiary.errors.OutboundUrlRefused` (400; ``field`` names the request
        field, ``reason`` the rule) when the URL is malformed, carries user info, when its
        literal address or any address its host name resolves to now is not public and not
        allow-listed, or when it is not ``https`` and its host is not allow-listed (a name
        on the list, or a host whose every address now lies in a listed network). An https
        name that does not resolve at all is accepted: it reaches nothing now, and every
        connection is checked again when it is made. May block on DNS.
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise self._refuse(url, field, "malformed") from None
        if parsed.scheme not in ("http", "https"):
            raise self._refuse(url, field, "scheme")
        if parsed.userinfo:
            raise self._refuse(url, field, "userinfo")
        host = parsed.raw_host.decode("ascii").lower().rstrip(".")
        if not host:
            raise self._refuse(url, field, "no_host")
        normalized = str(parsed)
        if self._host_allowed(host):
            return normalized
        plain = parsed.scheme != "https"
        literal = _parse_address(host)
        if literal is not None:
            reason = self._address_problem(literal)
            if reason is not None:
                raise self._refuse(url, field, reason, address=str(literal))
            if plain:  # a public address, but not allow-listed: https only
                raise self._refuse(url, field, "http_not_allowed")
            return normalized
        try:
            answers = self._resolve(host, parsed.port or (80 if plain else 443))
        except OSError:
            if plain:  # cannot tell whether it is in an allow-listed network
                raise self._refuse(url, field, "http_not_allowed") from None
            return normalized
        addresses: list[IPAddress] = []
        for answer in answers:
            address = _parse_address(answer)
            reason = "malformed" if address is None else self._address_problem(address)
            if reason is not None or address is None:
                raise self._refuse(url, field, reason or "malformed", address=answer)
            addresses.append(address)
        if plain and not (addresses and all(self._address_allowed(a) for a in addresses)):
            raise self._refuse(url, field, "http_not_allowed")
        return normalized

    def vetted_addresses(self, host: str, port: int) -> list[str]:
        """The addresses a connection to ``host:port`` may use, resolved now.

        Raises :class:`~apiary.errors.OutboundUrlRefused` if any of them breaks the policy
        (one bad answer means the name cannot be trusted), :class:`OSError` if the name
        does not resolve. An allow-listed host name is resolved but not checked.
        """
        host = host.strip("[]")
        name = host.lower().rstrip(".")
        literal = _parse_address(name)
        url = f"tcp://{host}:{port}"
        if literal is not None:
            reason = self._address_problem(literal)
            if reason is not None:
                raise self._refuse(url, "connection", reason, address=str(literal))
            return [str(literal)]
        answers = list(self._resolve(host, port))
        if not answers:
            raise OSError(f"{host} resolved to no address")
        if name in self._hosts:
            return answers
        for answer in answers:
            address = _parse_address(answer)
            reason = "malformed" if address is None else self._address_problem(address)
            if reason is not None:
                raise self._refuse(url, "connection", reason, address=answer)
        return answers

    # --- HTTP clients that check at connect time ----------------------------------------

    def client(self, **httpx_kwargs: Any) -> httpx.Client:
        """An :class:`httpx.Client` whose every TCP connection is checked when it is made.

        Takes :class:`httpx.Client`'s arguments except ``transport``, ``mounts``, ``proxy``,
        ``uds`` and ``app`` (each would route around the check; :class:`TypeError`);
        ``follow_redirects`` is always False. A refused connection fails the request with
        :class:`httpx.ConnectError` whose ``__cause__`` is the
        :class:`~apiary.errors.OutboundUrlRefused`.
        """
        client_kwargs, transport_kwargs = _split_kwargs(httpx_kwargs)
        transport = _PolicyTransport(self, **transport_kwargs)
        return httpx.Client(transport=transport, follow_redirects=False, **client_kwargs)

    def async_client(self, **httpx_kwargs: Any) -> httpx.AsyncClient:
        """The :class:`httpx.AsyncClient` twin of :meth:`client`, with the same guarantees
        (name resolution runs in a worker thread)."""
        client_kwargs, transport_kwargs = _split_kwargs(httpx_kwargs)
        transport = _AsyncPolicyTransport(self, **transport_kwargs)
        return httpx.AsyncClient(transport=transport, follow_redirects=False, **client_kwargs)


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    forbidden = sorted(_FORBIDDEN_CLIENT_ARGS & kwargs.keys())
    if forbidden:
        raise TypeError(
            f"an outbound-policy client cannot take {', '.join(forbidden)}: it would "
            "bypass the connect-time address check"
        )
    client_kwargs = {k: v for k, v in kwargs.items() if k not in _TRANSPORT_ARGS}
    client_kwargs.pop("follow_redirects", None)
    transport_kwargs = {k: v for k, v in kwargs.items() if k in _TRANSPORT_ARGS}
    if "trust_env" in kwargs:
        client_kwargs["trust_env"] = kwargs["trust_env"]
    return client_kwargs, transport_kwargs


def _refusal_in(exc: BaseException) -> OutboundUrlRefused | None:
    """The policy refusal somewhere in ``exc``'s cause chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OutboundUrlRefused):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _connect_error(refused: OutboundUrlRefused) -> httpcore.ConnectError:
    error = httpcore.ConnectError(f"outbound connection refused: {refused.message}")
    error.__cause__ = refused
    return error


class _PolicyBackend(httpcore.NetworkBackend):
    """A sync network backend that connects only to addresses the policy accepts now."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.vetted_addresses(host, port)
        except OutboundUrlRefused as refused:
            raise _connect_error(refused) from refused
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return _first_connection(
            addresses,
            lambda address: self._inner.connect_tcp(
                address, port, timeout=timeout, local_address=local_address,
                socket_options=socket_options,
            ),
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outbound-policy clients do not use Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _first_connection(
    addresses: list[str], connect: Callable[[str], httpcore.NetworkStream]
) -> httpcore.NetworkStream:
    last: Exception | None = None
    for address in addresses:
        try:
            return connect(address)
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
            last = exc
    assert last is not None  # vetted_addresses never returns an empty list
    raise last


class _AsyncPolicyBackend(httpcore.AsyncNetworkBackend):
    """The async twin of :class:`_PolicyBackend` (resolution runs in a worker thread)."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await anyio.to_thread.run_sync(
                self._policy.vetted_addresses, host, port
            )
        except OutboundUrlRefused as refused:
            raise _connect_error(refused) from refused
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # vetted_addresses never returns an empty list
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("outbound-policy clients do not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pool_options(
    verify: ssl.SSLContext | str | bool,
    cert: Any,
    trust_env: bool,
    http1: bool,
    http2: bool,
    limits: httpx.Limits,
    local_address: str | None,
    retries: int,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> dict[str, Any]:
    return {
        "ssl_context": httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": http1,
        "http2": http2,
        "local_address": local_address,
        "retries": retries,
        "socket_options": socket_options,
    }


class _PolicyTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose network backend applies the policy;
    a refusal surfaces as :class:`httpx.ConnectError` caused by the refusal itself."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> None:
        options = _pool_options(
            verify, cert, trust_env, http1, http2, limits, local_address, retries,
            socket_options,
        )
        # The parent builds a pool without a backend hook; ours replaces it before use.
        super().__init__(verify=options["ssl_context"], http1=http1, http2=http2)
        self._pool = httpcore.ConnectionPool(network_backend=_PolicyBackend(policy), **options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError as exc:
            refused = _refusal_in(exc)
            if refused is None:
                raise
            raise httpx.ConnectError(
                f"outbound connection refused: {refused.message}", request=request
            ) from refused


class _AsyncPolicyTransport(httpx.AsyncHTTPTransport):
    """The async twin of :class:`_PolicyTransport`."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> None:
        options = _pool_options(
            verify, cert, trust_env, http1, http2, limits, local_address, retries,
            socket_options,
        )
        super().__init__(verify=options["ssl_context"], http1=http1, http2=http2)
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=_AsyncPolicyBackend(policy), **options
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError as exc:
            refused = _refusal_in(exc)
            if refused is None:
                raise
            raise httpx.ConnectError(
                f"outbound connection refused: {refused.message}", request=request
            ) from refused
