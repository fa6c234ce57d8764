"""One intra-op thread for these CPU tests: the models are tiny, and on a shared 2-core machine
a second spinning thread under load slowed a 7 s test to 3 minutes."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
