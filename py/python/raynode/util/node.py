"""get_node_ip_address: the IP address of the node this process runs on;
list_named_actors: the live named actors, from the cluster's control store."""

import socket
from typing import Any, Dict, List, Optional, Union

import raynode as ray

# Where the routing lookup points when no address is given; nothing is sent.
_PROBE_ADDRESS = "8.8.8.8:53"


def get_node_ip_address(address: Optional[str] = None) -> str:
    """The IP address of this process's node.

    Connected, that is the address the node reports for itself (its entry
    in `ray.nodes()`). Not connected, it is the address of the local
    interface that routes toward `address` ("host:port", default a public
    address; no packet is sent), or 127.0.0.1 if there is no route.
    """
    if ray.is_initialized():
        me = ray.get_runtime_context().get_node_id()
        for node in ray.nodes():
            if node["NodeID"] == me:
                found: str = node["NodeManagerAddress"]
                return found
    host, port = (address or _PROBE_ADDRESS).rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, int(port)))
        except OSError:
            return "127.0.0.1"
        ip: str = s.getsockname()[0]
        return ip


def list_named_actors(all_namespaces: bool = False) -> Union[List[str], List[Dict[str, str]]]:
    """The names of the live named actors of this namespace, or with
    `all_namespaces=True` a `{"name", "namespace"}` dict for every one."""
    import json

    from .. import _runtime

    actors: List[Dict[str, Any]] = json.loads(_runtime.client().info("named_actors"))
    if all_namespaces:
        return [{"name": a["name"], "namespace": a["namespace"]} for a in actors]
    ns = _runtime.namespace()
    return [a["name"] for a in actors if a["namespace"] == ns]
