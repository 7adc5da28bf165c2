"""The web dashboard as a browser shows it, its /metrics and its answer to
bad requests.

Three nodes from testnet, each started with `--dashboard-addr 127.0.0.1:0`.
A driver on node 1 leaves a named actor, a finished task, a failed task and
a running one behind; headless chromium then renders node 2's dashboard
(`--dump-dom`), and the rendered DOM must show all of them and the whole
cluster. The browser test is skipped where chromium is not installed
(scripts/setup installs Debian's package when it runs as root).

Node 2's dashboard is found in its start banner (`  dashboard: http://...`
in testnet's `nodeK.out`): it is the node's own word on the port it bound,
there as soon as the node is up, and needs neither a driver nor the control
store. `ray.nodes()` must agree with it (checked by the driver).
"""

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest

from testnet import REPO, start_healthy  # tests/conftest.py puts testnet on the path

pytestmark = pytest.mark.timeout(300)

HEALTHY_TIMEOUT_S = 60.0
BANNER_TIMEOUT_S = 10.0
DRIVER_READY_TIMEOUT_S = 90.0
BROWSER_TIMEOUT_S = 60.0  # one chromium run
RENDER_ATTEMPTS = 5
RENDER_DEADLINE_S = 150.0  # all attempts together
METRICS_TIMEOUT_S = 10.0
ASSETS = os.path.join(REPO, "node", "src", "dashboard")
BANNER = re.compile(r"^\s*dashboard:\s*(http://\S+?)/?\s*$", re.M)

DRIVER = """
import json, sys, time
import raynode as ray
ray.init()

@ray.remote
class DashCounter:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n

@ray.remote
def dash_ok():
    return "ok"

@ray.remote(max_retries=0)
def dash_fails():
    raise ValueError("dash_fails fails on purpose")

@ray.remote
def dash_sleeps():
    time.sleep(30)

counter = DashCounter.options(name="dash_counter").remote()
assert ray.get(counter.inc.remote()) == 1
assert ray.get(dash_ok.remote()) == "ok"
try:
    ray.get(dash_fails.remote())
    failed = None
except ValueError as e:  # raised as RayTaskError(ValueError)
    failed = [isinstance(e, ray.exceptions.RayTaskError), "dash_fails fails on purpose" in str(e)]
sleeper = dash_sleeps.remote()
deadline = time.monotonic() + 15
while True:
    dashboards = {n["NodeID"].lower(): n.get("DashboardAddress") for n in ray.nodes() if n.get("Alive")}
    if (len(dashboards) == 3 and all(dashboards.values())) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
print("READY " + json.dumps({"failed": failed, "dashboards": dashboards}), flush=True)
sys.stdin.readline()  # the test has looked at the dashboard
ray.cancel(sleeper, force=True)
"""

METRIC_TASKS = """
import raynode as ray
ray.init()

@ray.remote
def dash_metric(i):
    return i

assert ray.get([dash_metric.remote(i) for i in range(20)]) == list(range(20))
"""


@pytest.fixture(scope="module")
def dash_cluster():
    """Three nodes, each with a dashboard on a port of its own."""
    args = ("--dashboard-addr", "127.0.0.1:0")
    cluster = start_healthy(3, args_on={i: args for i in range(3)}, timeout=HEALTHY_TIMEOUT_S)
    yield cluster
    cluster.stop()


def dashboard_url(node):
    """The dashboard's base URL from the node's start banner ("http://127.0.0.1:PORT")."""
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    while True:
        with open(node.out_path, encoding="utf-8", errors="replace") as f:
            found = BANNER.search(f.read())
        if found:
            return found.group(1)
        if time.monotonic() > deadline:
            pytest.fail(f"{node.name} printed no dashboard address within {BANNER_TIMEOUT_S:.0f} s:\n"
                        + node.log_tail())
        time.sleep(0.1)


def find_browser():
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("chromium is not installed: scripts/setup installs Debian's chromium package")
    return browser


