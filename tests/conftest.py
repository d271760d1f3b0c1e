"""Shared fixtures: real Fashion-MNIST splits, small-file builders for error paths."""
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "0")  # the Makefile pre-builds it; never time out

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """One torch thread for the test (small models run faster so, and leave the other core free)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fmnist_test():
    from qmlp_nncf.data import FashionMNIST

    return FashionMNIST("test")


@pytest.fixture(scope="session")
def fmnist_train():
    from qmlp_nncf.data import FashionMNIST

    return FashionMNIST("train")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, the Fashion-MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path
