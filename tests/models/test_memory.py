"""Memory of a forward pass grows linearly with the sequence length.

Counted as the bytes of every distinct storage saved for backward (what training holds), minus
the parameters; dense attention would grow 16x from T to 4T.
"""
import torch

from genossa.models import GenossaLM, tiny


def saved_bytes(model, T):
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    tokens = torch.randint(0, 4, (1, T), generator=torch.Generator().manual_seed(T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.compute_loss(tokens)
    return sum(storages.values())


def test_forward_memory_is_linear_in_length():
    torch.manual_seed(0)
    model = GenossaLM(tiny(n_layers=1))
    sizes = {T: saved_bytes(model, T) for T in (256, 512, 1024)}
    assert 1.8 < sizes[512] / sizes[256] < 2.2, sizes
    assert 3.6 < sizes[1024] / sizes[256] < 4.4, sizes
