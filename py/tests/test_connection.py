"""Connecting, and what a node does with bad input."""

import os
import socket
import struct
import subprocess
import sys
import time

import pytest


def test_connect_to_nothing_raises_connection_error_naming_the_address():
    code = (
        "import raynode as ray, time\n"
        "t = time.time()\n"
        "try:\n"
        "    ray.init(address='127.0.0.1:1')\n"
        "except ConnectionError as e:\n"
        "    print('127.0.0.1:1' in str(e), time.time() - t < 10)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True"], out.stderr


def _frame(body):
    return struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff" * 64,  # garbage
        struct.pack("<I", 1 << 31),  # oversized length
        struct.pack("<I", 100) + b"\x00" * 10,  # truncated frame
        _frame(b"\x00\x07\x01"),  # hello with an unknown version
    ],
)
def test_bad_frames_close_only_that_connection(standalone_node, payload):
    s = socket.socket(socket.AF_UNIX)
    s.connect(standalone_node.socket)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    while s.recv(4096):
        pass
    s.close()
    assert standalone_node.proc.poll() is None
    out = standalone_node.run_driver(
        "import raynode as ray\nray.init()\n@ray.remote\ndef f(): return 7\nprint(ray.get(f.remote()))\n"
    )
    assert out.stdout.strip() == "7", out.stderr


def test_status_command_lists_the_node(standalone_node):
    from raynode._node_process import find_binary

    out = subprocess.run([find_binary(), "status", "--address", standalone_node.socket], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "NodeID" in out.stdout


def test_bad_command_line_gives_a_clear_message():
    from raynode._node_process import find_binary

    out = subprocess.run([find_binary(), "--resources", "not json"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "--resources" in out.stderr


def test_node_stops_cleanly_on_sigterm(standalone_node):
    standalone_node.proc.terminate()
    assert standalone_node.proc.wait(15) == 0
    assert not os.path.exists(standalone_node.socket)


def test_private_node_stops_with_shutdown():
    code = (
        "import raynode as ray\n"
        "ray.init()\n"
        "from raynode import _runtime\n"
        "node = _runtime.node_process()\n"
        "ray.shutdown()\n"
        "print(node.proc.poll() is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr
    time.sleep(0)
