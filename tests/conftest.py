import pytest

from univenc.data import data_root, is_available


def needs(dataset):
    """Skip unless the real dataset's files are in the data root (CI unpacks them; see .ci/run)."""
    return pytest.mark.skipif(not is_available(dataset), reason=f"{dataset} is not in the data root "
                              f"{data_root()}: run `make data` (online) or copy the files there")
