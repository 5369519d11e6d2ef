// soft_argmax_3d: CUDA kernels.
//
// Forward: each volume, walked as rows along its axis of unit stride (Walk in soft_argmax.h,
// so that channels_last heatmaps are read where they lie), is cut into `splits` runs of rows
// and one block reads one run with 16-byte loads, keeping per-thread online (max, sum, sx, sy, sz); the block merges its
// threads' partials with warp shuffles and shared memory and writes one partial, and a small
// kernel merges each volume's partials into coords and (max, log sum). Splitting the volume
// keeps every SM busy whatever B * J is. Backward reads the logits once more and writes the
// gradient, recomputing the probabilities from the saved (max, log sum).
// Accumulation is float32 for float32 / float16 / bfloat16 logits, float64 for float64.
// Logits are addressed with 64-bit offsets; a block's own count of logits stays under 2^31.
// -inf logits add exactly 0 (exp(-inf) = 0; a partial whose max is -inf holds no mass), NaN
// logits make their volume NaN, a volume with no finite logit gives NaN as the eager softmax.
#include "soft_argmax.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>

namespace pose3d::soft_argmax {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 2;  // 16-byte loads in flight per thread before the arithmetic
// Caps registers at 64 a thread, so that 1024 threads a SM keep 32 KiB of loads in flight.
// float64 state takes twice the registers and spilled under that cap (16 B forward, 88 B
// backward): it gets 128 (2 blocks a SM); it serves gradchecks and references, not training.
template <typename scalar_t>
constexpr int kMinBlocksPerSM = std::is_same_v<scalar_t, double> ? 2 : 4;
// Enough blocks for several full waves on any GPU, so the last wave's tail is short; but a
// block still gets at least kMinBlockElements logits to amortise its reduction.
constexpr int64_t kBlocksPerSM = 64;
constexpr int64_t kMinBlockElements = 8192;

using Divider = at::cuda::detail::IntDivider<unsigned int>;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Online-softmax state of a set of logits: max and sums of exp(logit - max) weighted by 1 and
// by the coordinates along the walk's inner, middle and outer axis. A partial whose max is
// -inf has no mass: its sums are 0, or NaN where a NaN logit was read.
template <typename T>
struct Partial {
  T max, sum, s0, s1, s2;
};

__device__ __forceinline__ float exp_dev(float x) { return __expf(x); }
__device__ __forceinline__ double exp_dev(double x) { return exp(x); }

template <typename T>
__device__ __forceinline__ Partial<T> empty_partial() {
  return {-static_cast<T>(INFINITY), T(0), T(0), T(0), T(0)};
}

// The weight of a partial's sums relative to the merged max m: 0 for a partial without mass
// (never exp(-inf - -inf) = NaN), so that its sums add 0, or NaN where they are NaN.
template <typename T>
__device__ __forceinline__ T merge_weight(T max, T m) {
  return max == -static_cast<T>(INFINITY) ? T(0) : exp_dev(max - m);
}

template <typename T>
__device__ __forceinline__ Partial<T> merge(const Partial<T>& a, const Partial<T>& b) {
  const T m = a.max > b.max ? a.max : b.max;
  const T fa = merge_weight(a.max, m), fb = merge_weight(b.max, m);
  return {m, a.sum * fa + b.sum * fb, a.s0 * fa + b.s0 * fb, a.s1 * fa + b.s1 * fb,
          a.s2 * fa + b.s2 * fb};
}

template <typename T>
__device__ __forceinline__ Partial<T> warp_merge(Partial<T> p) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const Partial<T> q{__shfl_xor_sync(0xffffffffu, p.max, offset),
                       __shfl_xor_sync(0xffffffffu, p.sum, offset),
                       __shfl_xor_sync(0xffffffffu, p.s0, offset),
                       __shfl_xor_sync(0xffffffffu, p.s1, offset),
                       __shfl_xor_sync(0xffffffffu, p.s2, offset)};
    p = merge(p, q);
  }
  return p;
}

// The merged partial of the whole block, valid in thread 0.
template <typename T>
__device__ __forceinline__ Partial<T> block_merge(Partial<T> p) {
  __shared__ Partial<T> warps[kWarps];
  p = warp_merge(p);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warps[warp] = p;
  __syncthreads();
  if (warp == 0) p = warp_merge(lane < kWarps ? warps[lane] : empty_partial<T>());
  return p;
}

