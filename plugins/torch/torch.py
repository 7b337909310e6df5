"""qcomm.torch: QSGD-compressed gradient averaging for PyTorch DistributedDataParallel.

One line on an existing DDP model::

    import qcomm.torch
    qcomm.torch.register(ddp_model, bits=4)

The hook hands each CPU gradient bucket to qcomm's engine, the C++ Communicator (its chunked
pipeline, error feedback, agreement checks) over qcomm's Gloo transport, and returns at once a
Future that completes when the averaged bucket is written back. Encoding, exchange, decoding and
error feedback run on the engine's worker thread without the GIL while autograd goes on with the
next buckets; DDP launches buckets in the same order on every rank and the engine keeps that
order, so ranks agree and every rank gets bit-identical gradients. The engine joins the ranks
through a rendezvous store: `store=` (any torch.distributed store), or by default a TCPStore that
rank 0 of the process group starts and announces through the group (public API only; its address
is $MASTER_ADDR, else this host's name). The transport listens on $GLOO_SOCKET_IFNAME's address
when set (torch's own Gloo convention), else on this host's name.

- Before `start_iter` (DDP rebuilds its buckets after the first iteration) it runs the process
  group's plain allreduce. Buckets under `min_compress_numel` values wait for the step's last
  bucket and then go together in one engine call, which fuses them into one uncompressed
  allreduce (small CUDA buckets: the process group's allreduce).
- `algorithm`: 'allgather' (one quantization), 'sra' (scatter-reduce-allgather, bandwidth-optimal),
  'hierarchical' (uncompressed inside a host, compressed across hosts) or 'auto' (the
  Communicator's choice from speeds it measures when created; docs/algorithms.md).
- Error feedback keeps one residual per bucket index inside the engine, reset when a bucket's size
  changes, saved with `state_dict()` / `load_state_dict()` (with the step, so a resumed job
  produces the words of one that never stopped).
- `codec` takes any codec spec the Communicator takes (e.g. "linear:bits=8,mode=asym",
  "dynamic", "rowwise:bits=4,block=512", "fp16") instead of QSGD's options.
- float16 / bfloat16 buckets are compressed from a float32 copy and cast back.
- A NaN or Inf on any rank makes that QSGD bucket NaN on every rank, so GradScaler-style overflow
  skipping still skips on every rank together.
- A configuration that differs between ranks fails the first compressed step on every rank; a
  rank that dies fails the others' futures within `timeout` seconds (default: torch's default
  process group timeout).
- CUDA buckets, when qcomm was built with CUDA, NCCL and Gloo, go to qcomm's GPU engine (the
  GpuCommunicator over NCCL, its unique id exchanged through the same store): encoded, exchanged
  and decoded on their device, ordered on the current CUDA stream, with QSGD options ('auto' and
  'sra' run allgather there); otherwise, and for block quantizers, they are staged through host
  memory into the engine. `state_dict()` holds both engines' residuals and steps (the GPU
  engine's copied to host memory after the work queued on the current stream).
"""

import datetime
import numbers
import os
import queue
import socket
import threading
import time

import torch
import torch.distributed as dist
from torch.distributed import constants as _constants

from . import _qcomm

