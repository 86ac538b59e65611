"""Who may read the collector: open on loopback, a token or basic credentials elsewhere
(the ingest routes keep their API key); refusing to start off loopback without one;
``uvicorn readme_metrics.collector.app:app`` configured from the environment; ``serve``
without the collector extra."""

from __future__ import annotations

import base64
import http.client
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from readme_metrics.collector.access import Credentials, check_access, check_bind, credential_required
from readme_metrics.collector.errors import HttpError
from tests.collector_rig import auth, collector, make_log, post, request
from tests.servers import BIN, ROOT, Server, free_port

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-token-0123456789"
USER, PASSWORD = "ops", "pass:word with colon"
DASHBOARD = ["/", "/logs/x", "/api/summary", "/api/logs", "/api/logs/x", "/api/export.har", "/healthz", "/metrics"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("host", "required"),
    [("127.0.0.1", False), ("127.0.0.2", False), ("::1", False), ("[::1]", False), ("localhost", False),
     ("0.0.0.0", True), ("::", True), ("192.0.2.2", True), ("collector.example", True)],
)  # fmt: skip
def test_the_decision(host: str, required: bool) -> None:
    assert credential_required(host) is required
    if required:
        with pytest.raises(ValueError, match="non-loopback address, without a credential"):
            check_bind(host, Credentials())
    check_bind(host, Credentials.of(TOKEN, None))  # with one, any address is fine


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer  {TOKEN} ", True),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (basic(USER, PASSWORD), True),
        (basic("anyone", TOKEN), True),  # the token as a browser's basic password
        (basic(USER, "wrong"), False),
        (basic("other", PASSWORD), False),
        ("Basic !!!", False),
        (TOKEN, False),
        (None, False),
    ],
)
def test_credentials(header: str | None, accepted: bool) -> None:
    credentials = Credentials.of(TOKEN, f"{USER}:{PASSWORD}")
    assert credentials.accepts(header) is accepted
    if accepted:
        check_access(True, credentials, header)
    else:
        with pytest.raises(HttpError) as refused:
            check_access(True, credentials, header)
        assert refused.value.status == 401 and "WWW-Authenticate" in refused.value.headers
    check_access(False, credentials, None)  # open (loopback): no credential asked


def local_address() -> str | None:
    """A non-loopback address of this machine (the route out), or None."""
    address = ""
    for target in ("10.254.254.254", "198.51.100.1"):  # connecting UDP sends no packet
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((target, 9))
                address = str(probe.getsockname()[0])
                break
            except OSError:
                continue
    if not address:
        return None
    try:
        with socket.socket() as s:
            s.bind((address, 0))
    except OSError:
        return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A collector bound to 0.0.0.0 with a token and basic credentials; its URL on a
    non-loopback address of this machine (else on 127.0.0.1: the bind decides the rule)."""
    db = tmp_path_factory.mktemp("public") / "p.sqlite3"
    srv = collector(db, "--host", "0.0.0.0", "--token", TOKEN, "--basic-auth", f"{USER}:{PASSWORD}", "--api-key", "k")
    address = local_address() or "127.0.0.1"
    yield srv, f"http://{address}:{srv.port}"
    srv.stop()


def test_off_loopback_the_dashboard_needs_a_credential(public: tuple[Server, str]) -> None:
    _, base = public
    for path in DASHBOARD:
        status, body = request(base + path)
        assert status == 401, (path, body)
        assert request(base + path, headers={"Authorization": f"Bearer {TOKEN}x"})[0] == 401, path
        assert request(base + path, headers={"Authorization": basic(USER, "nope")})[0] == 401, path
    for header in (f"Bearer {TOKEN}", basic(USER, PASSWORD), basic("browser", TOKEN)):
        for path in ("/", "/api/summary", "/api/logs", "/api/export.har", "/healthz", "/metrics"):
            assert request(base + path, headers={"Authorization": header})[0] == 200, (path, header)
        assert request(base + "/api/logs/none", headers={"Authorization": header})[0] == 404


def test_off_loopback_ingest_keeps_its_api_key(public: tuple[Server, str]) -> None:
    _, base = public
    log = make_log()
    assert post(base, [log], key="k") == (202, {"accepted": 1, "stored": 1})  # no dashboard credential needed
    assert post(base, [log], key="other")[0] == 401
    assert post(base, [log], key=None, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 401
    assert request(base + "/v1", headers={"Authorization": auth("k")})[0] == 200
    got = request(base + f"/api/logs/{log['_id']}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert got == (200, log)


def test_serve_refuses_a_public_address_without_a_credential(tmp_path: Path) -> None:
    db = tmp_path / "never.sqlite3"
    for host in ("0.0.0.0", "::"):
        done = subprocess.run(
            [sys.executable, "-m", "readme_metrics", "serve", "--host", host, "--port", "0", "--db", str(db)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert done.returncode == 2, done
        assert "non-loopback address, without a credential" in done.stderr and "--token" in done.stderr
        assert not db.exists()


def test_the_asgi_app_reads_the_environment(tmp_path: Path) -> None:
    """``uvicorn readme_metrics.collector.app:app``: settings from README_METRICS_*."""
    env = {"README_METRICS_DB": str(tmp_path / "env.sqlite3"), "README_METRICS_API_KEYS": "one, two"}
    port = free_port()  # on every address, not having been told so (README_METRICS_HOST)
    uvicorn = [str(BIN / "uvicorn"), "--host", "0.0.0.0", "--port", str(port), "readme_metrics.collector.app:app"]
    srv = Server(uvicorn, port, env)
    try:
        assert post(srv.url, [make_log()], key="two") == (202, {"accepted": 1, "stored": 1})
        assert post(srv.url, [make_log()], key="three")[0] == 401
        assert request(srv.url + "/api/logs")[1]["total"] == 1  # loopback: open
        assert request(srv.url + "/metrics")[0] == 200
        address = local_address()
        if address:  # reached on another address than the loopback it was told of: refused
            assert request(f"http://{address}:{srv.port}/api/logs")[0] == 403  # the Host rule
            conn = http.client.HTTPConnection(address, srv.port, timeout=10)
            try:  # a loopback name in Host, but the connection came on another address
                conn.request("GET", "/api/logs", headers={"Host": "localhost"})
                response = conn.getresponse()
                assert response.status == 403 and b"no credential" in response.read()
            finally:
                conn.close()
    finally:
        srv.stop()
    assert (tmp_path / "env.sqlite3").exists()


def test_the_asgi_app_refuses_a_public_host_without_a_credential(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "README_METRICS_HOST": "0.0.0.0",
           "README_METRICS_DB": str(tmp_path / "x.sqlite3")}  # fmt: skip
    argv = [
        str(Path(sys.executable).parent / "uvicorn"),
        "--port",
        str(free_port()),
        "readme_metrics.collector.app:app",
    ]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "non-loopback address, without a credential" in done.stdout + done.stderr


def test_serve_without_the_collector_extra_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from readme_metrics.collector.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--port", "0", "--db", str(tmp_path / "n.sqlite3")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert 'pip install "readme-metrics[collector]"' in done.stderr
    # The import command needs no extra.
    logs = tmp_path / "logs.jsonl"
    logs.write_text('{"_id": "x"}\n')
    done = subprocess.run(
        [sys.executable, "-c", code, "import", "--db", str(tmp_path / "n.sqlite3"), str(logs)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "imported 0 logs" in done.stdout, done