// The walk (soft_argmax.h) as the kernels take it: offsets and strides in packs of VEC
// logits, and how the volumes' rows are cut into blocks.
struct DeviceWalk {
  int64_t s1, s2, sb, sj;     // strides of the middle and outer axis, of B and of J
  unsigned J, rows;           // rows = n1 * n2 rows of n0 logits a volume
  unsigned splits, rows_per_split;
  Divider packs_per_row;      // n0 / VEC
  Divider middle;             // n1: row r is (outer, middle) = divmod(r, n1)
  int c0, c1, c2;             // coordinate index (0 x, 1 y, 2 z) of the inner, middle, outer axis
};

// Where a block works: volume v at pack offset base, rows [r0, r0 + nr) of its rows.
struct Run {
  unsigned v, r0, nr;
  int64_t base;
};

__device__ __forceinline__ Run block_run(const DeviceWalk& w) {
  const unsigned v = blockIdx.x / w.splits, split = blockIdx.x % w.splits;
  const unsigned r0 = split * w.rows_per_split;
  return {v, r0, min(w.rows_per_split, w.rows - r0),
          static_cast<int64_t>(v / w.J) * w.sb + static_cast<int64_t>(v % w.J) * w.sj};
}

// The k-th pack of a block's run: its offset in packs, its inner index (in packs) and the
// middle and outer coordinates of its row.
struct Spot {
  int64_t offset;
  unsigned inner, mid, outer;
};

__device__ __forceinline__ Spot spot(const DeviceWalk& w, const Run& run, unsigned k) {
  const auto rc = w.packs_per_row.divmod(k);
  const auto om = w.middle.divmod(run.r0 + rc.div);
  return {run.base + static_cast<int64_t>(om.div) * w.s2 + static_cast<int64_t>(om.mod) * w.s1 +
              rc.mod,
          rc.mod, om.mod, om.div};
}

template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM<scalar_t>)
    forward_partial_kernel(const scalar_t* __restrict__ x,
                           Partial<at::opmath_type<scalar_t>>* __restrict__ partials,
                           DeviceWalk w) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const Run run = block_run(w);
  const P* base = reinterpret_cast<const P*>(x);
  const unsigned n = run.nr * w.packs_per_row.divisor;

  Partial<acc_t> p = empty_partial<acc_t>();
  for (unsigned k0 = threadIdx.x; k0 < n; k0 += kThreads * kUnroll) {
    P packs[kUnroll];
    Spot spots[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k < n) {
        spots[u] = spot(w, run, k);
        packs[u] = base[spots[u].offset];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k >= n) break;
      acc_t vals[VEC];
      acc_t m = p.max;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        vals[j] = static_cast<acc_t>(packs[u].v[j]);
        m = vals[j] > m ? vals[j] : m;  // NaN is skipped here and reaches the sums below
      }
      if (m > p.max) {  // move this thread's sums to the larger max (exp(-inf) = 0 at first)
        const acc_t f = exp_dev(p.max - m);
        p.sum *= f, p.s0 *= f, p.s1 *= f, p.s2 *= f;
        p.max = m;
      }
      // Until a finite logit comes, sum relative to 0: -inf logits then add exactly 0 rather
      // than exp(-inf - -inf) = NaN, and the sums (0, or NaN) have no mass to rescale.
      const acc_t ref = p.max == -static_cast<acc_t>(INFINITY) ? acc_t(0) : p.max;
      acc_t es = 0, ej = 0;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const acc_t e = exp_dev(vals[j] - ref);
        es += e;
        ej += e * acc_t(j);
      }
      p.sum += es;
      p.s0 += es * acc_t(spots[u].inner * VEC) + ej;
      p.s1 += es * acc_t(spots[u].mid);
      p.s2 += es * acc_t(spots[u].outer);
    }
  }
  p = block_merge(p);
  if (threadIdx.x == 0) partials[blockIdx.x] = p;
}

