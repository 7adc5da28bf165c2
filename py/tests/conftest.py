import pytest

import raynode
from standalone_node import StandaloneNode


@pytest.fixture(scope="session")
def ray():
    raynode.init(num_cpus=4)
    yield raynode
    raynode.shutdown()


@pytest.fixture
def standalone_node():
    node = StandaloneNode()
    yield node
    node.stop()
