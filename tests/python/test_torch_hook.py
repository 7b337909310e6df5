"""qcomm.torch's DDP communication hook with real gloo process groups (2 and 3 processes on
127.0.0.1): results against the exact mean, identical parameters, error feedback, start_iter,
odd buckets, NaN propagation and bad options."""

import datetime
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import qcomm.torch  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world, *args):
    port = free_port()
    mp.spawn(_entry, args=(world, port, fn, args), nprocs=world, join=True)


def _entry(rank, world, port, fn, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(0)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def make_model():
    # Odd sizes: buckets that are not multiples of a word or of the QSGD bucket.
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(37, 301), torch.nn.ReLU(), torch.nn.Linear(301, 13))


def batch(rank, step):
    g = torch.Generator().manual_seed(100 * rank + step)
    return torch.randn(16, 37, generator=g), torch.randint(0, 13, (16,), generator=g)


def local_grads(model, rank, step):
    model.zero_grad()
    x, y = batch(rank, step)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def deep_model():
    # 13 layers of mixed widths. DDP's first bucket holds 1 MB (the last layers' gradients,
    # ready first); with a small cap every later weight and a few biases get their own bucket.
    torch.manual_seed(2)
    widths = [37, 120, 301, 64, 8, 80, 1025, 300, 7, 900, 300, 13, 700, 13]
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def check_mean_within_bound(rank, world, options, steps, factory=make_model, cap=0.01):
    plain = factory()
    ddp = torch.nn.parallel.DistributedDataParallel(factory(), bucket_cap_mb=cap)
    state = qcomm.torch.register(ddp, **{k: v for k, v in options.items() if k != "expect_small"})
    s = (1 << options.get("bits", 4)) - 1
    for step in range(steps):
        plain.load_state_dict({k.replace("module.", ""): v for k, v in ddp.state_dict().items()})
        mine = local_grads(plain, rank, step)
        everyone = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(everyone, mine)
        exact = sum(everyone) / world
        ddp.zero_grad()
        x, y = batch(rank, step)
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        got = torch.cat([p.grad.flatten() for p in ddp.parameters()])
        if step < options.get("start_iter", 2):
            assert torch.allclose(got, exact, atol=1e-6), f"step {step}: not the exact mean"
        else:
            # Each rank's code is within one step (max|g_r| / s, plus the residual it carries),
            # and sra re-quantizes the mean.
            carried = 2.0 if options.get("error_feedback", True) else 1.0
            # A step is scale / s: the bucket's max |g| (norm max) or its L2 norm (norm l2),
            # both bounded by the same over the whole vector.
            scale = (lambda e: e.norm()) if options.get("norm") == "l2" else (lambda e: e.abs().max())
            bound = sum(scale(e) for e in everyone) * carried / s / world
            if options.get("algorithm", "auto") in ("sra", "auto"):  # auto may choose sra
                bound = bound * 2 + exact.abs().max() * 2 / s
            worst = (got - exact).abs().max()
            assert worst <= bound + 1e-6, f"step {step}: off by {worst} > {bound}"
        with torch.no_grad():
            for p in ddp.parameters():
                p -= 0.1 * p.grad
    assert state.iter == steps
    flat = torch.cat([p.detach().flatten() for p in ddp.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    for other in gathered:
        assert torch.equal(other, flat), "parameters differ between ranks"
    if state.timeline is not None:
        small = check_timeline(state, steps, options.get("start_iter", 2),
                               options.get("min_compress_numel", 16384))
        assert small >= options.get("expect_small", 0), f"only {small} small buckets"


def check_timeline(state, steps, start_iter, min_compress_numel):
    """Every bucket of every step is in the timeline; the engine ran the compressed ones in the
    order the hook handed them over, each after it was ready."""
    assert {e["step"] for e in state.timeline} == set(range(steps))
    buckets = {e["bucket"] for e in state.timeline if e["step"] == steps - 1}
    assert len(buckets) >= 8, f"only {len(buckets)} buckets: the model is too small for the test"
    engine = [e for e in state.timeline if e["path"] == "qcomm"]
    assert {e["step"] for e in engine} == set(range(start_iter, steps))
    # One call at a time on the engine's thread: calls never overlap (fused ones share a call).
    calls = sorted({(e["start"], e["end"]) for e in engine})
    for before, after in zip(calls, calls[1:]):
        assert before[1] <= after[0], "the engine ran two calls at once"
    for e in engine:
        assert e["ready"] <= e["start"] <= e["end"], e
    # Small buckets wait for the step's last bucket and share one call.
    for step in range(start_iter, steps):
        small = [e for e in engine if e["step"] == step and e["numel"] < min_compress_numel]
        assert len({(e["start"], e["end"]) for e in small}) <= 1, "small buckets not fused"
        if small:
            last_ready = max(e["ready"] for e in state.timeline if e["step"] == step)
            assert small[0]["start"] >= last_ready
    plain = [e for e in state.timeline if e["path"] == "plain"]
    assert all(e["ready"] <= e["end"] for e in plain)
    assert {e["step"] for e in plain} <= set(range(start_iter)), "plain path after start_iter"
    return sum(1 for e in engine if e["numel"] < min_compress_numel)


@pytest.mark.parametrize("world, options", [
    (2, dict(bits=4)),
    (3, dict(bits=4, algorithm="sra", error_feedback=False, min_compress_numel=0)),
    (3, dict(bits=2, algorithm="allgather", error_feedback=True, min_compress_numel=0)),
    (2, dict(bits=8, start_iter=0, min_compress_numel=0, layout="seed", norm="l2")),
])
def test_hook_gives_the_mean_within_the_bound_and_identical_parameters(world, options):
    spawn(check_mean_within_bound, world, options, 6)


@pytest.mark.parametrize("options", [
    dict(bits=4, start_iter=1, min_compress_numel=0, timeline=True),
    dict(bits=2, algorithm="sra", error_feedback=True, min_compress_numel=5000, timeline=True,
         expect_small=3 * 10),
])
def test_many_steps_of_many_buckets_are_identical_on_every_rank_and_in_order(options):
    # More than 8 DDP buckets of mixed sizes (a few under min_compress_numel take the plain
    # path), 12 steps: within the bound, the same parameters everywhere, in submission order.
    spawn(check_mean_within_bound, 3, options, 12, deep_model, 0.004)


def check_nan_reaches_every_rank(rank, world):
    ddp = torch.nn.parallel.DistributedDataParallel(make_model())
    qcomm.torch.register(ddp, start_iter=0, min_compress_numel=0)
    x, y = batch(rank, 0)
    if rank == 1:
        x[0, 0] = float("nan")
    torch.nn.functional.cross_entropy(ddp(x), y).backward()
    grads = torch.cat([p.grad.flatten() for p in ddp.parameters()])
    assert torch.isnan(grads).any(), f"rank {rank} did not see the NaN"


def test_nan_on_one_rank_reaches_every_rank():
    spawn(check_nan_reaches_every_rank, 3)


class FakeBucket:
    """What the hook uses of DDP's GradBucket. gloo in torch 1.13 cannot broadcast bf16
    parameters, so DDP itself cannot run a bf16 model there; the hook can still be driven."""

    def __init__(self, tensor, index=0, last=True):
        self._tensor, self._index, self._last = tensor, index, last

    def buffer(self):
        return self._tensor

    def index(self):
        return self._index

    def is_last(self):
        return self._last


def check_bfloat16_buckets(rank, world):
    state = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0, bits=8)
    g = torch.Generator().manual_seed(rank)
    values = torch.randn(5000, generator=g)
    bucket = values.to(torch.bfloat16)
    result = qcomm.torch.qsgd_hook(state, FakeBucket(bucket)).wait()
    assert result.dtype == torch.bfloat16 and torch.isfinite(result).all()
    everyone = [torch.empty(5000) for _ in range(world)]
    dist.all_gather(everyone, values.to(torch.bfloat16).float())
    exact = sum(everyone) / world
    # 8-bit codes of bf16-rounded values, then rounded to bf16 again (8 significant bits).
    bound = sum(e.abs().max() for e in everyone) * 2 / 255 / world + exact.abs() * 2 ** -7
    assert ((result.float() - exact).abs() <= bound + 1e-6).all()
    gathered = [torch.empty(5000) for _ in range(world)]
    dist.all_gather(gathered, result.float())
    assert all(torch.equal(x, gathered[0]) for x in gathered), "bf16 results differ across ranks"


def test_bfloat16_buckets_are_compressed_from_float32_and_cast_back():
    spawn(check_bfloat16_buckets, 2)


def check_state_round_trip(rank, world):
    # A pinned algorithm: `auto` decides from speeds measured in each job, so only a pinned one
    # gives the same words in two jobs (a resumed job keeps the measurements it saved).
    options = dict(start_iter=1, min_compress_numel=0, bits=2, algorithm="allgather")
    g = torch.Generator().manual_seed(rank)
    steps = [torch.randn(3001, generator=g) for _ in range(6)]

    def run(state, first, count):
        # Two buckets per step, as DDP hands them over (index 1 is the step's last).
        out = []
        for values in steps[first:first + count]:
            state_bucket = [FakeBucket(values[:2000].clone(), 0, False),
                            FakeBucket(values[2000:].clone(), 1, True)]
            futures = [qcomm.torch.qsgd_hook(state, b) for b in state_bucket]
            out.append(torch.cat([f.wait() for f in futures]))
        return out

    straight = run(qcomm.torch.QsgdState(**options), 0, 6)
    # The same job stopped after 3 steps and resumed from a checkpoint into a fresh state gives
    # the words of the job that never stopped: the engine's step and residuals are saved.
    state = qcomm.torch.QsgdState(**options)
    run(state, 0, 3)
    saved = state.state_dict()
    assert state.iter == 3 and saved["engine"], "no engine state (error feedback, step) saved"
    assert saved["gpu_engine"] is None, "no CUDA bucket ran, yet there is GPU engine state"
    # A GPU engine's state loaded before that engine exists waits for it, and is saved again.
    pending = qcomm.torch.QsgdState(**options)
    pending.load_state_dict(dict(saved, gpu_engine=b"archive"))
    assert pending.state_dict()["gpu_engine"] == b"archive"
    fresh = qcomm.torch.QsgdState(**options)
    fresh.load_state_dict(saved)
    again = run(fresh, 3, 3)
    assert fresh.iter == 6
    for step, (a, b) in enumerate(zip(again, straight[3:]), start=3):
        assert torch.equal(a, b), f"step {step} after resuming differs from the straight run"
    # Without the engine's state the words differ (the test can fail).
    amnesic = qcomm.torch.QsgdState(**options)
    amnesic.load_state_dict(dict(saved, engine=None))
    assert not torch.equal(run(amnesic, 3, 1)[0], straight[3])
    other = qcomm.torch.QsgdState(bits=4)
    with pytest.raises(ValueError, match="cannot load into a hook configured with"):
        other.load_state_dict(saved)


def test_state_dict_round_trip():
    spawn(check_state_round_trip, 2)


@pytest.mark.parametrize("options, error, message", [
    (dict(bits=0), ValueError, r"bits must be \[1, 16\], got 0"),
    (dict(bits=2.5), TypeError, "bits must be an integer, got float"),
    (dict(norm="l1"), ValueError, "norm must be one of 'l2', 'max', got 'l1'"),
    (dict(algorithm="ring"), ValueError, "algorithm must be one of 'auto', 'allgather', 'sra'"),
    (dict(error_feedback="yes"), TypeError, "error_feedback must be True or False"),
    (dict(start_iter=-1), ValueError, "start_iter must be >= 0"),
    (dict(bucket_size=0), ValueError, "bucket_size must be >= 1"),
])
def test_bad_options_fail_at_registration(options, error, message):
    with pytest.raises(error, match=message):
        qcomm.torch.QsgdState(**options)


def test_register_needs_a_ddp_model():
    with pytest.raises(TypeError, match="expects a DistributedDataParallel model, got Linear"):
        qcomm.torch.register(torch.nn.Linear(2, 2))


def test_decode_mean_sums_in_rank_order_and_names_a_bad_message():
    """The hook's fused decode-and-average equals decoding each message and averaging in rank
    order, bit for bit, and writes error feedback's residual; a corrupt or mis-sized message is a
    ValueError naming the rank that sent it."""
    from qcomm import _qcomm

    rng = np.random.default_rng(5)
    values = [rng.standard_normal(1000).astype(np.float32) for _ in range(3)]
    messages = [_qcomm.encode_message(v, 4, 128, "max", "compact", 9, r, 0, 0, None)
                for r, v in enumerate(values)]
    received = np.concatenate(messages)
    sizes = [m.size for m in messages]
    out = np.full(1000, np.nan, dtype=np.float32)
    residual = np.full(1000, np.nan, dtype=np.float32)
    _qcomm.decode_mean(received, sizes, out, 1, values[1], residual)
    decoded = [qcomm.decode(qcomm.from_bytes(m.tobytes())) for m in messages]
    expected = np.zeros(1000, dtype=np.float32)
    for d in decoded:
        expected += d
    expected /= np.float32(3)
    assert np.array_equal(out, expected)
    assert np.array_equal(residual, values[1] - decoded[1])

    corrupt = received.copy()
    corrupt[sizes[0]] ^= 0xFF  # the magic of rank 1's message
    with pytest.raises(ValueError, match="message from rank 1: bad magic"):
        _qcomm.decode_mean(corrupt, sizes, out)
    with pytest.raises(ValueError, match="add up to"):
        _qcomm.decode_mean(received, sizes[:2], out)
    with pytest.raises(ValueError, match="message from rank 0: message holds 1000 values where 999"):
        _qcomm.decode_mean(received, sizes, np.zeros(999, dtype=np.float32))


def check_cuda_buckets(rank, world):
    # The GPU engine (GpuCommunicator over NCCL) gives the CPU engine's words: with allgather,
    # the same seed, key and step the means are bit-identical, and so are the residuals they
    # leave (seen in the second step's mean).
    g = torch.Generator().manual_seed(rank)
    steps = [torch.randn(20011, generator=g) for _ in range(2)]
    for options in (dict(bits=4, error_feedback=True), dict(bits=2, error_feedback=False)):
        host = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0, algorithm="allgather",
                                     **options)
        device = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0,
                                       algorithm="allgather", **options)
        assert device.gpu_codec() is not None
        for step, values in enumerate(steps):
            on_host = qcomm.torch.qsgd_hook(host, FakeBucket(values.clone())).wait()
            on_device = qcomm.torch.qsgd_hook(device, FakeBucket(values.cuda())).wait()
            assert on_device.is_cuda
            assert torch.equal(on_device.cpu(), on_host), \
                f"step {step}: the GPU engine's mean differs from the CPU engine's"
        assert device._gpu_engine is not None and device._engine is None
        # A checkpoint holds the GPU engine's residuals and step: a state resumed from it (its
        # own engine) gives the next step's words exactly as the state that never stopped.
        saved = device.state_dict()
        assert saved["gpu_engine"] is not None
        resumed = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0,
                                        algorithm="allgather", **options)
        resumed.load_state_dict(saved)
        after = torch.randn(20011, generator=g)
        went_on = qcomm.torch.qsgd_hook(device, FakeBucket(after.cuda())).wait()
        came_back = qcomm.torch.qsgd_hook(resumed, FakeBucket(after.cuda())).wait()
        assert torch.equal(came_back, went_on), "the resumed GPU engine's words differ"


