"""Point-to-point transfer of a list of tensors whose shapes and dtypes the receiver does not know.

A transfer is three kinds of messages to one peer: the header length (int64 [1]), the header
(int64: count, then per tensor its dtype code, ndim and shape) and one message per tensor. Works
with gloo (CPU) and NCCL (CUDA tensors; the header then lives on the same device). Peers are
ranks within `group` (None = the default group).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.bool)


def global_rank(group: dist.ProcessGroup | None, rank: int) -> int:
    """The default-group rank of `rank` in `group` (send/recv address processes by it)."""
    return rank if group is None else dist.get_global_rank(group, rank)


def send_tensors(tensors: Sequence[Tensor], dst: int, group: dist.ProcessGroup | None = None) -> None:
    """Send `tensors` (any shapes, dtypes in _DTYPES, one device) to group rank `dst`."""
    device = tensors[0].device
    header = [len(tensors)]
    for t in tensors:
        header += [_DTYPES.index(t.dtype), t.dim(), *t.shape]
    header_t = torch.tensor(header, dtype=torch.int64, device=device)
    peer = global_rank(group, dst)
    dist.send(torch.tensor([len(header)], dtype=torch.int64, device=device), peer, group=group)
    dist.send(header_t, peer, group=group)
    for t in tensors:
        dist.send(t.detach().contiguous(), peer, group=group)


def recv_tensors(src: int, device: torch.device, group: dist.ProcessGroup | None = None) -> list[Tensor]:
    """Receive what `send_tensors` sent from group rank `src`, as new tensors on `device`."""
    peer = global_rank(group, src)
    length = torch.empty(1, dtype=torch.int64, device=device)
    dist.recv(length, peer, group=group)
    header_t = torch.empty(int(length.item()), dtype=torch.int64, device=device)
    dist.recv(header_t, peer, group=group)
    header = header_t.tolist()
    out, i = [], 1
    for _ in range(header[0]):
        dtype, ndim = _DTYPES[header[i]], header[i + 1]
        shape = header[i + 2 : i + 2 + ndim]
        i += 2 + ndim
        t = torch.empty(shape, dtype=dtype, device=device)
        dist.recv(t, peer, group=group)
        out.append(t)
    return out
