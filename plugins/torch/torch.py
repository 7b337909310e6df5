"""qcomm.torch: QSGD-compressed gradient averaging for PyTorch DistributedDataParallel.

One line on an existing DDP model::

    import qcomm.torch
    qcomm.torch.register(ddp_model, bits=4)

The hook encodes each gradient bucket with qcomm's codec (zero-copy through DLPack for CPU
float32 buckets), exchanges the wire messages with torch.distributed collectives on uint8
tensors (works with gloo and nccl process groups), decodes them, averages in rank order (every
rank gets bit-identical gradients) and returns the Future DDP expects. CUDA buckets, when qcomm
was built with CUDA, are encoded and decoded on their device by the CUDA codec (the same words)
and their words and scales all-gathered as device tensors; without CUDA they are staged through
host memory.

- Before `start_iter` (DDP rebuilds its buckets after the first iteration) and for buckets under
  `min_compress_numel` values it runs a plain allreduce.
- `algorithm`: 'allgather' (one quantization), 'sra' (scatter-reduce-allgather through
  all_to_all, bandwidth-optimal) or 'auto' (sra from 3 ranks on, when the backend has
  all_to_all; otherwise allgather, with a warning if sra was asked for).
- Error feedback keeps one residual per bucket index, reset when a bucket's size changes, saved
  with `state_dict()` / `load_state_dict()`.
- `codec` takes any codec spec the Communicator takes (e.g. "linear:bits=8,mode=asym",
  "dynamic", "rowwise:bits=4,block=512", "fp16") instead of QSGD's options; CUDA buckets then
  go through host memory (the CUDA kernels are QSGD's).
- float16 / bfloat16 buckets are compressed from a float32 copy and cast back.
- A NaN or Inf on any rank makes that QSGD bucket NaN on every rank, so GradScaler-style overflow
  skipping still skips on every rank together.
"""

import numbers
import warnings

import numpy as np
import torch
import torch.distributed as dist

from . import _codec, _qcomm

_LAYOUTS = ("seed", "compact")
_NORMS = ("l2", "max")
_ALGORITHMS = ("auto", "allgather", "sra")