_LAYOUTS = ("seed", "compact")
_NORMS = ("l2", "max")
_ALGORITHMS = ("auto", "allgather", "sra", "hierarchical")


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
                 seed=0, codec=None, timeout=None, store=None, timeline=False):
        self.process_group = process_group
        # timeline: when True, one dict per bucket exchange in self.timeline (step, bucket, numel,
        # path, and time.monotonic() seconds: ready = the hook was called, start/end = the
        # exchange ran on the engine's thread; the plain path has no start).
        if not isinstance(timeline, bool):
            raise TypeError("qcomm.torch: timeline must be True or False")
        self.timeline = [] if timeline else None
        # store: the rendezvous of the engine's Gloo transport (a torch.distributed store);
        # None: a TCPStore started by rank 0 of the process group.
        self.store = store
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
        if timeout is None:
            timeout = _constants.default_pg_timeout.total_seconds()
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0:
            raise ValueError(f"qcomm.torch: timeout must be a positive number of seconds, "
                             f"got {timeout!r}")
        self.timeout = float(timeout)
        self.iter = 0
        self._engine = None
        self._gpu_engine = None  # CUDA buckets: GpuCommunicator over NCCL
        self._gpu_device = None
        self._store = None
        self._engine_state = None  # loaded before the engine exists: applied when it starts
        self._gpu_engine_state = None  # likewise for the GPU engine
        self._gpu_codec_answer = None  # gpu_codec()'s last ((codec, algorithm), answer)
        self._completer = None
        self._small = []  # this step's small CPU buckets, sent together with its last bucket

    def engine_codec(self):
        """The codec spec the engine runs."""
        if self.codec is not None:
            return self.codec
        return (f"qsgd:bits={self.bits},bucket={self.bucket_size},norm={self.norm},"
                f"layout={self.layout}")

    def _store_for(self, group):
        if self._store is None:
            self._store = self.store if self.store is not None else _rendezvous_store(group, self)
        return self._store

    def gpu_codec(self):
        """The codec spec CUDA buckets run on their device, or None where the GPU engine cannot
        run it (qcomm built without CUDA/NCCL/Gloo, or a block quantizer: staged through host
        memory into the CPU engine instead). The GPU path has allgather and hierarchical; 'auto'
        and 'sra' run allgather there."""
        if not _qcomm.built_with_gpu_engine:
            return None
        # Asked for every CUDA bucket: the answer is kept for the options it was given for.
        key = (self.engine_codec(), self._gpu_algorithm())
        cached = self._gpu_codec_answer
        if cached is None or cached[0] != key:
            try:
                _qcomm.check_gpu_engine_options(*key)
                cached = (key, key[0])
            except ValueError:
                cached = (key, None)
            self._gpu_codec_answer = cached
        return cached[1]

    def _gpu_algorithm(self):
        return "hierarchical" if self.algorithm == "hierarchical" else "allgather"

    def _gpu_engine_for(self, group, device):
        if self._gpu_engine is None:
            rank, world = dist.get_rank(group), dist.get_world_size(group)
            try:
                self._gpu_engine = _qcomm.GpuEngine(
                    self._store_for(group), rank, world, device.index, self.engine_codec(),
                    self._gpu_algorithm(), self.error_feedback, self.seed, self.timeout)
            except (RuntimeError, ValueError, TimeoutError) as e:
                raise type(e)(f"qcomm.torch: {e}") from None
            self._gpu_device = device
            if self._gpu_engine_state is not None:
                self._gpu_engine.load_state(self._gpu_engine_state, self._gpu_stream())
                self._gpu_engine_state = None
            if self._completer is None:
                self._completer = _Completer()
        elif device != self._gpu_device:
            raise RuntimeError(f"qcomm.torch: CUDA buckets on {device} and {self._gpu_device}: "
                               f"one process drives one device")
        return self._gpu_engine

    def _gpu_stream(self):
        return torch.cuda.current_stream(self._gpu_device).cuda_stream

    def _engine_for(self, group):
        if self._engine is None:
            rank, world = dist.get_rank(group), dist.get_world_size(group)
            store = self._store_for(group)
            try:
                engine = _qcomm.Engine(store, rank, world, self.engine_codec(), self.algorithm,
                                       self.error_feedback, self.seed, self.min_compress_numel,
                                       self.timeout,
                                       iface=os.environ.get("GLOO_SOCKET_IFNAME", ""))
            except (RuntimeError, ValueError, TimeoutError) as e:
                raise type(e)(f"qcomm.torch: {e}") from None
            if self._engine_state is not None:
                engine.load_state(self._engine_state)
                self._engine_state = None
            self._engine = engine
            if self._completer is None:
                self._completer = _Completer()
        return self._engine

    def config(self):
        return dict(bits=self.bits, bucket_size=self.bucket_size, norm=self.norm,
                    layout=self.layout, algorithm=self.algorithm,
                    error_feedback=self.error_feedback, start_iter=self.start_iter,
                    min_compress_numel=self.min_compress_numel, seed=self.seed, codec=self.codec)

    def state_dict(self):
        engine = self._engine.save_state() if self._engine is not None else self._engine_state
        gpu = (self._gpu_engine.save_state(self._gpu_stream()) if self._gpu_engine is not None
               else self._gpu_engine_state)
        return {"config": self.config(), "iter": self.iter, "engine": engine, "gpu_engine": gpu}

    def load_state_dict(self, state):
        if state.get("config") != self.config():
            raise ValueError(f"qcomm.torch: state saved with {state.get('config')} cannot load into "
                             f"a hook configured with {self.config()}")
        self.iter = int(state["iter"])
        engine = state.get("engine")
        if engine is not None and self._engine is not None:
            self._engine.load_state(engine)
        else:
            self._engine_state = engine
        gpu = state.get("gpu_engine")
        if gpu is not None and self._gpu_engine is not None:
            self._gpu_engine.load_state(gpu, self._gpu_stream())
        else:
            self._gpu_engine_state = gpu