// One thread a volume: merges its partials (in float64, it is a few numbers) into
// coords = (s0, s1, s2) / sum, each to its axis' coordinate, and stats = (max, log sum).
// A volume without a finite logit has sum 0 and gives NaN (0 / 0), as the eager softmax does.
template <typename acc_t>
__global__ void forward_finalize_kernel(const Partial<acc_t>* __restrict__ partials,
                                        unsigned splits, int64_t volumes, int c0, int c1,
                                        int c2, acc_t* __restrict__ coords,
                                        acc_t* __restrict__ stats) {
  const int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (v >= volumes) return;
  Partial<double> p = empty_partial<double>();
  for (unsigned s = 0; s < splits; ++s) {
    const Partial<acc_t>& q = partials[v * splits + s];
    p = merge(p, Partial<double>{q.max, q.sum, q.s0, q.s1, q.s2});
  }
  coords[3 * v + c0] = static_cast<acc_t>(p.s0 / p.sum);
  coords[3 * v + c1] = static_cast<acc_t>(p.s1 / p.sum);
  coords[3 * v + c2] = static_cast<acc_t>(p.s2 / p.sum);
  stats[2 * v] = static_cast<acc_t>(p.max);
  stats[2 * v + 1] = static_cast<acc_t>(log(p.sum));
}

// grad_logit = exp(logit - max) / sum * sum_k g_k (coordinate_k - E_k), k = inner, middle,
// outer axis; the gradient has the strides of the logits (empty_like of dense logits).
template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM<scalar_t>)
    backward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ grad,
                    const at::opmath_type<scalar_t>* __restrict__ grad_coords,
                    const at::opmath_type<scalar_t>* __restrict__ coords,
                    const at::opmath_type<scalar_t>* __restrict__ stats, DeviceWalk w) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const Run run = block_run(w);
  const P* base = reinterpret_cast<const P*>(x);
  P* out = reinterpret_cast<P*>(grad);
  const unsigned n = run.nr * w.packs_per_row.divisor;

  const int64_t v = run.v;
  const acc_t m = stats[2 * v], inv_sum = exp_dev(-stats[2 * v + 1]);
  const acc_t g0 = inv_sum * grad_coords[3 * v + w.c0], g1 = inv_sum * grad_coords[3 * v + w.c1],
              g2 = inv_sum * grad_coords[3 * v + w.c2];
  const acc_t e0 = coords[3 * v + w.c0], e1 = coords[3 * v + w.c1], e2 = coords[3 * v + w.c2];

  for (unsigned k0 = threadIdx.x; k0 < n; k0 += kThreads * kUnroll) {
    P packs[kUnroll];
    Spot spots[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k < n) {
        spots[u] = spot(w, run, k);
        packs[u] = base[spots[u].offset];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k >= n) break;
      const acc_t a = g0 * (acc_t(spots[u].inner * VEC) - e0) +
                      g1 * (acc_t(spots[u].mid) - e1) + g2 * (acc_t(spots[u].outer) - e2);
      P g;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const acc_t e = exp_dev(static_cast<acc_t>(packs[u].v[j]) - m);
        g.v[j] = static_cast<scalar_t>(e * (a + g0 * acc_t(j)));
      }
      out[spots[u].offset] = g;
    }
  }
}

// Index arithmetic inside a volume is 32-bit (IntDivider needs numbers under 2^31): a block
// counts its packs, a volume its rows, both under 2^31; offsets into the tensor are 64-bit,
// so a volume may hold 2^31 logits or more, as on the CPU.
constexpr int64_t kMaxIndex = int64_t{1} << 31;

// How the volumes walked by w are cut into blocks, in packs of vec logits.
DeviceWalk plan(int64_t volumes, const Walk& w, int vec) {
  const int64_t rows = w.n1 * w.n2;
  TORCH_CHECK_VALUE(w.n0 < kMaxIndex && rows < kMaxIndex && volumes < kMaxIndex,
                    "soft_argmax_3d: the CUDA kernels take under 2^31 volumes of under 2^31 "
                    "rows of under 2^31 logits (a row runs along the axis of unit stride), "
                    "got ", volumes, " volumes of ", rows, " rows of ", w.n0);
  int sms = 0;  // ATen/cuda/CUDAContext.h would give it too, but needs the cuSPARSE headers
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
                                        c10::cuda::current_device()));
  const int64_t min_rows = (kMinBlockElements + w.n0 - 1) / w.n0;
  const int64_t max_rows = kMaxIndex / w.n0;
  int64_t splits = (int64_t{sms} * kBlocksPerSM + volumes - 1) / volumes;
  splits = std::max<int64_t>(1, std::min(splits, (rows + min_rows - 1) / min_rows));
  splits = std::max(splits, (rows + max_rows - 1) / max_rows);
  const int64_t rows_per_split = (rows + splits - 1) / splits;
  splits = (rows + rows_per_split - 1) / rows_per_split;
  TORCH_CHECK_VALUE(volumes * splits < kMaxIndex,
                    "soft_argmax_3d: too many CUDA blocks (", volumes * splits, ") for ",
                    volumes, " volumes");
  return {w.s1 / vec, w.s2 / vec, w.sb / vec, w.sj / vec,
          static_cast<unsigned>(w.J), static_cast<unsigned>(rows),
          static_cast<unsigned>(splits), static_cast<unsigned>(rows_per_split),
          Divider(static_cast<unsigned>(w.n0 / vec)), Divider(static_cast<unsigned>(w.n1)),
          w.axis[0], w.axis[1], w.axis[2]};
}

