// soft_argmax_3d: CUDA kernels.
//
// Forward: each volume is cut into `splits` runs of rows and one block reads one run with
// 16-byte loads, keeping per-thread online (max, sum, sx, sy, sz); the block merges its
// threads' partials with warp shuffles and shared memory and writes one partial, and a small
// kernel merges each volume's partials into coords and (max, log sum). Splitting the volume
// keeps every SM busy whatever B * J is. Backward reads the logits once more and writes the
// gradient, recomputing the probabilities from the saved (max, log sum).
// Accumulation is float32 for float32 / float16 / bfloat16 logits, float64 for float64.
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

namespace pose3d::soft_argmax {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kUnroll = 2;  // 16-byte loads in flight per thread before the arithmetic
// Caps registers at 64 a thread, so that 1024 threads a SM keep 32 KiB of loads in flight.
constexpr int kMinBlocksPerSM = 4;
// Enough blocks for several full waves on any GPU, so the last wave's tail is short; but a
// block still gets at least kMinBlockElements logits to amortise its reduction.
constexpr int64_t kBlocksPerSM = 64;
constexpr int64_t kMinBlockElements = 8192;

using Divider = at::cuda::detail::IntDivider<unsigned int>;

template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Online-softmax state of a set of logits: max and sums of exp(logit - max) weighted by 1, x,
// y, z. sum == 0 marks an empty set.
template <typename T>
struct Partial {
  T max, sum, sx, sy, sz;
};

__device__ __forceinline__ float exp_dev(float x) { return __expf(x); }
__device__ __forceinline__ double exp_dev(double x) { return exp(x); }

template <typename T>
__device__ __forceinline__ Partial<T> empty_partial() {
  return {-static_cast<T>(INFINITY), T(0), T(0), T(0), T(0)};
}

template <typename T>
__device__ __forceinline__ Partial<T> merge(const Partial<T>& a, const Partial<T>& b) {
  if (b.sum == T(0)) return a;
  if (a.sum == T(0)) return b;
  const T m = a.max > b.max ? a.max : b.max;
  const T fa = exp_dev(a.max - m), fb = exp_dev(b.max - m);
  return {m, a.sum * fa + b.sum * fb, a.sx * fa + b.sx * fb, a.sy * fa + b.sy * fb,
          a.sz * fa + b.sz * fb};
}

template <typename T>
__device__ __forceinline__ Partial<T> warp_merge(Partial<T> p) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const Partial<T> q{__shfl_xor_sync(0xffffffffu, p.max, offset),
                       __shfl_xor_sync(0xffffffffu, p.sum, offset),
                       __shfl_xor_sync(0xffffffffu, p.sx, offset),
                       __shfl_xor_sync(0xffffffffu, p.sy, offset),
                       __shfl_xor_sync(0xffffffffu, p.sz, offset)};
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

// Where a block works: volume v, rows [r0, r0 + nr) of its D*H rows of W logits.
struct Run {
  int64_t v;
  unsigned r0, nr;
};

__device__ __forceinline__ Run block_run(unsigned splits, unsigned rows, unsigned rows_per_split) {
  const unsigned split = blockIdx.x % splits;
  const unsigned r0 = split * rows_per_split;
  return {static_cast<int64_t>(blockIdx.x / splits), r0, min(rows_per_split, rows - r0)};
}

template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
    forward_partial_kernel(const scalar_t* __restrict__ x,
                           Partial<at::opmath_type<scalar_t>>* __restrict__ partials,
                           unsigned splits, unsigned rows, unsigned rows_per_split,
                           Divider vecs_per_row, Divider height) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const Run run = block_run(splits, rows, rows_per_split);
  const unsigned W = vecs_per_row.divisor * VEC;
  const P* base = reinterpret_cast<const P*>(x + (run.v * rows + run.r0) * W);
  const unsigned n = run.nr * vecs_per_row.divisor;

