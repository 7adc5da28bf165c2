"""Smoke test of the benchmark harness: quick mode, raynode alone, tiny sizes.

It checks that every metric produced a number, not how fast anything is.
Skipped while the ``raynode`` package cannot be imported.
"""

import json
import math
import os
import subprocess
import sys

import pytest

raynode = pytest.importorskip("raynode")
pytest.importorskip("numpy", reason="the benchmark workloads need numpy")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads  # noqa: E402

try:
    import pytest_timeout  # noqa: F401
    pytestmark = pytest.mark.timeout(600)
except ImportError:
    pass


def test_every_metric_produces_a_number(tmp_path):
    if not callable(getattr(raynode, "init", None)):
        pytest.skip("raynode.init is not there yet")
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "run.py"), "--smoke",
         "--systems", "raynode", "--python-raynode", sys.executable,
         "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=580)
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(out.read_text())
    assert doc["mode"] == "smoke"
    assert doc["machine"]["cores"] and doc["machine"]["memory_bytes"]
    assert doc["systems"]["raynode"]["available"], doc["systems"]
    got = {r["metric"]: r for r in doc["records"]
           if r["system"] == "raynode"}
    expected = [m for ws in workloads.registry().values()
                for (m, _u, _h) in ws]
    bad = []
    for metric in expected:
        rec = got.get(metric)
        if rec is None:
            bad.append("%s: no record" % metric)
        elif rec["status"] != "ok" or not isinstance(rec["mean"], float) \
                or not math.isfinite(rec["mean"]) or rec["mean"] <= 0:
            bad.append("%s: %s (%s)" % (metric, rec["status"],
                                        rec.get("error")))
    assert not bad, "\n".join(bad) + "\n\n" + proc.stdout[-5000:]