@pytest.mark.skipif(not torch.cuda.is_available() or not qcomm._qcomm.built_with_gpu_engine,
                    reason="needs a CUDA device visible to torch and qcomm built with CUDA, NCCL "
                           "and Gloo")
def test_cuda_buckets_go_through_the_gpu_engine_and_match_the_cpu_engine():
    spawn(check_cuda_buckets, 2)


CODECS = ["linear:bits=8", "linear:bits=4,mode=asym,block=256", "percentile:bits=8,p=99.9",
          "dynamic", "rowwise:bits=6,block=512", "fp16", "bf16", "qsgd:bits=4,bucket=128,norm=max"]


def check_every_codec(rank, world):
    from qcomm import _qcomm
    g = torch.Generator().manual_seed(rank)
    values = torch.randn(10007, generator=g)
    everyone = [torch.empty_like(values) for _ in range(world)]
    dist.all_gather(everyone, values)
    exact = sum(everyone) / world
    top = max(e.abs().max().item() for e in everyone)
    for codec in CODECS:
        for algorithm in ("allgather", "sra"):
            state = qcomm.torch.QsgdState(codec=codec, algorithm=algorithm, start_iter=0,
                                          min_compress_numel=0, error_feedback=False)
            got = qcomm.torch.qsgd_hook(state, FakeBucket(values.clone())).wait()
            gathered = [torch.empty_like(got) for _ in range(world)]
            dist.all_gather(gathered, got)
            assert all(torch.equal(x, got) for x in gathered), f"{codec} {algorithm}: ranks differ"
            diff = (got - exact).abs()
            step = _qcomm.codec_step_bound(state.codec)
            if codec.startswith("percentile"):  # clipping moves outliers by more than a step
                assert diff.mean() <= step * top, f"{codec} {algorithm}: mean error {diff.mean()}"
                continue
            bound = step * top + (step * exact.abs().max().item() if algorithm == "sra" else 0)
            assert diff.max() <= bound + 1e-6, f"{codec} {algorithm}: off by {diff.max()} > {bound}"