  Partial<acc_t> p = empty_partial<acc_t>();
  for (unsigned k0 = threadIdx.x; k0 < n; k0 += kThreads * kUnroll) {
    P packs[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k < n) packs[u] = base[k];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k >= n) break;
      const auto rc = vecs_per_row.divmod(k);
      const auto dh = height.divmod(run.r0 + rc.div);
      acc_t vals[VEC];
      acc_t m = p.max;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        vals[j] = static_cast<acc_t>(packs[u].v[j]);
        m = vals[j] > m ? vals[j] : m;
      }
      if (m > p.max) {  // move this thread's sums to the larger max
        const acc_t f = exp_dev(p.max - m);
        p.sum *= f, p.sx *= f, p.sy *= f, p.sz *= f;
        p.max = m;
      }
      acc_t es = 0, ej = 0;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const acc_t e = exp_dev(vals[j] - p.max);
        es += e;
        ej += e * acc_t(j);
      }
      p.sum += es;
      p.sx += es * acc_t(rc.mod * VEC) + ej;
      p.sy += es * acc_t(dh.mod);
      p.sz += es * acc_t(dh.div);
    }
  }
  p = block_merge(p);
  if (threadIdx.x == 0) partials[blockIdx.x] = p;
}

// One thread a volume: merges its partials (in float64, it is a few numbers) into
// coords = (sx, sy, sz) / sum and stats = (max, log sum).
template <typename acc_t>
__global__ void forward_finalize_kernel(const Partial<acc_t>* __restrict__ partials,
                                        unsigned splits, int64_t volumes,
                                        acc_t* __restrict__ coords, acc_t* __restrict__ stats) {
  const int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (v >= volumes) return;
  Partial<double> p = empty_partial<double>();
  for (unsigned s = 0; s < splits; ++s) {
    const Partial<acc_t>& q = partials[v * splits + s];
    p = merge(p, Partial<double>{q.max, q.sum, q.sx, q.sy, q.sz});
  }
  coords[3 * v] = static_cast<acc_t>(p.sx / p.sum);
  coords[3 * v + 1] = static_cast<acc_t>(p.sy / p.sum);
  coords[3 * v + 2] = static_cast<acc_t>(p.sz / p.sum);
  stats[2 * v] = static_cast<acc_t>(p.max);
  stats[2 * v + 1] = static_cast<acc_t>(log(p.sum));
}

// grad_logit = exp(logit - max) / sum * (gx (x - Ex) + gy (y - Ey) + gz (z - Ez)).
template <typename scalar_t, int VEC>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
    backward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ grad,
                    const at::opmath_type<scalar_t>* __restrict__ grad_coords,
                    const at::opmath_type<scalar_t>* __restrict__ coords,
                    const at::opmath_type<scalar_t>* __restrict__ stats, unsigned splits,
                    unsigned rows, unsigned rows_per_split, Divider vecs_per_row,
                    Divider height) {
  using acc_t = at::opmath_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  const Run run = block_run(splits, rows, rows_per_split);
  const unsigned W = vecs_per_row.divisor * VEC;
  const int64_t offset = (run.v * rows + run.r0) * W;
  const P* base = reinterpret_cast<const P*>(x + offset);
  P* out = reinterpret_cast<P*>(grad + offset);
  const unsigned n = run.nr * vecs_per_row.divisor;

  const acc_t m = stats[2 * run.v], inv_sum = exp_dev(-stats[2 * run.v + 1]);
  const acc_t gx = inv_sum * grad_coords[3 * run.v], gy = inv_sum * grad_coords[3 * run.v + 1],
              gz = inv_sum * grad_coords[3 * run.v + 2];
  const acc_t ex = coords[3 * run.v], ey = coords[3 * run.v + 1], ez = coords[3 * run.v + 2];

  for (unsigned k0 = threadIdx.x; k0 < n; k0 += kThreads * kUnroll) {
    P packs[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k < n) packs[u] = base[k];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const unsigned k = k0 + u * kThreads;
      if (k >= n) break;
      const auto rc = vecs_per_row.divmod(k);
      const auto dh = height.divmod(run.r0 + rc.div);
      const acc_t a = gx * (acc_t(rc.mod * VEC) - ex) + gy * (acc_t(dh.mod) - ey) +
                      gz * (acc_t(dh.div) - ez);
      P g;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const acc_t e = exp_dev(static_cast<acc_t>(packs[u].v[j]) - m);
        g.v[j] = static_cast<scalar_t>(e * (a + gx * acc_t(j)));
      }
      out[k] = g;
    }
  }
}

// How a [V, D, H, W] tensor is cut into blocks.
struct Launch {
  unsigned splits, rows, rows_per_split;
  int64_t blocks;
};

