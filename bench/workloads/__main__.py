"""The command line of the workloads package: ``python bench/workloads
--system raynode|ray --group G`` (what ``bench/run.py`` starts), ``--list``
for the registry, ``--probe`` for one startup measurement.
"""

import os
import sys

if not __package__:
    # Run as ``python bench/workloads``: the path's first entry is this
    # directory; bench/ takes its place, so that the package and its
    # neighbours (multinode, remote_driver) are imported by their names.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import workloads  # noqa: E402

if __name__ == "__main__":
    workloads.main()
