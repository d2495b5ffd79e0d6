"""TLS client authentication with a key that never leaves its TPM or token.

`TlsClientSession` is a sans-IO TLS client over OpenSSL 3 (our binding, `firmware._ffi._openssl`):
ciphertext goes in with `feed`, comes out with `pending_output`; `step` advances the handshake,
`encrypt`/`decrypt` carry the application's bytes. Its client certificate is set as usual, but its
private key is the certificate's public key with a signer: when the handshake needs the client's
signature (CertificateVerify), OpenSSL hands the SHA-256 digest to `sign_digest`, a blocking
callable that asks the key service (`ecdsa-sha256-digest`), and gets a DER ECDSA signature back.
An exception in the signer is kept and raised again by `step`, once OpenSSL has returned.

`DelegatedTlsEndpoint` is the `Endpoint` of the HTTP client over such a session: it opens TCP,
runs each handshake step in the executor (the signer blocks on a TPM or token, never on the event
loop), then offers the usual StreamReader/StreamWriter through a small transport that encrypts
what is written, decrypts what arrives, and sends close_notify on close.

Supported: TLS 1.2 and 1.3 (1.2 at least), the server's certificate checked against the system's
trust store plus `ca_pem`, and against the host name; client keys EC P-256 signing with SHA-256.
RSA client keys are refused (`NotSupported`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware._ffi import load_openssl
from firmware.errors import NotSupported, Unavailable
from firmware.executor import RunBlocking
from firmware.http.errors import ExchangeFailed, Failure, Phase

if TYPE_CHECKING:
    from firmware._ffi._openssl import CData

ffi, lib = load_openssl()

SignDigest = Callable[[bytes], bytes]

_READ_CHUNK = 16 * 1024
_ERROR_TEXT = 256
# Signature schemes the client offers for its own key: SHA-256 only, the digest the key service
# signs (a TLS 1.2 server could otherwise ask for ECDSA with SHA-384 or SHA-512).
_CLIENT_SIGALGS = b"ECDSA+SHA256"


class TlsFailed(Unavailable):
    """The TLS connection to a server failed: handshake, certificate check, or a record.

    `detail` is OpenSSL's reason (with the certificate check's verdict when that failed).
    """

    def __init__(self, server: str, detail: str) -> None:
        super().__init__(
            f"TLS with {server} failed: {detail}",
            hint="check the server's name and certificate, the CA bundle and the client "
            "certificate",
        )
        self.detail = detail


class _Signer:
    """What the C callback reaches through its handle: the signer, whether it may sign now (only
    during a handshake step), and the exception it raised, kept for `step` to raise."""

    def __init__(self, server: str, sign_digest: SignDigest) -> None:
        self.server = server
        self.sign_digest = sign_digest
        self.armed = False
        self.error: BaseException | None = None

    def sign(self, digest: bytes) -> bytes | None:
        if not self.armed:
            self.error = TlsFailed(self.server, "a signature was asked outside the handshake")
            return None
        try:
            return self.sign_digest(digest)
        except BaseException as error:  # kept and raised again by `step`, outside of C
            self.error = error
            return None


@ffi.def_extern(error=-1)
def ek_sign_digest(
    signer: CData, digest: CData, digest_len: int, signature: CData, signature_len: CData
) -> int:
    """OpenSSL asks for an ECDSA signature of `digest`: the DER signature goes in `signature`."""
    slot: _Signer = ffi.from_handle(signer)
    der = slot.sign(bytes(ffi.buffer(digest, digest_len)))
    if der is None:
        return -1
    if len(der) > signature_len[0]:
        slot.error = TlsFailed(slot.server, f"the key service's signature is {len(der)} bytes")
        return -1
    ffi.buffer(signature, len(der))[:] = der
    signature_len[0] = len(der)
    return 0


class TlsClientSession:
    """One TLS client connection's state, without I/O (see the module docstring).

    `ca_pem`: CA certificates the server's chain may end in besides the system's trust store
    (as the standard library's `load_verify_locations` adds them). `certificate_chain_pem`: the
    client certificate, then its intermediates.
    `sign_digest(digest) -> DER signature`: signs a SHA-256 digest with the certificate's key;
    blocking, called only from `step`.
    """

    def __init__(
        self,
        server_hostname: str,
        ca_pem: bytes | None,
        certificate_chain_pem: bytes,
        sign_digest: SignDigest,
    ) -> None:
        self.server_hostname = server_hostname
        self.established = False
        self.peer_closed = False  # the server sent close_notify
        self._signer = _Signer(server_hostname, sign_digest)
        self._handle = ffi.new_handle(self._signer)  # lives as long as the key that holds it
        lib.ERR_clear_error()
        self._ctx = ffi.gc(self._new_context(ca_pem, certificate_chain_pem), lib.SSL_CTX_free)
        self._ssl = ffi.gc(self._checked(lib.SSL_new(self._ctx), "SSL_new"), lib.SSL_free)
        self._incoming = self._checked(lib.BIO_new(lib.BIO_s_mem()), "BIO_new")
        self._outgoing = self._checked(lib.BIO_new(lib.BIO_s_mem()), "BIO_new")
        lib.SSL_set_bio(self._ssl, self._incoming, self._outgoing)  # the SSL owns them now
        self._expect_server(server_hostname)
        lib.SSL_set_connect_state(self._ssl)

    @property
    def version(self) -> str:
        """The protocol version in use ("TLSv1.3"), once established."""
        return ffi.string(lib.SSL_get_version(self._ssl)).decode("ascii")

    def feed(self, ciphertext: bytes) -> None:
        """Bytes received from the server."""
        if ciphertext and lib.BIO_write(self._incoming, ciphertext, len(ciphertext)) != len(
            ciphertext
        ):
            raise self._failed("BIO_write")

    def step(self) -> bool:
        """Advance the handshake with what was fed; True once it is complete. Blocking: this is
        where `sign_digest` is called. Raises `TlsFailed`, or what the signer raised."""
        if self.established:
            return True
        lib.ERR_clear_error()
        self._signer.armed = True
        try:
            result = lib.SSL_do_handshake(self._ssl)
        finally:
            self._signer.armed = False
        self._raise_signer_error()
        if result == 1:
            self.established = True
            return True
        if lib.SSL_get_error(self._ssl, result) == lib.SSL_ERROR_WANT_READ:
            return False
        raise self._failed("the handshake")

    def pending_output(self) -> bytes:
        """Bytes to send to the server (handshake records, encrypted data, alerts), taken."""
        pending = lib.BIO_ctrl_pending(self._outgoing)
        if pending == 0:
            return b""
        buffer = ffi.new("char[]", pending)
        read = lib.BIO_read(self._outgoing, buffer, pending)
        return bytes(ffi.buffer(buffer, max(read, 0)))

    def encrypt(self, plaintext: bytes) -> None:
        """Queue application bytes; their records are in `pending_output` afterwards."""
        if not plaintext:
            return
        lib.ERR_clear_error()
        written = ffi.new("size_t *")
        if lib.SSL_write_ex(self._ssl, plaintext, len(plaintext), written) != 1:
            raise self._failed("sending")

    def decrypt(self) -> bytes:
        """The application bytes in what was fed so far (b"" if none). Sets `peer_closed` at
        the server's close_notify; raises `TlsFailed` for an alert or a bad record."""
        received = bytearray()
        buffer = ffi.new("char[]", _READ_CHUNK)
        count = ffi.new("size_t *")
        while not self.peer_closed:
            lib.ERR_clear_error()
            if lib.SSL_read_ex(self._ssl, buffer, _READ_CHUNK, count) == 1:
                received += ffi.buffer(buffer, count[0])
                continue
            error = lib.SSL_get_error(self._ssl, 0)
            if error == lib.SSL_ERROR_WANT_READ:
                break
            if error != lib.SSL_ERROR_ZERO_RETURN:
                raise self._failed("receiving")
            self.peer_closed = True
        self._raise_signer_error()
        return bytes(received)

    def close(self) -> None:
        """Queue close_notify (in `pending_output` afterwards)."""
        lib.ERR_clear_error()
        if self.established:
            lib.SSL_shutdown(self._ssl)
        lib.ERR_clear_error()

    def _new_context(self, ca_pem: bytes | None, certificate_chain_pem: bytes) -> CData:
        ctx = self._checked(lib.SSL_CTX_new(lib.TLS_client_method()), "SSL_CTX_new")
        try:
            self._configure(ctx, ca_pem, certificate_chain_pem)
        except BaseException:
            lib.SSL_CTX_free(ctx)
            raise
        return ctx

    def _configure(self, ctx: CData, ca_pem: bytes | None, chain_pem: bytes) -> None:
        if lib.SSL_CTX_set_min_proto_version(ctx, lib.TLS1_2_VERSION) != 1:
            raise self._failed("setting TLS 1.2 as the oldest version")
        lib.SSL_CTX_set_options(ctx, lib.SSL_OP_NO_RENEGOTIATION | lib.SSL_OP_NO_COMPRESSION)
        lib.SSL_CTX_set_verify(ctx, lib.SSL_VERIFY_PEER, ffi.NULL)
        if lib.SSL_CTX_set_default_verify_paths(ctx) != 1:
            raise self._failed("loading the system's trust store")
        if ca_pem is not None:
            result = lib.ek_load_verify_pem(ctx, ca_pem, len(ca_pem))
            if result == lib.EK_NO_CA_CERTIFICATE:
                raise TlsFailed(self.server_hostname, "the CA bundle holds no certificate")
            if result != lib.EK_OK:
                raise self._failed("reading the CA bundle")
        if lib.SSL_CTX_set1_client_sigalgs_list(ctx, _CLIENT_SIGALGS) != 1:
            raise self._failed("choosing the client's signature schemes")
        result = lib.ek_use_certificate_chain(ctx, chain_pem, len(chain_pem), self._handle)
        if result == lib.EK_NOT_EC_P256:
            raise NotSupported(
                "TLS client authentication with a key in the key service supports EC P-256 keys "
                "only; the client certificate has another key",
                hint="issue the device identity certificate for an ec-p256 key",
            )
        if result == lib.EK_NO_CERTIFICATE:
            raise TlsFailed(self.server_hostname, "the client certificate is not PEM")
        if result != lib.EK_OK:
            raise self._failed("setting the client certificate and its key")

    def _expect_server(self, hostname: str) -> None:
        """Check the server's certificate against `hostname` (an IP address: against its IP
        SAN) and name it in the ClientHello (SNI, for names only)."""
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            name = hostname.encode("idna")
            if lib.SSL_set1_host(self._ssl, name) != 1:
                raise self._failed("setting the expected host name") from None
            if lib.SSL_set_tlsext_host_name(self._ssl, name) != 1:
                raise self._failed("setting the server name indication") from None
            return
        param = lib.SSL_get0_param(self._ssl)
        if lib.X509_VERIFY_PARAM_set1_ip_asc(param, hostname.encode("ascii")) != 1:
            raise self._failed("setting the expected IP address")

    def _raise_signer_error(self) -> None:
        error, self._signer.error = self._signer.error, None
        if error is not None:
            lib.ERR_clear_error()
            raise error

    def _checked(self, pointer: CData, what: str) -> CData:
        if pointer == ffi.NULL:
            raise self._failed(what)
        return pointer

    def _failed(self, what: str) -> TlsFailed:
        """A `TlsFailed` for `what`, with OpenSSL's queued reasons (and the queue emptied)."""
        reasons = []
        text = ffi.new("char[]", _ERROR_TEXT)
        while code := lib.ERR_get_error():
            lib.ERR_error_string_n(code, text, _ERROR_TEXT)
            reasons.append(ffi.string(text).decode("ascii", errors="replace"))
        if hasattr(self, "_ssl"):
            verdict = lib.SSL_get_verify_result(self._ssl)
            if verdict != lib.X509_V_OK:
                reason = lib.X509_verify_cert_error_string(verdict)
                reasons.append(f"certificate verify failed: {ffi.string(reason).decode()}")
        return TlsFailed(self.server_hostname, f"{what}: {'; '.join(reasons) or 'no reason given'}")


class DelegatedTlsEndpoint:
    """An HTTPS server reached over a `TlsClientSession` (see the module docstring).

    `session_factory(host)` makes the session for each connection; `run_blocking` is the
    executor's, where each handshake step runs.
    """

    def __init__(
        self,
        host: str,
        port: int,
        session_factory: Callable[[str], TlsClientSession],
        run_blocking: RunBlocking,
    ) -> None:
        self.host = host
        self.port = port
        self._session_factory = session_factory
        self._run_blocking = run_blocking

    def __str__(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open TCP, run the handshake (signing in the executor), and return the streams."""
        session = self._session(self.host)
        loop = asyncio.get_running_loop()
        transport, link = await loop.create_connection(_CiphertextLink, self.host, self.port)
        try:
            await self._handshake(session, link)
        except BaseException:
            transport.abort()
            raise
        return link.open_streams(session)

    def _session(self, host: str) -> TlsClientSession:
        try:
            return self._session_factory(host)
        except TlsFailed as error:
            raise self._failed(error.detail) from None

    async def _handshake(self, session: TlsClientSession, link: _CiphertextLink) -> None:
        try:
            while not await self._run_blocking(session.step):
                link.send(session.pending_output())
                ciphertext = await link.received()
                if not ciphertext:
                    raise self._failed("the server closed the connection during the handshake")
                session.feed(ciphertext)
        except TlsFailed as error:
            link.send(session.pending_output())  # the alert that tells the server why
            raise self._failed(error.detail) from None
        except ExchangeFailed:
            raise
        except Exception as error:  # the signer's: raised in the executor, named here
            raise self._failed(f"signing with the client key failed: {error}") from error
        link.send(session.pending_output())

    def _failed(self, detail: str) -> ExchangeFailed:
        return ExchangeFailed(str(self), Failure.TLS, Phase.CONNECT, detail=detail)


class _CiphertextLink(asyncio.Protocol):
    """The TCP side: ciphertext in and out. During the handshake it keeps what arrives for
    `received`; afterwards it decrypts into the application's protocol (`open_streams`)."""

    def __init__(self) -> None:
        self._tcp: asyncio.Transport | None = None
        self._inbox = bytearray()
        self._eof = False
        self._arrived: asyncio.Future[None] | None = None
        self._session: TlsClientSession | None = None
        self._app: asyncio.StreamReaderProtocol | None = None
        self._app_lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._tcp = transport

    def send(self, ciphertext: bytes) -> None:
        if ciphertext and self._tcp is not None and not self._tcp.is_closing():
            self._tcp.write(ciphertext)

    async def received(self) -> bytes:
        """The ciphertext that arrived since the last call, waiting for some; b"" at EOF."""
        while not self._inbox and not self._eof:
            self._arrived = asyncio.get_running_loop().create_future()
            await self._arrived
        data = bytes(self._inbox)
        self._inbox.clear()
        return data

    def open_streams(
        self, session: TlsClientSession
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Switch to carrying application data for `session`, once its handshake is done."""
        assert self._tcp is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        self._app = asyncio.StreamReaderProtocol(reader, loop=loop)
        self._session = session
        app_transport = _DelegatedTlsTransport(self._tcp, session, self._app)
        self._app.connection_made(app_transport)
        if self._inbox:  # what came with the end of the handshake
            early, self._inbox = bytes(self._inbox), bytearray()
            self._carry(early)
        if self._eof and not self._app_lost:
            self._app.eof_received()
        return reader, asyncio.StreamWriter(app_transport, self._app, reader, loop)

    def data_received(self, data: bytes) -> None:
        if self._session is None:
            self._inbox += data
            self._wake()
        else:
            self._carry(data)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        if self._app is not None and not self._app_lost:
            self._app.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        self._lose_app(exc)

    def pause_writing(self) -> None:
        if self._app is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app is not None:
            self._app.resume_writing()

    def _carry(self, ciphertext: bytes) -> None:
        session, app, tcp = self._session, self._app, self._tcp
        assert session is not None and app is not None and tcp is not None
        if self._app_lost:
            return
        try:
            session.feed(ciphertext)
            plaintext = session.decrypt()
        except TlsFailed as error:
            self.send(session.pending_output())
            tcp.abort()
            self._lose_app(ConnectionResetError(f"TLS: {error.detail}"))
            return
        self.send(session.pending_output())  # a key update's answer, if any
        if plaintext:
            app.data_received(plaintext)
        if session.peer_closed:
            app.eof_received()

    def _lose_app(self, exc: Exception | None) -> None:
        if self._app is not None and not self._app_lost:
            self._app_lost = True
            self._app.connection_lost(exc)

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)


class _DelegatedTlsTransport(asyncio.Transport):
    """The application's side: plaintext written is encrypted onto TCP; close sends
    close_notify first. Flow control and extra info are TCP's."""

    def __init__(
        self, tcp: asyncio.Transport, session: TlsClientSession, app: asyncio.BaseProtocol
    ) -> None:
        super().__init__()
        self._tcp = tcp
        self._session = session
        self._app = app
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "tls_version":
            return self._session.version
        return self._tcp.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._tcp.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        self._closing = True
        self._session.close()
        self._tcp.write(self._session.pending_output())
        self._tcp.close()

    def abort(self) -> None:
        self._closing = True
        self._tcp.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            return
        self._session.encrypt(bytes(data))
        self._tcp.write(self._session.pending_output())

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app

    def is_reading(self) -> bool:
        return self._tcp.is_reading()

    def pause_reading(self) -> None:
        self._tcp.pause_reading()

    def resume_reading(self) -> None:
        self._tcp.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tcp.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._tcp.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tcp.get_write_buffer_limits()