Launch plan(int64_t volumes, int64_t D, int64_t H, int64_t W) {
  const int64_t rows = D * H;
  TORCH_CHECK_VALUE(rows * W < (int64_t{1} << 31) && volumes < (int64_t{1} << 31),
                    "soft_argmax_3d: CUDA kernels take volumes of under 2^31 logits and under "
                    "2^31 of them, got ", volumes, " volumes of ", rows * W);
  int sms = 0;  // ATen/cuda/CUDAContext.h would give it too, but needs the cuSPARSE headers
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
                                        c10::cuda::current_device()));
  const int64_t min_rows = (kMinBlockElements + W - 1) / W;
  int64_t splits = (int64_t{sms} * kBlocksPerSM + volumes - 1) / volumes;
  splits = std::max<int64_t>(1, std::min(splits, (rows + min_rows - 1) / min_rows));
  const int64_t rows_per_split = (rows + splits - 1) / splits;
  splits = (rows + rows_per_split - 1) / rows_per_split;
  return {static_cast<unsigned>(splits), static_cast<unsigned>(rows),
          static_cast<unsigned>(rows_per_split), volumes * splits};
}

// 16-byte packs when rows are whole packs and the base address allows it, else scalars.
template <typename scalar_t>
constexpr int kVec = 16 / sizeof(scalar_t);

template <typename scalar_t>
bool can_vectorise(int64_t W, std::initializer_list<const void*> ptrs) {
  if (W % kVec<scalar_t> != 0) return false;
  for (const void* p : ptrs) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& heatmaps) {
  check_heatmaps(heatmaps, "soft_argmax_3d_forward");
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor x = heatmaps.contiguous();
  const int64_t B = x.size(0), J = x.size(1), D = x.size(2), H = x.size(3), W = x.size(4);
  const auto opts = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor coords = at::empty({B, J, 3}, opts), stats = at::empty({B, J, 2}, opts);
  const Launch l = plan(B * J, D, H, W);
  at::Tensor partials = at::empty({l.blocks, 5}, opts);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    auto* pp = reinterpret_cast<Partial<acc_t>*>(partials.mutable_data_ptr<acc_t>());
    if (can_vectorise<scalar_t>(W, {xp})) {
      constexpr int V = kVec<scalar_t>;
      forward_partial_kernel<scalar_t, V><<<l.blocks, kThreads, 0, stream>>>(
          xp, pp, l.splits, l.rows, l.rows_per_split, Divider(W / V), Divider(H));
    } else {
      forward_partial_kernel<scalar_t, 1><<<l.blocks, kThreads, 0, stream>>>(
          xp, pp, l.splits, l.rows, l.rows_per_split, Divider(W), Divider(H));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t volumes = B * J;
    forward_finalize_kernel<acc_t><<<(volumes + 127) / 128, 128, 0, stream>>>(
        pp, l.splits, volumes, coords.mutable_data_ptr<acc_t>(),
        stats.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {coords, stats};
}

at::Tensor backward_cuda(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                         const at::Tensor& coords, const at::Tensor& stats) {
  check_backward_inputs(grad_coords, heatmaps, coords, stats);
  const c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor x = heatmaps.contiguous();
  const int64_t B = x.size(0), J = x.size(1), D = x.size(2), H = x.size(3), W = x.size(4);
  const auto acc = stats_dtype(x.scalar_type());
  const at::Tensor g = grad_coords.to(acc).contiguous(), c = coords.to(acc).contiguous(),
                   st = stats.to(acc).contiguous();
  at::Tensor grad = at::empty_like(x, at::MemoryFormat::Contiguous);
  const Launch l = plan(B * J, D, H, W);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
    const acc_t *gc = g.const_data_ptr<acc_t>(), *cc = c.const_data_ptr<acc_t>(),
                *sc = st.const_data_ptr<acc_t>();
    if (can_vectorise<scalar_t>(W, {xp, gp})) {
      constexpr int V = kVec<scalar_t>;
      backward_kernel<scalar_t, V><<<l.blocks, kThreads, 0, stream>>>(
          xp, gp, gc, cc, sc, l.splits, l.rows, l.rows_per_split, Divider(W / V), Divider(H));
    } else {
      backward_kernel<scalar_t, 1><<<l.blocks, kThreads, 0, stream>>>(
          xp, gp, gc, cc, sc, l.splits, l.rows, l.rows_per_split, Divider(W), Divider(H));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

}  // namespace
}  // namespace pose3d::soft_argmax

TORCH_LIBRARY_IMPL(pose3d, CUDA, m) {
  m.impl("soft_argmax_3d_forward", &pose3d::soft_argmax::forward_cuda);
  m.impl("soft_argmax_3d_backward", &pose3d::soft_argmax::backward_cuda);
}
