import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The theory tests work on matrices of size <= 48, where a second thread only adds
    synchronisation (10x slower on a loaded two-core machine, measured): one thread, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