def test_every_codec_spec_works_in_the_hook():
    spawn(check_every_codec, 3)


def test_a_bad_codec_spec_fails_at_registration():
    with pytest.raises(ValueError, match="unknown codec 'topk'"):
        qcomm.torch.QsgdState(codec="topk:k=3")
    with pytest.raises(ValueError, match=r"bits in \[2, 8\], got 12"):
        qcomm.torch.QsgdState(codec="linear:bits=12")
    with pytest.raises(TypeError, match="codec must be a codec spec string"):
        qcomm.torch.QsgdState(codec=8)


def check_many_buckets_out_of_order(rank, world):
    # Nine buckets of mixed sizes submitted back to back (the hook returns before any is done),
    # waited on in reverse: each is the mean within the bound and the same on every rank.
    state = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0, bits=4,
                                  error_feedback=False)
    sizes = [5, 513, 20000, 1, 70001, 3000, 512, 9999, 40000]
    g = torch.Generator().manual_seed(rank)
    values = [torch.randn(n, generator=g) for n in sizes]
    futures = [qcomm.torch.qsgd_hook(state, FakeBucket(v.clone(), i, i == len(sizes) - 1))
               for i, v in enumerate(values)]
    results = [f.wait() for f in reversed(futures)][::-1]
    for v, got in zip(values, results):
        everyone = [torch.empty_like(v) for _ in range(world)]
        dist.all_gather(everyone, v)
        exact = sum(everyone) / world
        bound = sum(e.abs().max() for e in everyone) / 15 / world
        assert (got - exact).abs().max() <= bound + 1e-6
        gathered = [torch.empty_like(got) for _ in range(world)]
        dist.all_gather(gathered, got)
        assert all(torch.equal(x, got) for x in gathered), "ranks differ"
    assert state.iter == 1


