"""Lab 02's TLS at the edge: the stack's own CA, tls.conf rendered into nginx, and a check that
refuses the wrong answers a learner plausibly writes."""

import datetime
import ssl
import stat

import httpx
import pytest
from cryptography import x509

from scalelab import tls
from scalelab.exercise import CheckFailed, NotAttempted
from scalelab.labs import lab02
from scalelab.runtimes.common.nginx import TLS_REFERENCE, unknown_placeholders, with_tls

VALUES = {"tls_listen": "127.0.0.1:9443", "redirect_listen": "127.0.0.1:9081", "https_port": "9443",
          "certificate": "/x/edge.pem", "certificate_key": "/x/edge.key"}


# -- the CA ------------------------------------------------------------------------------------
def test_the_stacks_ca_signs_a_certificate_for_localhost_and_127_0_0_1_and_keeps_its_keys_private(tmp_path):
    edge = tls.ensure(tmp_path)
    leaf, ca = x509.load_pem_x509_certificates(edge.certificate_file.read_bytes())
    assert leaf.issuer == ca.subject == x509.load_pem_x509_certificate(edge.ca_file.read_bytes()).subject
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC) <= datetime.timedelta(days=tls.SERVER_DAYS)
    for key in (edge.key_file, tmp_path / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    ssl.create_default_context(cafile=str(edge.ca_file))       # a client can load it


def test_the_ca_is_made_once_and_a_stale_certificate_is_renewed_by_the_same_ca(tmp_path):
    first = tls.ensure(tmp_path)
    ca_bytes, cert_bytes = first.ca_file.read_bytes(), first.certificate_file.read_bytes()
    assert tls.ensure(tmp_path).certificate_file.read_bytes() == cert_bytes      # reused while fresh
    first.certificate_file.write_text("not a certificate")
    renewed = tls.ensure(tmp_path)
    assert renewed.ca_file.read_bytes() == ca_bytes and renewed.certificate_file.read_bytes() != cert_bytes


# -- rendering ---------------------------------------------------------------------------------
TEMPLATE = ("http {\n    server {\n        listen 127.0.0.1:8080;\n        # ---- the entry: ...\n"
            "        location / {\n            proxy_pass http://users;\n        }\n"
            "        # ---- end of the entry ---\n    }\n{{tls}}\n}\n")


def test_tls_conf_gets_its_placeholders_and_the_plain_servers_entry():
    text = with_tls(TEMPLATE, "server {\n    listen {tls_listen} ssl;  # {not_a_placeholder}\n    {entry}\n}\n"
                    "server {\n    return 308 https://$host:{https_port}$request_uri;\n}", "", VALUES)
    block = text.split("    }\n", 1)[1]
    assert "    server {\n        listen 127.0.0.1:9443 ssl;  # {not_a_placeholder}\n" in block
    assert "        location / {\n            proxy_pass http://users;\n        }\n" in block
    assert "return 308 https://$host:9443$request_uri;" in block and "{entry}" not in block


def test_without_tls_conf_the_block_says_why():
    assert "    # not configured: tls.conf is still the stub" in with_tls(TEMPLATE, None, "tls.conf is still the stub", {})


def test_placeholders_the_driver_does_not_fill_are_named_but_comments_and_nginx_blocks_are_not():
    assert unknown_placeholders("listen {tls_port} ssl;\nserver {\n# {whatever}\n") == ["tls_port"]
    assert unknown_placeholders(TLS_REFERENCE.read_text()) == []


# -- the check, live on a solved lab 02 (local) --------------------------------------------------
def test_the_reference_passes_and_serves_the_shop_over_https(lab2):
    lab02.tls.check(lab2)
    assert "HSTS max-age 300 s" in lab02.tls.last_result
    edge = lab2.tls_entry()
    with httpx.Client(verify=lab02.tls_context(lab2), timeout=10) as client:
        assert client.get(f"{edge.https_url}/users?limit=1").status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{edge.https_url}/health", timeout=10)          # the public trust store does not know the CA


WRONG = {   # what a learner plausibly writes -> what the check must say
    "301, the habit": (("return 308", "return 301"), r"308 \(or 307\) keeps the method"),
    "no port in the redirect": (("https://$host:{https_port}$request_uri", "https://$host$request_uri"),
                                r"the port is missing"),
    "$uri drops the query": (("$request_uri", "$uri"), r"the query string is lost"),
    "redirect to http": (("return 308 https://", "return 308 http://"), r"the scheme must be https"),
    "no HSTS": (('add_header Strict-Transport-Security "max-age=300" always;', ""), r"Strict-Transport-Security"),
    "listen without ssl": (("listen {tls_listen} ssl;", "listen {tls_listen};"), r"does the listen line say `ssl`"),
    "no entry": (("    {entry}\n", "    location / { return 404; }\n"), r"put the \{entry\} line"),
    "a made-up placeholder": (("{https_port}", "{tls_port}"), r"uses \{tls_port\}"),
    "a typo nginx refuses": (("ssl_protocols ", "ssl_protocol "), r"nginx rejected tls.conf: unknown directive"),
}


@pytest.mark.parametrize("mistake", WRONG, ids=list(WRONG))
def test_the_check_refuses_a_wrong_tls_conf_with_a_message_about_it(lab2, mistake):
    (old, new), message = WRONG[mistake]
    path = lab2.workspace / "tls.conf"
    reference = TLS_REFERENCE.read_text()
    assert old in reference
    try:
        path.write_text(reference.replace(old, new))
        with pytest.raises(CheckFailed, match=message):
            lab02.tls.check(lab2)
        assert httpx.get(f"{lab2.url('users')}/health", timeout=10).status_code == 200   # plain HTTP unharmed
    finally:
        path.write_text(reference)
        lab2.reload("nginx")


def test_the_stub_is_not_attempted(lab2):
    path = lab2.workspace / "tls.conf"
    try:
        path.write_text("# YOUR CODE HERE\n")
        with pytest.raises(NotAttempted, match=r"write the HTTPS server"):
            lab02.tls.check(lab2)
        lab2.reload("nginx")
        assert "# not configured: tls.conf is still the stub" in lab2.tool("nginx", "-T").output
    finally:
        path.write_text(TLS_REFERENCE.read_text())
        lab2.reload("nginx")
