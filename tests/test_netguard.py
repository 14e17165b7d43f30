"""The SSRF guard of outbound calls (hub.netguard): every IPv6 form that carries a private IPv4
address is refused, a name resolving to a private address is refused, and the connection goes
to the very address that was checked (no second DNS look-up to rebind), Host and TLS name kept."""
from __future__ import annotations

import datetime as dt
import ssl
import threading

import httpx
import pytest

from hub.netguard import DestinationRefused, Guard, guarded_client, refusal
from hub.providers.http import ProviderHttp, RequestNotSent, check_destination
from hub.providers.testing import LiveServer

#: Addresses that reach this machine or a private network, in every form the guard must see through.
PRIVATE_FORMS = [
    "127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1",
    "64:ff9b::7f00:1",      # NAT64 (well-known prefix) of 127.0.0.1
    "64:ff9b::a9fe:a9fe",   # NAT64 of 169.254.169.254 (cloud metadata)
    "2002:7f00:1::",        # 6to4 of 127.0.0.1
    "2002:a01:203::1",      # 6to4 of 10.1.2.3
    "::7f00:1",             # IPv4-compatible 127.0.0.1
    "::ffff:127.0.0.1",     # IPv4-mapped
    "::ffff:0:7f00:1",      # IPv4-translated (SIIT)
    "64:ff9b:1::808:808",   # the local-use NAT64 prefix: never public
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "224.0.0.1", "ff02::1",
]
#: The same forms carrying a public address are fine.
PUBLIC_FORMS = ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", PRIVATE_FORMS)
def test_every_form_of_a_private_address_is_refused(address):
    assert refusal(address) is not None
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(RequestNotSent):
        check_destination(f"http://{host}:9/x", allow_private=False)
    check_destination(f"http://{host}:9/x", allow_private=True)


@pytest.mark.parametrize("address", PUBLIC_FORMS)
def test_the_same_forms_carrying_a_public_address_pass(address):
    assert refusal(address) is None


def test_the_refusal_names_the_ipv4_address_inside():
    assert "127.0.0.1" in refusal("64:ff9b::7f00:1")
    assert "127.0.0.1" in refusal("2002:7f00:1::")
    assert "127.0.0.1" in refusal("::7f00:1")


def test_a_name_resolving_to_loopback_is_refused_and_nothing_is_sent():
    received = []

    def app(environ, start_response):
        received.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"ok"]

    with LiveServer(app) as server:
        port = server.server.server_port
        # `localhost` through the system resolver (no /etc/hosts change needed)
        with pytest.raises(RequestNotSent, match="localhost resolves to"):
            ProviderHttp().post(f"http://localhost:{port}/x", allow_private=False)
        # a name with several addresses is refused when any one of them is private
        mixed = ProviderHttp(resolver=lambda host, _port: ["8.8.8.8", "127.0.0.1"])
        with pytest.raises(RequestNotSent, match="127.0.0.1"):
            mixed.post(f"http://mixed.test:{port}/x", allow_private=False)
        # an IPv6 literal carrying the loopback address
        with pytest.raises(RequestNotSent, match="127.0.0.1"):
            ProviderHttp().post(f"http://[::ffff:127.0.0.1]:{port}/x", allow_private=False)
    assert received == []


class _Rebinding:
    """A DNS that answers the first question with the first address, later ones with the second
    (what a rebinding attacker's name server does); counts the questions."""

    def __init__(self, first: str, then: str):
        self.answers = [first, then]
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[str]:
        with self.lock:
            self.asked.append(host)
            return [self.answers[0] if len(self.asked) == 1 else self.answers[1]]


def _recorder(name: str, seen: list):
    def app(environ, start_response):
        seen.append((name, environ.get("HTTP_HOST")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [name.encode()]

    return app


def test_the_connection_goes_to_the_address_that_was_checked_with_the_host_kept():
    """The name is unknown to the system's DNS: the call can only succeed by connecting to the
    address the guard resolved and checked; it is asked once, and the Host header is the name."""
    seen: list = []
    with LiveServer(_recorder("checked", seen), host="127.0.0.1") as checked, \
            LiveServer(_recorder("rebound", seen), host="127.0.0.2", port=checked.server.server_port):
        port = checked.server.server_port
        dns = _Rebinding("127.0.0.1", "127.0.0.2")
        http = ProviderHttp(resolver=dns)
        response = http.get(f"http://rebind.test:{port}/x", allow_private=True)
        assert response.text == "checked"
        assert seen == [("checked", f"rebind.test:{port}")]
        assert dns.asked == ["rebind.test"]  # one look-up for the connection, none behind its back
        # A new connection (this server closes each one) is a new look-up, judged in turn: the
        # call lands where that answer points, never where a look-up the guard did not see does.
        assert http.get(f"http://rebind.test:{port}/y", allow_private=True).text == "rebound"
        assert dns.asked == ["rebind.test", "rebind.test"]

        # Without private addresses allowed, the same name is refused on its first answer.
        refused = _Rebinding("127.0.0.1", "127.0.0.2")
        with pytest.raises(RequestNotSent, match="rebind.test resolves to 127.0.0.1"):
            ProviderHttp(resolver=refused).get(f"http://rebind.test:{port}/z", allow_private=False)
        assert refused.asked == ["rebind.test"]
        assert [name for name, _ in seen] == ["checked", "rebound"]


def _certificates(tmp_path, name: str):
    """A CA and a server certificate for ``name`` (made here: no network, no fixture files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rop test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_file, key_file, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file, ca_file


def test_tls_is_verified_against_the_name_while_connecting_to_the_checked_address(tmp_path):
    import threading as th

    from werkzeug.serving import make_server

    cert_file, key_file, ca_file = _certificates(tmp_path, "provider.test")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    seen: list = []
    server = make_server("127.0.0.1", 0, _recorder("tls", seen), threaded=True, ssl_context=server_context)
    thread = th.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        port = server.server_port
        trusted = ssl.create_default_context(cafile=str(ca_file))
        dns = _Rebinding("127.0.0.1", "127.0.0.1")
        with guarded_client(allow_private=True, resolver=dns, verify=trusted) as client:
            assert client.get(f"https://provider.test:{port}/").text == "tls"
        assert seen == [("tls", f"provider.test:{port}")] and dns.asked == ["provider.test"]
        # The same server under another name: its certificate does not match, refused.
        other = _Rebinding("127.0.0.1", "127.0.0.1")
        with guarded_client(allow_private=True, resolver=other, verify=trusted) as client, \
                pytest.raises(httpx.ConnectError, match="certificate"):
            client.get(f"https://other.test:{port}/")
    finally:
        server.shutdown()
        server.server_close()


def test_an_unresolvable_name_is_not_sent():
    def nowhere(host, port):
        raise OSError("no such name")

    with pytest.raises(DestinationRefused, match="cannot resolve"):
        Guard(resolver=nowhere).addresses("nowhere.test", 80)
    with pytest.raises(RequestNotSent, match="cannot resolve"):
        ProviderHttp(resolver=nowhere).post("http://nowhere.test/x", allow_private=True)