def test_many_buckets_complete_in_any_wait_order():
    spawn(check_many_buckets_out_of_order, 3)


def check_mismatched_configuration(rank, world):
    state = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0, bits=4 if rank == 0 else 2,
                                  timeout=20)
    with pytest.raises(RuntimeError, match="qcomm.torch: communicator configuration differs "
                                           "between ranks: rank 1 has 'qsgd:bits=2.* but rank 0 "
                                           "has 'qsgd:bits=4"):
        qcomm.torch.qsgd_hook(state, FakeBucket(torch.ones(1000)))


def test_a_configuration_that_differs_between_ranks_fails_on_every_rank():
    spawn(check_mismatched_configuration, 2)


def check_killed_rank(rank, world):
    state = qcomm.torch.QsgdState(start_iter=0, min_compress_numel=0, timeout=10)
    qcomm.torch.qsgd_hook(state, FakeBucket(torch.ones(1000))).wait()  # both ranks are up
    if rank == 1:
        os._exit(0)  # dies without a word
    import time
    start = time.monotonic()
    future = qcomm.torch.qsgd_hook(state, FakeBucket(torch.ones(1000), 0, True))
    with pytest.raises(RuntimeError, match="qcomm.torch: gloo transport, rank 0 of 2"):
        future.wait()
    assert time.monotonic() - start < 60, "the error took longer than the timeout allows"