def _check_int(name, value, low, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"qcomm.torch: {name} must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"qcomm.torch: {name} must be {bound}, got {value}")
    return int(value)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"qcomm.torch: {name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


class QsgdState:
    """Configuration and state of the QSGD communication hook (checked here, at registration,
    not mid-training)."""

    def __init__(self, process_group=None, bits=4, bucket_size=512, norm="max", layout="compact",
                 algorithm="auto", error_feedback=True, start_iter=2, min_compress_numel=16384,
                 seed=0, codec=None):
        self.process_group = process_group
        # codec: any spec the Communicator takes ("linear:bits=8,mode=asym", "dynamic", "fp16",
        # "qsgd:bits=2,...") instead of QSGD from bits/bucket_size/norm/layout.
        if codec is not None and not isinstance(codec, str):
            raise TypeError(f"qcomm.torch: codec must be a codec spec string, got "
                            f"{type(codec).__name__}")
        try:
            self.codec = None if codec is None else _qcomm.canonical_codec_spec(codec)
        except ValueError as e:
            raise ValueError(f"qcomm.torch: {e}") from None
        self.bits = _check_int("bits", bits, 1, 16)
        self.bucket_size = _check_int("bucket_size", bucket_size, 1)
        self.norm = _check_choice("norm", norm, _NORMS)
        self.layout = _check_choice("layout", layout, _LAYOUTS)
        self.algorithm = _check_choice("algorithm", algorithm, _ALGORITHMS)
        if not isinstance(error_feedback, bool):
            raise TypeError("qcomm.torch: error_feedback must be True or False")
        self.error_feedback = error_feedback
        self.start_iter = _check_int("start_iter", start_iter, 0)
        self.min_compress_numel = _check_int("min_compress_numel", min_compress_numel, 0)
        self.seed = _check_int("seed", seed, 0, (1 << 64) - 1)
        self.iter = 0
        self.residuals = {}
        self._warned = False

    def config(self):
        return dict(bits=self.bits, bucket_size=self.bucket_size, norm=self.norm,
                    layout=self.layout, algorithm=self.algorithm,
                    error_feedback=self.error_feedback, start_iter=self.start_iter,
                    min_compress_numel=self.min_compress_numel, seed=self.seed, codec=self.codec)

    def state_dict(self):
        return {"config": self.config(), "iter": self.iter,
                "residuals": {k: v.clone() for k, v in self.residuals.items()}}

    def load_state_dict(self, state):
        if state.get("config") != self.config():
            raise ValueError(f"qcomm.torch: state saved with {state.get('config')} cannot load into "
                             f"a hook configured with {self.config()}")
        self.iter = int(state["iter"])
        self.residuals = {int(k): v.clone() for k, v in state["residuals"].items()}


def _to_numpy(x):
    """A zero-copy, read-only numpy view of a contiguous CPU tensor (through DLPack)."""
    return np.from_dlpack(x.detach())


def _output(x):
    """A zero-copy, writable numpy view of a contiguous CPU tensor the hook allocated (numpy's
    DLPack import is read-only)."""
    assert x.device.type == "cpu" and x.is_contiguous()
    return x.detach().numpy()


def _encode(state, values, rank, tensor_id):
    """The wire message (no CRC) of float32 `values`, as a uint8 tensor."""
    if state.codec is not None:
        message = _qcomm.encode_message_spec(_to_numpy(values), state.codec, state.seed, rank,
                                             tensor_id, state.iter, _codec._shared_executor())
    else:
        message = _qcomm.encode_message(_to_numpy(values), state.bits, state.bucket_size,
                                        state.norm, state.layout, state.seed, rank, tensor_id,
                                        state.iter, _codec._shared_executor())
    return torch.from_numpy(message)


def _decode_mean(received, sizes, out, own=-1, values=None, residual=None):
    """out = the mean of the messages laid end to end in `received`, summed in rank order; with
    `own`, also residual = values - decode(message own)."""
    _qcomm.decode_mean(_to_numpy(received), sizes, _output(out), own,
                       None if values is None else _to_numpy(values),
                       None if residual is None else _output(residual),
                       _codec._shared_executor())


def _has_all_to_all(group):
    return dist.get_backend(group) in ("gloo", "nccl", "mpi")


def _allgather(state, group, work, index, residual):
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    message = _encode(state, work, rank, index)
    gathered = torch.empty(world * message.numel(), dtype=torch.uint8)
    dist.all_gather(list(gathered.chunk(world)), message, group=group)
    mean = torch.empty_like(work)
    _decode_mean(gathered, [message.numel()] * world, mean, rank, work if residual is not None
                 else None, residual)
    return mean


def _sra(state, group, work, index, residual):
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    n = work.numel()
    bounds = [n * j // world for j in range(world + 1)]
    parts = [_encode(state, work[bounds[j]:bounds[j + 1]], rank, index) for j in range(world)]
    if residual is not None:  # what this rank's codes decode to: only error feedback needs it
        for j, part in enumerate(parts):
            _decode_mean(part, [part.numel()], torch.empty(bounds[j + 1] - bounds[j]), 0,
                         work[bounds[j]:bounds[j + 1]], residual[bounds[j]:bounds[j + 1]])
    send = torch.cat(parts)
    recv_sizes = [parts[rank].numel()] * world  # every rank's message about part `rank`
    recv = torch.empty(sum(recv_sizes), dtype=torch.uint8)
    dist.all_to_all_single(recv, send, recv_sizes, [p.numel() for p in parts], group=group)
    mean = torch.empty(bounds[rank + 1] - bounds[rank])
    _decode_mean(recv, recv_sizes, mean)
    mine = _encode(state, mean, rank, index | 0x80000000)
    # all_gather needs equal sizes: pad to the largest part's message.
    size = max(_encode_size(state, bounds[j + 1] - bounds[j]) for j in range(world))
    gathered = torch.zeros(world * size, dtype=torch.uint8)
    padded = torch.zeros(size, dtype=torch.uint8)
    padded[:mine.numel()] = mine
    dist.all_gather(list(gathered.chunk(world)), padded, group=group)
    out = torch.empty_like(work)
    for j in range(world):
        length = _encode_size(state, bounds[j + 1] - bounds[j])
        _decode_mean(gathered[j * size:j * size + length], [length], out[bounds[j]:bounds[j + 1]])
    return out


def _cuda_allgather(state, group, tensor, index):
    """A CUDA bucket through the CUDA codec: encoded on its device, the words and scales
    all-gathered as tensors (the same sizes on every rank), decoded and averaged on the device in
    rank order. The words never cross PCIe. (sra is not done on the device: it uses allgather.)"""
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    work = tensor.detach().to(torch.float32)
    work = work.clone() if work.data_ptr() == tensor.data_ptr() else work.contiguous()
    residual = None
    if state.error_feedback:
        residual = state.residuals.get(index)
        if residual is None or residual.numel() != work.numel() or residual.device != work.device:
            residual = torch.zeros_like(work)
            state.residuals[index] = residual
        work += residual
    code = _codec.encode(work, state.bits, seed=state.seed, bucket_size=state.bucket_size,
                         norm=state.norm, layout=state.layout, rank=rank, tensor_id=index,
                         step=state.iter)
    words = torch.empty(world * code["neo"].numel(), dtype=code["neo"].dtype, device=work.device)
    scales = torch.empty(world * code["norm"].numel(), dtype=torch.float32, device=work.device)
    dist.all_gather(list(words.chunk(world)), code["neo"], group=group)
    dist.all_gather(list(scales.chunk(world)), code["norm"], group=group)
    total = torch.zeros_like(work)
    for r, (w, sc) in enumerate(zip(words.chunk(world), scales.chunk(world))):
        decoded = _codec.decode(dict(code, neo=w, norm=sc))
        total += decoded
        if r == rank and residual is not None:
            torch.sub(work, decoded, out=residual)
    return total / world


_SIZE_CACHE = {}


def _encode_size(state, count):
    key = (count, state.bits, state.bucket_size, state.layout, state.codec)
    if key not in _SIZE_CACHE:
        probe = np.zeros(count, dtype=np.float32)
        if state.codec is not None:
            size = _qcomm.encode_message_spec(probe, state.codec, 0, 0, 0, 0, None).size
        else:
            size = _qcomm.encode_message(probe, state.bits, state.bucket_size, state.norm,
                                         state.layout, 0, 0, 0, 0, None).size
        _SIZE_CACHE[key] = size
    return _SIZE_CACHE[key]


def qsgd_hook(state, bucket):
    """The DDP communication hook: returns a Future holding the averaged bucket."""
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    tensor = bucket.buffer()
    index = bucket.index()
    last = bucket.is_last()

    def advance(value):
        if last:
            state.iter += 1
        return value

    if state.iter < state.start_iter or tensor.numel() < state.min_compress_numel or world == 1:
        future = dist.all_reduce(tensor, group=group, async_op=True).get_future()
        return future.then(lambda f: advance(f.value()[0].div_(world)))

    if tensor.is_cuda and _qcomm.built_with_cuda and state.codec is None:
        tensor.copy_(_cuda_allgather(state, group, tensor, index).to(tensor.dtype))
        future = torch.futures.Future()
        future.set_result(advance(tensor))
        return future
    # CUDA buckets are staged through host memory when qcomm was built without CUDA.
    work = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if work.data_ptr() == tensor.data_ptr():
        work = work.clone()  # the bucket is overwritten with the result below
    residual = None
    if state.error_feedback:
        residual = state.residuals.get(index)
        if residual is None or residual.numel() != work.numel():
            residual = torch.zeros_like(work)  # new or resized bucket: start afresh
            state.residuals[index] = residual
        work += residual  # the residual is then overwritten with this step's error
    algorithm = state.algorithm
    if algorithm == "auto":
        algorithm = "sra" if world >= 3 and _has_all_to_all(group) else "allgather"
    elif algorithm == "sra" and not _has_all_to_all(group):
        if not state._warned:
            warnings.warn(f"qcomm.torch: the {dist.get_backend(group)} backend has no all_to_all; "
                          "using the allgather algorithm instead of sra")
            state._warned = True
        algorithm = "allgather"
    run = _sra if algorithm == "sra" else _allgather
    mean = run(state, group, work, index, residual)
    tensor.copy_(mean.to(tensor.dtype))
    future = torch.futures.Future()
    future.set_result(advance(tensor))
    return future


def register(ddp_model, **options):
    """Registers the QSGD hook on a DistributedDataParallel model and returns its QsgdState.
    Options are QsgdState's; a bad one raises here."""
    if not isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError("qcomm.torch.register expects a DistributedDataParallel model, got "
                        f"{type(ddp_model).__name__}")
    state = QsgdState(**options)
    ddp_model.register_comm_hook(state, qsgd_hook)
    return state
