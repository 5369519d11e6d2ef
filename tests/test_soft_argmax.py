import math

import pytest
import torch
from op_memory import allocated_inside

from pose3d.ops.soft_argmax import (
    soft_argmax_2d,
    soft_argmax_2d_reference,
    soft_argmax_3d,
    soft_argmax_3d_reference,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# (B, J, D, H, W): odd sizes; rows that are whole 16-byte packs; a plane of several CPU chunks
SHAPES = [(2, 3, 5, 6, 7), (1, 2, 4, 8, 16), (1, 1, 2, 300, 8)]


def logits(shape, scale=4.0, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(device)


def assert_coords_close(actual, expected, rtol=1e-5):
    # relative to the coordinate range, so that coordinates near 0 are not held to 1e-5 of 0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=rtol)


def assert_cuda_grad_matches_cpu(grad_cuda, grad_cpu, dtype):
    """A CUDA gradient against the CPU op's, to the tolerance of `dtype` (bf16/fp16 loose),
    absolute part relative to the largest gradient."""
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 1e-2)
    torch.testing.assert_close(grad_cuda.cpu().double(), grad_cpu.double(), rtol=tol,
                               atol=tol * grad_cpu.double().abs().max())


@pytest.mark.parametrize("shape", SHAPES)
def test_fp32_matches_float64_reference(shape):
    x = logits(shape)
    out = soft_argmax_3d(x)
    assert out.shape == (*shape[:2], 3) and out.dtype == torch.float32
    assert_coords_close(out, soft_argmax_3d_reference(x.double()))


def test_float64_matches_reference_exactly():
    x = logits(SHAPES[0], dtype=torch.float64)
    out = soft_argmax_3d(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, soft_argmax_3d_reference(x), rtol=1e-12, atol=1e-12)


def test_coordinates_are_x_y_z_along_w_h_d():
    x = torch.full((1, 1, 4, 5, 6), -1e4)
    x[0, 0, 1, 2, 3] = 1e4  # d=1, h=2, w=3
    torch.testing.assert_close(soft_argmax_3d(x)[0, 0], torch.tensor([3.0, 2.0, 1.0]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_accumulates_in_float32(dtype):
    x = logits(SHAPES[1], dtype=dtype)
    out = soft_argmax_3d(x)
    assert out.dtype == torch.float32
    assert_coords_close(out, soft_argmax_3d_reference(x.double()))


def test_non_contiguous_input():
    x = logits((2, 3, 6, 7, 5)).permute(0, 1, 2, 4, 3)
    assert not x.is_contiguous()
    assert_coords_close(soft_argmax_3d(x), soft_argmax_3d_reference(x.double()))


def test_gradcheck_float64():
    x = logits((2, 2, 3, 4, 5), scale=2.0, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(soft_argmax_3d, (x,))
    y = logits((2, 2, 4, 5), scale=2.0, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(soft_argmax_2d, (y,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_matches_reference(dtype):
    x = logits(SHAPES[2], dtype=dtype).requires_grad_()
    grad_out = logits((1, 1, 3), seed=1)
    (fused,) = torch.autograd.grad(soft_argmax_3d(x), x, grad_out)
    x64 = x.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(soft_argmax_3d_reference(x64), x64, grad_out.double())
    assert fused.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(fused.double(), ref, rtol=tol, atol=tol * ref.abs().max())


def test_2d_matches_reference_and_3d_with_one_plane():
    x = logits((2, 3, 9, 16))
    out = soft_argmax_2d(x)
    assert out.shape == (2, 3, 2)
    assert_coords_close(out, soft_argmax_2d_reference(x.double()))
    torch.testing.assert_close(out, soft_argmax_3d(x.unsqueeze(2))[..., :2])


def test_torch_ops_entry_points():
    x = logits(SHAPES[0])
    torch.testing.assert_close(torch.ops.pose3d.soft_argmax_3d(x), soft_argmax_3d(x))
    coords, stats = torch.ops.pose3d.soft_argmax_3d_forward(x)
    flat = x.reshape(*x.shape[:2], -1).double()
    torch.testing.assert_close(stats[..., 0], flat.amax(-1).float())
    torch.testing.assert_close((stats[..., 0] + stats[..., 1]).double(), flat.logsumexp(-1))


@pytest.mark.parametrize("scale", [1e4])
def test_stable_for_huge_logits(scale):
    x = logits((2, 3, 4, 5, 8), scale=scale).requires_grad_()
    out = soft_argmax_3d(x)
    assert torch.isfinite(out).all()
    assert_coords_close(out, soft_argmax_3d_reference(x.detach().double()))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()
    x64 = x.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(soft_argmax_3d_reference(x64).sum(), x64)
    torch.testing.assert_close(grad.double(), ref, rtol=1e-4, atol=1e-4)


def test_nan_logit_gives_nan_for_its_joint_only():
    x = logits((1, 2, 3, 4, 8))
    x[0, 1, 2, 3, 5] = float("nan")
    out = soft_argmax_3d(x)
    assert torch.isnan(out[0, 1]).all() and torch.isfinite(out[0, 0]).all()


def test_minus_infinity_logits_get_no_mass():
    x = torch.full((1, 1, 2, 3, 8), float("-inf"))
    x[0, 0, 1, 2, 4] = 0.0
    x[0, 0, 0, 0, 0] = 0.0
    torch.testing.assert_close(soft_argmax_3d(x)[0, 0], torch.tensor([2.0, 1.0, 0.5]))


def minus_inf_cases():
    """Logits with -inf over whole CPU chunks (2048 logits: a 64 x 32 plane) and whole 16-byte
    packs (4 float32, 8 bfloat16 logits), before any finite logit and between them."""
    one = torch.full((1, 1, 2, 64, 32), float("-inf"))
    one[0, 0, 1, 5, 7] = 0.0  # the reference gives (7, 5, 1)
    planes = logits((2, 3, 3, 64, 32))
    planes[:, :, :2] = float("-inf")  # two whole planes before the first finite logit
    planes[0, 1, 2, :40] = float("-inf")  # and whole rows of packs after it
    planes[1, 2, 2, 10:, 8:24] = float("-inf")
    return {"one_finite": one, "last_plane": planes}


@pytest.mark.parametrize("case", ["one_finite", "last_plane"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_minus_infinity_chunks_and_packs_get_no_mass(case, dtype):
    x = minus_inf_cases()[case].to(dtype).requires_grad_()
    out = soft_argmax_3d(x)
    x64 = x.detach().double().requires_grad_()
    ref = soft_argmax_3d_reference(x64)
    assert_coords_close(out, ref)
    if case == "one_finite":
        torch.testing.assert_close(out[0, 0].double(), torch.tensor([7.0, 5.0, 1.0]).double())
    grad_out = logits((*x.shape[:2], 3), seed=1)
    (grad,) = torch.autograd.grad(out, x, grad_out.to(out.dtype))
    (grad_ref,) = torch.autograd.grad(ref, x64, grad_out.double())
    assert torch.isfinite(grad).all()
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    # one_finite: all the mass on one logit, whose x equals E[x], so the exact gradient is 0
    torch.testing.assert_close(grad.double(), grad_ref, rtol=tol,
                               atol=tol * max(grad_ref.abs().max().item(), 1.0))


def all_minus_inf_and_nan_cases():
    """Volume 0: all -inf. Volume 1: a NaN inside a first chunk that is otherwise -inf, then
    finite logits. Volume 2: -inf but for one finite logit (a check that the others are
    unaffected)."""
    x = torch.full((1, 3, 2, 64, 32), float("-inf"))
    x[0, 1, 0, 3, 3] = float("nan")
    x[0, 1, 1] = 0.0
    x[0, 2, 1, 60, 30] = 1.0
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_minus_infinity_gives_nan_as_the_reference_and_nan_comes_through(dtype):
    # A volume without a finite logit has no probability mass: no expectation exists, and the
    # eager softmax (the reference) gives NaN, which the op matches rather than invent one.
    x = all_minus_inf_and_nan_cases().to(dtype)
    out = soft_argmax_3d(x)
    ref = soft_argmax_3d_reference(x.double())
    assert torch.isnan(ref[0, :2]).all() and torch.isnan(out[0, :2]).all()
    torch.testing.assert_close(out[0, 2].double(), torch.tensor([30.0, 60.0, 1.0]).double())
    torch.testing.assert_close(out.double(), ref, equal_nan=True)


@pytest.mark.parametrize("value", [0.0, 1e4, -1e4])
def test_constant_volume_gives_the_centre(value):
    D, H, W = 3, 4, 6
    x = torch.full((1, 2, D, H, W), value, requires_grad=True)
    out = soft_argmax_3d(x)
    expected = torch.tensor([(W - 1) / 2, (H - 1) / 2, (D - 1) / 2]).expand(1, 2, 3)
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out[..., 0].sum(), x)
    # d E[x] / d logit = p (x - E[x]) with p uniform
    col = torch.arange(W, dtype=torch.float32) - (W - 1) / 2
    torch.testing.assert_close(grad, (col / (D * H * W)).expand_as(grad))


@pytest.mark.parametrize(("fn", "bad", "error", "match"), [
    (soft_argmax_3d, torch.zeros(2, 3, 4, 4), ValueError, r"\[B, J, D, H, W\]"),
    (soft_argmax_3d, torch.zeros(2, 0, 4, 4, 4), ValueError, "empty"),
    (soft_argmax_3d, torch.zeros(1, 1, 2, 2, 2, dtype=torch.int32), TypeError, "float32"),
    (soft_argmax_3d, [[0.0]], TypeError, "torch.Tensor"),
    (soft_argmax_2d, torch.zeros(2, 3, 1, 4, 4), ValueError, r"\[B, J, H, W\]"),
    (torch.ops.pose3d.soft_argmax_3d, torch.zeros(2, 3, 4), ValueError, r"\[B, J, D, H, W\]"),
    (torch.ops.pose3d.soft_argmax_3d, torch.zeros(1, 1, 0, 2, 2), ValueError, "empty"),
    (torch.ops.pose3d.soft_argmax_3d, torch.zeros(1, 1, 2, 2, 2, dtype=torch.int64), TypeError,
     "float32"),
    (torch.ops.pose3d.soft_argmax_2d, torch.zeros(2, 3, 4), ValueError, r"\[B, J, H, W\]"),
])
def test_bad_input_raises_a_clear_error(fn, bad, error, match):
    with pytest.raises(error, match=match):
        fn(bad)


def test_backward_op_checks_shapes():
    x = logits((2, 3, 2, 2, 4))
    coords, stats = torch.ops.pose3d.soft_argmax_3d_forward(x)
    with pytest.raises(ValueError, match="grad_coords must be"):
        torch.ops.pose3d.soft_argmax_3d_backward(torch.zeros(2, 3, 2), x, coords, stats)
    with pytest.raises(ValueError, match="stats must be"):
        torch.ops.pose3d.soft_argmax_3d_backward(coords, x, coords, stats[:1])


def test_saves_no_full_size_tensor_for_backward():
    x = logits((2, 3, 4, 5, 8)).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        soft_argmax_3d(x)
    assert saved, "nothing saved: the backward could not recompute the probabilities"
    for t in saved:
        assert t.data_ptr() == x.data_ptr() or t.numel() <= 2 * 3 * 3, t.shape


def channels_last_heatmaps(batch, joints, depth, height, width, dtype=torch.float32, seed=0,
                           device="cpu"):
    """What the single-view model hands the op: its 1x1 conv's channels_last output
    [N, J*D, h, w] viewed as [N, J, D, h, w], so that D has unit stride, then w, h."""
    maps = logits((batch, joints * depth, height, width), dtype=dtype, seed=seed, device=device)
    maps = maps.contiguous(memory_format=torch.channels_last)
    return maps.reshape(batch, joints, depth, height, width)


@pytest.mark.parametrize(("shape", "dtype"), [
    ((2, 3, 16, 8, 8), torch.float32),
    ((2, 3, 16, 8, 8), torch.bfloat16),
    ((1, 2, 5, 6, 7), torch.float64),  # rows of 5: no 16-byte packs
    ((1, 2, 64, 40, 3), torch.float32),  # a chunk (2048 logits) is 32 rows of 64
])
def test_channels_last_layout_matches_contiguous(shape, dtype):
    x = channels_last_heatmaps(*shape, dtype=dtype).requires_grad_()
    assert not x.is_contiguous() and x.stride(2) == 1
    xc = x.detach().contiguous().requires_grad_()
    out, out_c = soft_argmax_3d(x), soft_argmax_3d(xc)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert_coords_close(out, out_c, rtol=tol)
    assert_coords_close(out, soft_argmax_3d_reference(xc.detach().double()), rtol=max(tol, 1e-5))
    grad_out = logits((*shape[:2], 3), seed=1, dtype=out.dtype)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    (grad_c,) = torch.autograd.grad(out_c, xc, grad_out)
    assert grad.stride() == x.stride()  # written in the input's layout, handed back as is
    gtol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 1e-2)
    torch.testing.assert_close(grad.double(), grad_c.double(), rtol=gtol,
                               atol=gtol * grad_c.double().abs().max())


def op_allocations(x):
    """Bytes allocated inside the forward and the backward op for logits x."""
    from torch.profiler import ProfilerActivity, profile

    x = x.detach().requires_grad_()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        soft_argmax_3d(x).sum().backward()
    return (allocated_inside(prof, "pose3d::soft_argmax_3d_forward"),
            allocated_inside(prof, "pose3d::soft_argmax_3d_backward"))


def test_channels_last_heatmaps_are_not_copied():
    x = channels_last_heatmaps(2, 4, 16, 8, 8)
    forward, backward = op_allocations(x)
    assert forward < x.nbytes // 8  # only coords and stats
    assert x.nbytes <= backward < x.nbytes + x.nbytes // 8  # only the gradient
    # the measurement sees a copy where one is needed (no volume axis of unit stride)
    y = x.detach().permute(0, 2, 1, 3, 4)[:, :4]
    forward, backward = op_allocations(y)
    assert forward >= y.nbytes and backward >= 2 * y.nbytes


@pytest.mark.parametrize("fn", [soft_argmax_3d, lambda h: soft_argmax_2d(h[:, :, 0])])
def test_double_backward_is_refused(fn):
    # The backward op has no derivative of its own: a second derivative would be silently 0.
    x = logits((1, 2, 3, 4, 8)).requires_grad_()
    (grad,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="soft_argmax_3d has no second derivative"):
        grad.pow(2).sum().backward()


def _opcheck_samples(device="cpu"):
    x = logits((2, 3, 3, 4, 8), device=device)
    xg = x.clone().requires_grad_()
    coords, stats = torch.ops.pose3d.soft_argmax_3d_forward(x)
    grad = torch.randn_like(coords)
    cl = channels_last_heatmaps(2, 3, 3, 4, 8, device=device)  # read in place
    return [
        (torch.ops.pose3d.soft_argmax_3d_forward.default, (x,)),
        (torch.ops.pose3d.soft_argmax_3d_forward.default, (xg,)),
        (torch.ops.pose3d.soft_argmax_3d_backward.default, (grad, x, coords, stats)),
        (torch.ops.pose3d.soft_argmax_3d.default, (xg,)),
        (torch.ops.pose3d.soft_argmax_2d.default, (xg[:, :, 0],)),
        (torch.ops.pose3d.soft_argmax_3d_forward.default, (x.bfloat16(),)),
        (torch.ops.pose3d.soft_argmax_3d_forward.default, (cl.requires_grad_(),)),
        (torch.ops.pose3d.soft_argmax_3d_backward.default, (grad, cl, coords, stats)),
        (torch.ops.pose3d.soft_argmax_3d_backward.default, (grad, cl[:, :, :, :3], coords,
                                                            stats)),
    ]


@pytest.mark.parametrize("case", range(9))
def test_opcheck(case):
    op, args = _opcheck_samples()[case]
    torch.library.opcheck(op, args)


def test_compile_fullgraph_forward_and_backward():
    def loss(h):
        return (soft_argmax_3d(h) ** 2).sum() + soft_argmax_2d(h[:, :, 0]).sum()

    x = logits((2, 3, 4, 5, 8)).requires_grad_()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    (g_compiled,) = torch.autograd.grad(compiled(x), x)
    (g_eager,) = torch.autograd.grad(loss(x), x)
    torch.testing.assert_close(g_compiled, g_eager)


@pytest.mark.slow
def test_compile_fullgraph_inductor():
    x = logits((2, 3, 4, 5, 8)).requires_grad_()
    compiled = torch.compile(lambda h: soft_argmax_3d(h * 2.0).sum(), fullgraph=True)
    (g_compiled,) = torch.autograd.grad(compiled(x), x)
    (g_eager,) = torch.autograd.grad(soft_argmax_3d(x * 2.0).sum(), x)
    torch.testing.assert_close(g_compiled, g_eager)


def test_bfloat16_autocast_trains_through_the_op():
    conv = torch.nn.Conv3d(2, 3, kernel_size=1)
    x = logits((2, 2, 4, 4, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        heatmaps = conv(x)  # [B=2, J=3, D, H, W]
        coords = soft_argmax_3d(heatmaps)
    assert heatmaps.dtype == torch.bfloat16 and coords.dtype == torch.float32
    coords.sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


# --- CUDA: run only where there is a GPU ---------------------------------------------------

@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("shape", [*SHAPES, (32, 17, 8, 16, 16), (1, 1, 64, 64, 64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_cuda_matches_cpu_and_reference(shape, dtype):
    x = logits(shape, dtype=dtype)
    xc = x.cuda().requires_grad_()
    out = soft_argmax_3d(xc)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    assert_coords_close(out.cpu(), soft_argmax_3d_reference(x.double()), rtol=rtol)
    assert_coords_close(out.cpu(), soft_argmax_3d(x), rtol=rtol)

    grad_out = logits((*shape[:2], 3), seed=1, dtype=out.dtype)
    (g_cuda,) = torch.autograd.grad(out, xc, grad_out.cuda())
    xr = x.detach().requires_grad_()
    (g_cpu,) = torch.autograd.grad(soft_argmax_3d(xr), xr, grad_out)
    assert g_cuda.dtype == dtype
    assert_cuda_grad_matches_cpu(g_cuda, g_cpu, dtype)


@pytest.mark.cuda
@needs_cuda
def test_cuda_unaligned_and_huge_logits():
    base = logits((1 * 2 * 4 * 4 * 8 + 1,), scale=1e4)
    x = base[1:].view(1, 2, 4, 4, 8)  # storage offset of one element: no 16-byte loads
    out = soft_argmax_3d(x.cuda())
    assert torch.isfinite(out).all()
    assert_coords_close(out.cpu(), soft_argmax_3d_reference(x.double()))


@pytest.mark.cuda
@needs_cuda
def test_cuda_gradcheck_and_opcheck():
    x = logits((2, 2, 3, 4, 4), scale=2.0, dtype=torch.float64, device="cuda").requires_grad_()
    assert torch.autograd.gradcheck(soft_argmax_3d, (x,))
    for op, args in _opcheck_samples("cuda"):
        torch.library.opcheck(op, args)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("case", ["one_finite", "last_plane"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cuda_minus_infinity_chunks_and_packs_get_no_mass(case, dtype):
    x = minus_inf_cases()[case].to(dtype)
    xc = x.cuda().requires_grad_()
    out = soft_argmax_3d(xc)
    x64 = x.double().requires_grad_()
    ref = soft_argmax_3d_reference(x64)
    assert_coords_close(out.cpu(), ref)
    grad_out = logits((*x.shape[:2], 3), seed=1, dtype=out.dtype)
    (grad,) = torch.autograd.grad(out, xc, grad_out.cuda())
    (grad_ref,) = torch.autograd.grad(ref, x64, grad_out.double())
    assert torch.isfinite(grad).all()
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(grad.cpu().double(), grad_ref, rtol=tol,
                               atol=tol * max(grad_ref.abs().max().item(), 1.0))


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_all_minus_infinity_and_nan_as_the_reference(dtype):
    x = all_minus_inf_and_nan_cases().to(dtype)
    out = soft_argmax_3d(x.cuda()).cpu()
    torch.testing.assert_close(out.double(), soft_argmax_3d_reference(x.double()),
                               equal_nan=True)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize(("shape", "dtype"), [
    ((2, 3, 16, 8, 8), torch.float32),
    ((2, 3, 16, 8, 8), torch.bfloat16),
    # rows of 5: scalar loads. Large enough that the caching allocator's 512-byte blocks for
    # the small outputs stay under a quarter of x (at 6 x 7 they did not: H200, 2026-11-27).
    ((1, 2, 5, 24, 28), torch.float64),
    ((4, 17, 64, 16, 16), torch.bfloat16),  # the real model's D = 64
])
def test_cuda_channels_last_layout_matches_cpu_without_a_copy(shape, dtype):
    x = channels_last_heatmaps(*shape, dtype=dtype, device="cuda").requires_grad_()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = soft_argmax_3d(x)
    assert torch.cuda.max_memory_allocated() - before < x.nbytes // 4  # no copy of x
    xr = x.detach().cpu().requires_grad_()
    out_cpu = soft_argmax_3d(xr)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert_coords_close(out.cpu(), out_cpu, rtol=tol)
    grad_out = logits((*shape[:2], 3), seed=1, dtype=out.dtype)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    (grad,) = torch.autograd.grad(out, x, grad_out.cuda())
    assert torch.cuda.max_memory_allocated() - before < x.nbytes + x.nbytes // 4  # grad only
    assert grad.stride() == x.stride()
    (grad_cpu,) = torch.autograd.grad(out_cpu, xr, grad_out)
    assert_cuda_grad_matches_cpu(grad, grad_cpu, dtype)


@pytest.mark.cuda
@needs_cuda
def test_cuda_volume_of_more_than_2_pow_31_logits():
    # One bf16 volume of 2^31 + 2^21 logits (4 GiB, 8 GiB with its gradient): 0 everywhere but
    # a peak a at the very end, past logit 2^31, so that the expectation is known exactly:
    # E = (N c + (e^a - 1) P) / (N + e^a - 1) with c the centre and P the peak's position.
    D, H, W = 2049, 1024, 1024
    if torch.cuda.get_device_properties(0).total_memory < 16 * 2**30:
        pytest.skip("needs 16 GiB of GPU memory")
    x = torch.zeros((1, 1, D, H, W), dtype=torch.bfloat16, device="cuda", requires_grad=True)
    a, peak = 25.0, (W - 3, H - 2, D - 1)  # (x, y, z)
    with torch.no_grad():
        x[0, 0, peak[2], peak[1], peak[0]] = a
    out = soft_argmax_3d(x)
    n, w = float(D * H * W), math.exp(a) - 1.0
    centre = torch.tensor([(W - 1) / 2, (H - 1) / 2, (D - 1) / 2], dtype=torch.float64)
    expected = (n * centre + w * torch.tensor(peak, dtype=torch.float64)) / (n + w)
    torch.testing.assert_close(out[0, 0].cpu().double(), expected, rtol=1e-5, atol=1e-4)
    (grad,) = torch.autograd.grad(out[0, 0, 2], x)  # d E[z] / d logit = p (z - E[z])
    p_peak = (w + 1.0) / (n + w)
    g_peak = grad[0, 0, peak[2], peak[1], peak[0]].item()
    assert g_peak == pytest.approx(p_peak * (peak[2] - expected[2].item()), rel=2e-2)
    g_first = grad[0, 0, 0, 0, 0].item()
    assert g_first == pytest.approx((0.0 - expected[2].item()) / (n + w), rel=2e-2)