def _rendezvous_store(group, state):
    """A TCPStore for the engine: rank 0 of `group` starts it on a free port and announces the
    address through the group (all_gather_object: public API), the others connect."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    timeout = datetime.timedelta(seconds=state.timeout)
    address, store = None, None
    if rank == 0:
        host = os.environ.get("MASTER_ADDR") or socket.gethostname()
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        store = dist.TCPStore(host, port, world, True, timeout, wait_for_workers=False)
        address = (host, port)
    everyone = [None] * world
    dist.all_gather_object(everyone, address, group=group)
    if rank != 0:
        store = dist.TCPStore(everyone[0][0], everyone[0][1], world, False, timeout)
    return store


class _Completer:
    """Completes the hook's Futures in submission order: waits (without the GIL) on the engine's
    handle, casts back into the bucket when it was staged, sets the result or the error."""

    def __init__(self):
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="qcomm-hook", daemon=True)
        self._thread.start()

    def put(self, pending, entries):
        """`pending`: the CPU engine's handle, or a torch.cuda.Event recorded after a CUDA
        bucket's exchange (and cast back) on its stream; `entries`: (future, bucket, work,
        timeline event) of every bucket it carries."""
        self._queue.put((pending, entries))

    def _run(self):
        while True:
            pending, entries = self._queue.get()
            try:
                if isinstance(pending, torch.cuda.Event):
                    pending.synchronize()  # without the GIL
                    times = (None, None, time.monotonic())
                else:
                    pending.wait()
                    times = pending.times
            except Exception as e:  # noqa: BLE001: every failure belongs to the Futures
                for future, _, _, _ in entries:
                    future.set_exception(RuntimeError(f"qcomm.torch: {e}"))
                continue
            for future, bucket, work, event in entries:
                if event is not None:
                    if times[1] is not None:
                        event["start"] = times[1]
                    event["end"] = times[2]
                try:
                    if work is not bucket:
                        bucket.copy_(work.to(device=bucket.device, dtype=bucket.dtype))
                except Exception as e:  # noqa: BLE001
                    future.set_exception(RuntimeError(f"qcomm.torch: {e}"))
                    continue
                future.set_result(bucket)


def _submit_cuda(state, group, tensor, index, event):
    """A CUDA bucket on qcomm's GPU engine (GpuCommunicator over NCCL): averaged in place on its
    device, ordered on the current stream; the Future completes when that work is done. The
    words never leave the device."""
    engine = state._gpu_engine_for(group, tensor.device)
    if tensor.dtype == torch.float32 and tensor.is_contiguous():
        work = tensor
    else:
        work = tensor.detach().to(torch.float32).contiguous()
        if work.data_ptr() == tensor.data_ptr():
            work = work.clone()
    stream = torch.cuda.current_stream(tensor.device)
    engine.submit(work.data_ptr(), work.numel(), f"bucket{index}", stream.cuda_stream)
    if work is not tensor:
        tensor.copy_(work)  # cast back, on the same stream, after the exchange
    done = torch.cuda.Event()
    done.record(stream)
    if event is not None:
        event["path"] = "cuda"
    future = torch.futures.Future()
    state._completer.put(done, [(future, tensor, tensor, event)])  # cast back already enqueued
    return future


def qsgd_hook(state, bucket):
    """The DDP communication hook: returns a Future holding the averaged bucket."""
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    tensor = bucket.buffer()
    index = bucket.index()
    last = bucket.is_last()
    event = None
    if state.timeline is not None:
        event = dict(step=state.iter, bucket=index, numel=tensor.numel(), path="qcomm",
                     ready=time.monotonic())
        state.timeline.append(event)

    def advance(value):
        if last:
            state.iter += 1
        return value

    small = tensor.numel() < state.min_compress_numel
    if state.iter < state.start_iter or world == 1 or (small and tensor.is_cuda):
        future = dist.all_reduce(tensor, group=group, async_op=True).get_future()
        if event is not None:
            event["path"] = "plain"

        def done(f):
            if event is not None:
                event["end"] = time.monotonic()
            return advance(f.value()[0].div_(world))
        return future.then(done)

    if tensor.is_cuda and state.gpu_codec() is not None:
        return advance(_submit_cuda(state, group, tensor, index, event))
    engine = state._engine_for(group)
    # The engine averages float32 host memory in place: the bucket itself when it is one, else a
    # staged copy (CUDA without qcomm's CUDA codec, float16/bfloat16) cast back on completion.
    if tensor.device.type == "cpu" and tensor.dtype == torch.float32 and tensor.is_contiguous():
        work = tensor
    else:
        work = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        if work.data_ptr() == tensor.data_ptr():
            work = work.clone()
    future = torch.futures.Future()
    entry = (f"bucket{index}", future, tensor, work, event)
    if small:
        # Small buckets wait for the step's last bucket and then travel together, in one call
        # whose small tensors the engine fuses into one uncompressed allreduce.
        state._small.append(entry)
    if last:
        _flush_small(state, engine)
    if not small:
        pending = engine.submit(work.data_ptr(), work.numel(), entry[0])
        state._completer.put(pending, [entry[1:]])
    advance(None)
    return future


def _flush_small(state, engine):
    if state._small:
        pending = engine.submit_many([(w.data_ptr(), w.numel(), key)
                                      for key, _, _, w, _ in state._small])
        state._completer.put(pending, [entry[1:] for entry in state._small])
        state._small = []


def register(ddp_model, **options):
    """Registers the QSGD hook on a DistributedDataParallel model and returns its QsgdState.
    Options are QsgdState's; a bad one raises here."""
    if not isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError("qcomm.torch.register expects a DistributedDataParallel model, got "
                        f"{type(ddp_model).__name__}")
    state = QsgdState(**options)
    ddp_model.register_comm_hook(state, qsgd_hook)
    return state