// 16-byte packs when rows and every stride are whole packs and the addresses allow it, else
// scalars.
template <typename scalar_t>
constexpr int kVec = 16 / sizeof(scalar_t);

template <typename scalar_t>
bool can_vectorise(const Walk& w, std::initializer_list<const void*> ptrs) {
  for (const int64_t n : {w.n0, w.s1, w.s2, w.sb, w.sj}) {
    if (n % kVec<scalar_t> != 0) return false;
  }
  for (const void* p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& heatmaps) {
  check_heatmaps(heatmaps, "soft_argmax_3d_forward");
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor x = readable(heatmaps);
  const Walk walk = walk_of(x);
  const int64_t volumes = x.size(0) * x.size(1);
  const auto opts = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor coords = at::empty({x.size(0), x.size(1), 3}, opts),
             stats = at::empty({x.size(0), x.size(1), 2}, opts);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int V = kVec<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const bool packs = can_vectorise<scalar_t>(walk, {xp});
    const DeviceWalk w = plan(volumes, walk, packs ? V : 1);
    at::Tensor partials = at::empty({volumes * w.splits, 5}, opts);
    auto* pp = reinterpret_cast<Partial<acc_t>*>(partials.mutable_data_ptr<acc_t>());
    const int64_t blocks = volumes * w.splits;
    if (packs) {
      forward_partial_kernel<scalar_t, V><<<blocks, kThreads, 0, stream>>>(xp, pp, w);
    } else {
      forward_partial_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(xp, pp, w);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    forward_finalize_kernel<acc_t><<<(volumes + 127) / 128, 128, 0, stream>>>(
        pp, w.splits, volumes, w.c0, w.c1, w.c2, coords.mutable_data_ptr<acc_t>(),
        stats.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {coords, stats};
}

at::Tensor backward_cuda(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                         const at::Tensor& coords, const at::Tensor& stats) {
  check_backward_inputs(grad_coords, heatmaps, coords, stats);
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor x = readable(heatmaps);
  const Walk walk = walk_of(x);
  const int64_t volumes = x.size(0) * x.size(1);
  const auto acc = stats_dtype(x.scalar_type());
  const at::Tensor g = grad_coords.to(acc).contiguous(), c = coords.to(acc).contiguous(),
                   st = stats.to(acc).contiguous();
  const auto grads = gradient_and_target(heatmaps, x);
  const at::Tensor &grad = grads.first, &target = grads.second;  // target has x's strides
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    constexpr int V = kVec<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gp = target.mutable_data_ptr<scalar_t>();
    const acc_t *gc = g.const_data_ptr<acc_t>(), *cc = c.const_data_ptr<acc_t>(),
                *sc = st.const_data_ptr<acc_t>();
    const bool packs = can_vectorise<scalar_t>(walk, {xp, gp});
    const DeviceWalk w = plan(volumes, walk, packs ? V : 1);
    const int64_t blocks = volumes * w.splits;
    if (packs) {
      backward_kernel<scalar_t, V><<<blocks, kThreads, 0, stream>>>(xp, gp, gc, cc, sc, w);
    } else {
      backward_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(xp, gp, gc, cc, sc, w);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (!target.is_same(grad)) grad.copy_(target);
  return grad;
}

}  // namespace
}  // namespace pose3d::soft_argmax

TORCH_LIBRARY_IMPL(pose3d, CUDA, m) {
  m.impl("soft_argmax_3d_forward", &pose3d::soft_argmax::forward_cuda);
  m.impl("soft_argmax_3d_backward", &pose3d::soft_argmax::backward_cuda);
}
