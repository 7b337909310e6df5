import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # seed_notebook


@pytest.fixture
def qcomm_bin():
    path = os.environ.get("QCOMM_BIN")
    if not path or not os.path.exists(path):
        pytest.fail("QCOMM_BIN must name the built qcomm launcher (ctest sets it)")
    return path