def run_browser(browser, profile, *args):
    """Runs headless chromium with a fresh profile; its stdout, or None if it
    did not end within BROWSER_TIMEOUT_S (then its whole process group is killed)."""
    cmd = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=8000", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BROWSER_TIMEOUT_S)
        return out
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Page(HTMLParser):
    """A rendered page's <body> attributes and the rows of its tables with an
    id: tables[id] is a list of (tr attributes, [(td attributes, text)])."""

    def __init__(self, html):
        super().__init__()
        self.body = {}
        self.tables = {}
        self._open = []  # ids of the tables being read, innermost last
        self._row = None
        self._cell = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = attrs
        elif tag == "table":
            self._open.append(attrs.get("id"))
            if attrs.get("id"):
                self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._open and self._open[-1]:
            self._row = (attrs, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = (attrs, [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row[1].append((self._cell[0], "".join(self._cell[1]).strip()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._open[-1]].append(self._row)
            self._row = None
        elif tag == "table" and self._open:
            self._open.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1].append(data)

    def rows(self, table, key):
        """The rows of `table` carrying the attribute `key` (data rows, not headers)."""
        return [row for row in self.tables.get(table, []) if key in row[0]]


def texts(row):
    return [text for _, text in row[1]]


def classes(attrs):
    return attrs.get("class", "").split()


def task_state(page, name):
    """The states of the rows of task `name` in the tasks table."""
    return [row[0]["data-state"] for row in page.rows("tasks-table", "data-task-id") if name in texts(row)]


def shows_workload(page):
    """Why the page does not yet show the driver's work, or None if it does."""
    if page.body.get("data-loaded") != "1":
        return "not loaded"
    if len(page.rows("nodes-table", "data-node-id")) != 3:
        return "not 3 nodes"
    actors = [row[0].get("data-state") for row in page.rows("actors-table", "data-actor-id")
              if "dash_counter" in texts(row)]
    if actors != ["ALIVE"]:
        return f"dash_counter is {actors}"
    for name, state in (("dash_ok", "FINISHED"), ("dash_fails", "FAILED")):
        if state not in task_state(page, name):
            return f"{name} is {task_state(page, name)}"
    return None


def read_ready(proc, timeout):
    """The driver's READY line as JSON, or None if it ends or prints none within `timeout` seconds.
    A thread reads its stdout, so a silent driver cannot block the test."""
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line.startswith("READY "):
            return json.loads(line[len("READY "):])
        if not line:
            return None


def test_the_browser_shows_the_cluster(dash_cluster, tmp_path):
    browser = find_browser()
    node2 = dash_cluster.nodes[1]
    url = dashboard_url(node2)
    err_path = tmp_path / "driver.err"
    with open(err_path, "w") as err:
        driver = subprocess.Popen([dash_cluster.python, "-c", DRIVER], env=dash_cluster.driver_env(0),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        ready = read_ready(driver, DRIVER_READY_TIMEOUT_S)
        assert ready is not None, f"the driver did not get ready:\n{err_path.read_text()}"
        assert ready["failed"] == [True, True], ready
        assert ready["dashboards"].get(node2.node_id) == url.removeprefix("http://"), ready

        # The driver's rows reach node 2 through the other nodes; a few renderings may be needed.
        deadline = time.monotonic() + RENDER_DEADLINE_S
        page, why = None, "never rendered"
        for attempt in range(RENDER_ATTEMPTS):
            dom = run_browser(browser, tmp_path / f"profile-{attempt}", "--dump-dom", url + "/")
            if dom is not None:
                page = Page(dom)
                why = shows_workload(page)
                if why is None:
                    break
            else:
                why = f"chromium did not end within {BROWSER_TIMEOUT_S:.0f} s"
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        assert page is not None and why is None, f"the dashboard does not show the workload: {why}"

        nodes = page.rows("nodes-table", "data-node-id")
        assert {row[0]["data-node-id"].lower() for row in nodes} == {n.node_id for n in dash_cluster.nodes}
        for row in nodes:
            assert "ALIVE" in texts(row), texts(row)
        leaders = [row for row in nodes if "leader" in classes(row[0])]
        assert len(leaders) == 1, [row[0] for row in nodes]
        roles = [text for attrs, text in leaders[0][1] if "role" in classes(attrs)]
        assert roles == ["leader"], texts(leaders[0])
        assert task_state(page, "dash_ok") == ["FINISHED"]
        assert task_state(page, "dash_fails") == ["FAILED"]
        failed = next(row for row in page.rows("tasks-table", "data-task-id") if "dash_fails" in texts(row))
        # The error cell shows the message (in full in its title when it is long).
        assert any("dash_fails fails on purpose" in attrs.get("title", text) for attrs, text in failed[1]), failed

        # A picture of the page, kept beside the other test artifacts.
        artifacts = os.environ.get("RAYNODE_TEST_ARTIFACTS", os.path.join(REPO, "target", "test-artifacts"))
        os.makedirs(artifacts, exist_ok=True)
        shot = os.path.join(artifacts, "dashboard.png")
        if os.path.exists(shot):
            os.remove(shot)
        run_browser(browser, tmp_path / "profile-shot", "--window-size=1400,2000", f"--screenshot={shot}", url + "/")
        assert os.path.exists(shot) and os.path.getsize(shot) > 0, f"chromium wrote no screenshot to {shot}"
    finally:
        if driver.poll() is None:
            try:
                driver.stdin.write("done\n")
                driver.stdin.flush()
                driver.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                driver.kill()
                driver.wait()


def scrape(url):
    """The metric families of a dashboard's /metrics, by name."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def finished_tasks(families):
    return sum(s.value for s in families["ray_tasks"].samples if s.labels.get("State") == "FINISHED")


def test_metrics_count_the_tasks_run(dash_cluster):
    """Each node counts the tasks it owns, so the FINISHED count summed over
    the three nodes' /metrics rises by at least the 20 tasks a driver runs."""
    pytest.importorskip("prometheus_client.parser",
                        reason="prometheus_client is not installed: scripts/setup installs it")
    urls = [dashboard_url(node) for node in dash_cluster.nodes]
    families = scrape(urls[1])
    assert "ray_tasks" in families, sorted(families)
    for name in ("raynode_object_store_used_bytes", "ray_actors", "ray_object_store_memory",
                 "ray_node_cpu_utilization", "ray_node_mem_used", "raynode_raft_term"):
        assert name in families, (name, sorted(families))
    before = sum(finished_tasks(scrape(url)) for url in urls)

    out = dash_cluster.run_driver(1, METRIC_TASKS)
    assert out.returncode == 0, out.stderr

    deadline = time.monotonic() + METRICS_TIMEOUT_S
    while True:
        after = sum(finished_tasks(scrape(url)) for url in urls)
        if after - before >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert after - before >= 20, f"FINISHED went from {before} to {after}"


def test_bad_requests_are_refused_and_the_node_serves_on(dash_cluster):
    url = dashboard_url(dash_cluster.nodes[1])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "/api/nope", timeout=10)
    assert refused.value.code == 404
    assert "error" in json.loads(refused.value.read())

    # Bytes that are not HTTP, then a connection closed half way through a request.
    host, port = url.removeprefix("http://").rsplit(":", 1)
    for junk in (b"\x00\xffNOT HTTP AT ALL\r\n\r\n", b"GET /api/nodes HTTP/1.1\r\nHost: x\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(4096)
            except OSError:
                pass

    with urllib.request.urlopen(url + "/api/nodes", timeout=10) as r:
        assert r.status == 200
        assert len(json.load(r)["rows"]) == 3


def test_the_page_fetches_nothing_from_elsewhere():
    """The assets name no URL but the SVG namespace: the page works offline."""
    for name in ("index.html", "app.js", "style.css"):
        with open(os.path.join(ASSETS, name), encoding="utf-8") as f:
            text = f.read()
        urls = set(re.findall(r"\w+://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{name} names {sorted(urls)}"
        assert "@import" not in text and "url(" not in text, name
