"""A dashboard off loopback needs the token made from the cluster key.

The node listens on 0.0.0.0 (all addresses) but the test reaches it on
127.0.0.1 only. The page itself loads (it shows the login form); its API
and metrics answer 401 without the token, 401 with a wrong one, and 200
with the one `raynode dashboard-token` prints, as a cookie or a bearer
token. `raynode dashboard-token` without a key file fails and creates none.
"""

import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from testnet import find_binary, start_healthy

pytestmark = pytest.mark.timeout(180)

BANNER = re.compile(r"dashboard: http://0\.0\.0\.0:(\d+)")


def fetch(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def open_node():
    cluster = start_healthy(1, args_on={0: ("--dashboard-addr", "0.0.0.0:0")}, timeout=60.0)
    yield cluster
    cluster.stop()


def port_of(node):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(node.out_path, encoding="utf-8", errors="replace") as f:
            found = BANNER.search(f.read())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    pytest.fail("no dashboard address in the banner:\n" + node.log_tail())


def test_off_loopback_the_api_needs_the_token(open_node):
    base = f"http://127.0.0.1:{port_of(open_node.nodes[0])}"
    token = subprocess.run([find_binary(), "dashboard-token", "--cluster-key", open_node.key_path],
                           capture_output=True, text=True, timeout=30)
    assert token.returncode == 0, token.stderr
    token = token.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token), token

    status, page = fetch(base + "/")
    assert status == 200 and "login-token" in page
    for path in ("/api/nodes", "/api/tasks", "/metrics"):
        assert fetch(base + path)[0] == 401, path
        assert fetch(base + path, {"Cookie": "raynode_token=" + "0" * 64})[0] == 401, path
        assert fetch(base + path, {"Authorization": "Bearer " + token[:-1]})[0] == 401, path
    status, body = fetch(base + "/api/nodes", {"Cookie": "theme=x; raynode_token=" + token})
    assert status == 200 and '"is_leader":true' in body, body
    status, body = fetch(base + "/metrics", {"Authorization": "Bearer " + token})
    assert status == 200 and "raynode_workers" in body, body[:200]


def test_no_key_file_no_token(tmp_path):
    missing = tmp_path / "no.key"
    out = subprocess.run([find_binary(), "dashboard-token", "--cluster-key", str(missing)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "cluster key" in out.stderr, out.stderr
    assert not missing.exists()