def test_a_killed_rank_fails_the_others_futures_in_bounded_time():
    port = free_port()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_entry_tolerant, args=(r, 2, port, check_killed_rank))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert procs[1].exitcode == 0
    assert procs[0].exitcode == 0, "rank 0 did not see the error (or hung)"


def _entry_tolerant(rank, world, port, fn):
    """Like _entry, without destroy_process_group (the peer is gone)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    fn(rank, world)
    os._exit(0)


def check_subgroups(rank, world):
    # Two DDP jobs side by side in one world of 4: ranks {0, 1} and {2, 3}, each on its own
    # process group (every rank creates both groups, as torch requires). Each pair averages only
    # its own gradients, through its own engine.
    pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    mine = pairs[rank // 2]
    ddp = torch.nn.parallel.DistributedDataParallel(make_model(), process_group=mine,
                                                    bucket_cap_mb=0.01)
    state = qcomm.torch.register(ddp, process_group=mine, bits=4, start_iter=0,
                                 min_compress_numel=0, error_feedback=False)
    x, y = batch(rank, 0)
    torch.nn.functional.cross_entropy(ddp(x), y).backward()
    got = torch.cat([p.grad.flatten() for p in ddp.parameters()])
    plain = make_model()
    local = local_grads(plain, rank, 0)
    everyone = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(everyone, local)
    partner = everyone[rank ^ 1]
    exact = (local + partner) / 2 if rank % 2 == 0 else (partner + local) / 2
    bound = (local.abs().max() + partner.abs().max()) / 15 / 2
    assert (got - exact).abs().max() <= bound + 1e-6, "not the mean of the pair"
    world_mean = sum(everyone) / world
    assert (got - world_mean).abs().max() > bound, "averaged over the world, not the pair"
    results = [torch.empty_like(got) for _ in range(world)]
    dist.all_gather(results, got)
    assert torch.equal(results[rank ^ 1], got), "the pair differs"
    assert state._engine.size == 2


def test_the_hook_works_on_subgroups():
    spawn(check_subgroups, 4)


def test_which_cuda_buckets_the_gpu_engine_takes():
    # Decided without a GPU: QSGD options go to the GPU engine (where qcomm has one), block
    # quantizers are staged through host memory into the CPU engine.
    from qcomm import _qcomm
    qsgd = qcomm.torch.QsgdState(bits=4, algorithm="sra")
    block = qcomm.torch.QsgdState(codec="linear:bits=8")
    if not _qcomm.built_with_gpu_engine:
        assert qsgd.gpu_codec() is None and block.gpu_codec() is None
        return
    assert qsgd.gpu_codec() == qsgd.engine_codec() and qsgd._gpu_algorithm() == "allgather"
    assert qcomm.torch.QsgdState(algorithm="hierarchical")._gpu_algorithm() == "hierarchical"
    assert block.gpu_codec() is None
    with pytest.raises(ValueError, match="the GPU path runs QSGD codes; 'linear:bits=8"):
        _qcomm.check_gpu_engine_options(block.engine_codec(), "allgather")
    with pytest.raises(ValueError, match="the GPU path runs algorithm allgather or hierarchical, "
                                         "not sra"):
        _qcomm.check_gpu_engine_options(qsgd.engine_codec(), "sra")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens where no GPU is")
def test_the_gpu_engine_shares_the_nccl_id_then_names_the_missing_device():
    from qcomm import _qcomm
    if not _qcomm.built_with_gpu_engine:
        pytest.skip("qcomm was built without CUDA, NCCL or Gloo")
    store = dist.HashStore()
    with pytest.raises(RuntimeError, match=r"rank 0: cudaSetDevice\(0\) failed"):
        _qcomm.GpuEngine(store, 0, 1, 0, "qsgd:bits=4", "allgather", False, 0, 5.0)
    # Rank 0 made NCCL's unique id and set it in the store before touching the device.
    assert store.get("qcomm-gpu/nccl-unique-id")[:1] == b"\x01"
    with pytest.raises(ValueError, match="is a block quantizer"):
        _qcomm.GpuEngine(dist.HashStore(), 0, 1, 0, "linear:bits=4", "allgather", False, 0, 5.0)
