// soft_argmax_3d: op schemas, the public composite ops and the CPU kernels.
//
// Forward reads each [D, H, W] logit volume once: it walks the volume in chunks of rows and,
// in one pass over a chunk, takes its max and sums exp(logit - running max) with the first
// moments along x, y, z, then folds the chunk into the running (max, sum, sx, sy, sz),
// rescaling when the max grows. Backward recomputes the
// probabilities from the logits and the saved (max, log sum); no probability volume is kept.
#include "soft_argmax.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// One binary for every x86-64 machine that still runs the hot loops 8 or 16 lanes wide
// where AVX2 / AVX-512 exist (the build flags only promise SSE2).
#define POSE3D_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define POSE3D_CPU_CLONES
#endif

#if defined(__GNUC__)
#define POSE3D_INLINE inline __attribute__((always_inline))
#else
#define POSE3D_INLINE inline
#endif

namespace pose3d::soft_argmax {
namespace {

// Rows of a volume are processed in chunks of about this many logits (8 KiB of float32),
// so that a chunk and its index tables (ChunkLayout) stay in L1 if a chunk must be redone.
constexpr int64_t kChunkElements = 2048;

// A chunk is summed relative to the running max of the chunks before it, in the same pass
// that finds its own max, as long as its max exceeds that reference by at most this much
// (exp(64) * 2048 * 96 stays far below FLT_MAX); else it is summed again relative to its
// own max. With ordinary logits that never happens, and each logit is read from memory once.
constexpr double kHeadroom = 64.0;

// exp(x) for x <= 88, in plain arithmetic so that loops calling it vectorise (std::exp does
// not without -ffast-math). Degree-6 Taylor polynomial on |r| <= ln2/2 after the usual range
// reduction: relative error about 2e-7. x is first raised to `floor` (kExpFloor, from
// exp_floor()): below it the result is exp(-87) ~ 1.6e-38 instead of 0, nothing next to the
// max's exp(0) = 1. NaN stays NaN.
constexpr float kExpFloor = -87.0f;

POSE3D_INLINE float exp_bounded(float x, float floor) {
  x = x < floor ? floor : x;
  // 1.5 * 2^23 + x / ln 2 rounds to an integer n that sits in the low bits of y
  const float y = x * 1.44269504f + 12582912.0f;
  const float n = y - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // x - n ln 2, in two parts
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n: exponent field n + 127, with bits(1.5 * 2^23) = 0x4B400000
  const uint32_t biased = std::bit_cast<uint32_t>(y) - (0x4B400000u - 127u);
  return p * std::bit_cast<float>(biased << 23);
}

POSE3D_INLINE double exp_bounded(double x, double /*floor*/) { return std::exp(x); }

// kExpFloor hidden from the optimiser. Were it a known constant, gcc would fold the whole of
// exp_bounded on the clamped path into a constant and branch to it, and a loop with a branch
// no longer vectorises on AVX2 or SSE2 (AVX-512 masks hid it).
template <typename T>
POSE3D_INLINE T exp_floor() {
  T floor = static_cast<T>(kExpFloor);
#if defined(__GNUC__) && defined(__x86_64__)
  asm("" : "+x"(floor));
#endif
  return floor;
}

// Column (x) and row-in-chunk indices of every logit of a chunk of rows, as T, so that the
// hot loops are flat, branch-free and vectorise without per-row reductions.
template <typename T>
struct ChunkLayout {
  int64_t W, rows;  // a chunk holds up to `rows` rows of W logits
  std::vector<T> col, row;

  explicit ChunkLayout(int64_t W_)
      : W(W_), rows(std::max<int64_t>(1, kChunkElements / W_)), col(rows * W), row(rows * W) {
    for (int64_t i = 0; i < rows * W; ++i) {
      col[i] = static_cast<T>(i % W);
      row[i] = static_cast<T>(i / W);
    }
  }
};

// The max of a chunk, and the sums of exp(logit - ref) over it and their moments along its
// columns and rows.
template <typename T>
struct Moments {
  T max, sum, scol, srow;
};

template <typename T>
POSE3D_INLINE Moments<T> chunk_moments_impl(const T* x, const T* col, const T* row, int64_t n,
                                            T ref) {
  T m = -std::numeric_limits<T>::infinity(), s = 0, sc = 0, sr = 0;
  const T floor = exp_floor<T>();
#pragma omp simd reduction(max : m) reduction(+ : s, sc, sr)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    const T e = exp_bounded(x[i] - ref, floor);
    s += e;
    sc += e * col[i];
    sr += e * row[i];
  }
  return {m, s, sc, sr};
}

template <typename T>
POSE3D_INLINE T chunk_max_impl(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

POSE3D_CPU_CLONES Moments<float> chunk_moments(const float* x, const float* col,
                                               const float* row, int64_t n, float ref) {
  return chunk_moments_impl(x, col, row, n, ref);
}

Moments<double> chunk_moments(const double* x, const double* col, const double* row, int64_t n,
                              double ref) {
  return chunk_moments_impl(x, col, row, n, ref);
}

POSE3D_CPU_CLONES float chunk_max(const float* x, int64_t n) { return chunk_max_impl(x, n); }

double chunk_max(const double* x, int64_t n) { return chunk_max_impl(x, n); }

// grad = exp(logit - max) * (a + b col + c row): the backward of one chunk, with the chunk's
// constants folded into a, b, c by backward_volume.
template <typename T>
POSE3D_INLINE void chunk_grad_impl(const T* x, T* grad, const T* col, const T* row, int64_t n,
                                   T max, T a, T b, T c) {
  const T floor = exp_floor<T>();
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    grad[i] = exp_bounded(x[i] - max, floor) * (a + b * col[i] + c * row[i]);
  }
}

POSE3D_CPU_CLONES void chunk_grad(const float* x, float* grad, const float* col,
                                  const float* row, int64_t n, float max, float a, float b,
                                  float c) {
  chunk_grad_impl(x, grad, col, row, n, max, a, b, c);
}

void chunk_grad(const double* x, double* grad, const double* col, const double* row, int64_t n,
                double max, double a, double b, double c) {
  chunk_grad_impl(x, grad, col, row, n, max, a, b, c);
}

// The chunk as acc_t: the logits themselves when they already are, else converted into buf.
template <typename scalar_t, typename acc_t>
const acc_t* as_acc(const scalar_t* src, int64_t n, std::vector<acc_t>& buf) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return src;
  } else {
    buf.resize(n);
    for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<acc_t>(src[i]);
    return buf.data();
  }
}

// Calls fn(offset, d, h0, rows) for each chunk of a [D, H, W] volume; chunks stay within one
// depth plane so that every logit of a chunk has the same z and y = h0 + its row.
template <typename Fn>
void for_each_chunk(int64_t D, int64_t H, int64_t W, int64_t chunk_rows, Fn&& fn) {
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t h0 = 0; h0 < H; h0 += chunk_rows) {
      fn((d * H + h0) * W, d, h0, std::min(chunk_rows, H - h0));
    }
  }
}

// Per-volume constants of the backward: p = exp(logit - max) * inv_sum and
// grad_logit = p * (gx (x - Ex) + gy (y - Ey) + gz (z - Ez)).
template <typename T>
struct GradTerms {
  T max, inv_sum, gx, gy, gz, ex, ey, ez;
};

template <typename scalar_t>
void forward_volume(const scalar_t* x, int64_t D, int64_t H,
                    const ChunkLayout<at::opmath_type<scalar_t>>& layout,
                    at::opmath_type<scalar_t>* coords, at::opmath_type<scalar_t>* stats,
                    std::vector<at::opmath_type<scalar_t>>& buf) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t W = layout.W;
  const acc_t *col = layout.col.data(), *row = layout.row.data();
  // Running max and the sums relative to it, in double: a 96^3 volume adds ~500 chunks.
  double m = -std::numeric_limits<double>::infinity(), s = 0, sx = 0, sy = 0, sz = 0;
  auto rescale = [&](double new_max) {
    const double g = std::exp(m - new_max);  // 0 while m is -inf
    s *= g, sx *= g, sy *= g, sz *= g;
    m = new_max;
  };
  for_each_chunk(D, H, W, layout.rows, [&](int64_t off, int64_t d, int64_t h0, int64_t nr) {
    const int64_t n = nr * W;
    const acc_t* chunk = as_acc(x + off, n, buf);
    acc_t ref = m == -std::numeric_limits<double>::infinity() ? chunk_max(chunk, n)
                                                              : static_cast<acc_t>(m);
    Moments<acc_t> c = chunk_moments(chunk, col, row, n, ref);
    if (!(c.max <= ref + kHeadroom)) {  // also taken for NaN, which then reaches the result
      ref = c.max;
      c = chunk_moments(chunk, col, row, n, ref);
    }
    if (ref > m) rescale(ref);  // the chunk sums are relative to ref, which is now >= m
    const double f = std::exp(ref - m), cs = f * c.sum;
    s += cs;
    sx += f * c.scol;
    sy += h0 * cs + f * c.srow;
    sz += d * cs;
    if (c.max > m) rescale(c.max);
  });
  coords[0] = static_cast<acc_t>(sx / s);
  coords[1] = static_cast<acc_t>(sy / s);
  coords[2] = static_cast<acc_t>(sz / s);
  stats[0] = static_cast<acc_t>(m);
  stats[1] = static_cast<acc_t>(std::log(s));
}

template <typename scalar_t>
void backward_volume(const scalar_t* x, scalar_t* grad, int64_t D, int64_t H,
                     const ChunkLayout<at::opmath_type<scalar_t>>& layout,
                     const GradTerms<at::opmath_type<scalar_t>>& t,
                     std::vector<at::opmath_type<scalar_t>>& in_buf,
                     std::vector<at::opmath_type<scalar_t>>& out_buf) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t W = layout.W;
  const acc_t b = t.inv_sum * t.gx, c = t.inv_sum * t.gy;
  for_each_chunk(D, H, W, layout.rows, [&](int64_t off, int64_t d, int64_t h0, int64_t nr) {
    const int64_t n = nr * W;
    // a + b col + c row = inv_sum (gx (x - Ex) + gy (y - Ey) + gz (z - Ez)) on this chunk
    const acc_t a = t.inv_sum * (t.gy * (h0 - t.ey) + t.gz * (d - t.ez) - t.gx * t.ex);
    const acc_t* chunk = as_acc(x + off, n, in_buf);
    const acc_t *col = layout.col.data(), *row = layout.row.data();
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      chunk_grad(chunk, grad + off, col, row, n, t.max, a, b, c);
    } else {
      out_buf.resize(n);
      chunk_grad(chunk, out_buf.data(), col, row, n, t.max, a, b, c);
      for (int64_t i = 0; i < n; ++i) grad[off + i] = static_cast<scalar_t>(out_buf[i]);
    }
  });
}

// The gradient is as large as the logits and is written once, straight after allocation.
// Fresh allocations that size are new mmap pages, and on 4 KiB pages the page faults cost
// more than the backward's arithmetic (4x more on the 2-core VM we measured); ask for
// transparent huge pages. A hint only: where it is refused nothing changes.
void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = t.nbytes();
  if (bytes < (size_t{8} << 20)) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t begin = (p + page - 1) / page * page, end = (p + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& heatmaps) {
  check_heatmaps(heatmaps, "soft_argmax_3d_forward");
  const at::Tensor x = heatmaps.contiguous();
  const int64_t B = x.size(0), J = x.size(1), D = x.size(2), H = x.size(3), W = x.size(4);
  const auto opts = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor coords = at::empty({B, J, 3}, opts), stats = at::empty({B, J, 2}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    acc_t* cp = coords.mutable_data_ptr<acc_t>();
    acc_t* sp = stats.mutable_data_ptr<acc_t>();
    at::parallel_for(0, B * J, 1, [&](int64_t v0, int64_t v1) {
      const ChunkLayout<acc_t> layout(W);
      std::vector<acc_t> buf;
      for (int64_t v = v0; v < v1; ++v) {
        forward_volume(xp + v * D * H * W, D, H, layout, cp + 3 * v, sp + 2 * v, buf);
      }
    });
  });
  return {coords, stats};
}

at::Tensor backward_cpu(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                        const at::Tensor& coords, const at::Tensor& stats) {
  check_backward_inputs(grad_coords, heatmaps, coords, stats);
  const at::Tensor x = heatmaps.contiguous();
  const int64_t B = x.size(0), J = x.size(1), D = x.size(2), H = x.size(3), W = x.size(4);
  const auto acc = stats_dtype(x.scalar_type());
  const at::Tensor g = grad_coords.to(acc).contiguous(), c = coords.to(acc).contiguous(),
                   st = stats.to(acc).contiguous();
  at::Tensor grad = at::empty_like(x, at::MemoryFormat::Contiguous);
  advise_huge_pages(grad);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
    const acc_t* gc = g.const_data_ptr<acc_t>();
    const acc_t* cc = c.const_data_ptr<acc_t>();
    const acc_t* sc = st.const_data_ptr<acc_t>();
    at::parallel_for(0, B * J, 1, [&](int64_t v0, int64_t v1) {
      const ChunkLayout<acc_t> layout(W);
      std::vector<acc_t> in_buf, out_buf;
      for (int64_t v = v0; v < v1; ++v) {
        const GradTerms<acc_t> terms{sc[2 * v],     std::exp(-sc[2 * v + 1]),
                                     gc[3 * v],     gc[3 * v + 1],
                                     gc[3 * v + 2], cc[3 * v],
                                     cc[3 * v + 1], cc[3 * v + 2]};
        const int64_t off = v * D * H * W;
        backward_volume(xp + off, gp + off, D, H, layout, terms, in_buf, out_buf);
      }
    });
  });
  return grad;
}

// The public ops are composites of the forward op, so autograd, fake tensors and autocast
// all go through soft_argmax_3d_forward, whose autograd and fake kernels live in
// pose3d/ops/soft_argmax.py.
at::Tensor soft_argmax_3d(const at::Tensor& heatmaps) {
  static const auto forward =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("pose3d::soft_argmax_3d_forward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&)>();
  return std::get<0>(forward.call(heatmaps));
}

at::Tensor soft_argmax_2d(const at::Tensor& heatmaps) {
  TORCH_CHECK_VALUE(heatmaps.dim() == 4, "soft_argmax_2d: heatmaps must be [B, J, H, W], got ",
                    heatmaps.dim(), " dims with shape ", heatmaps.sizes());
  return soft_argmax_3d(heatmaps.unsqueeze(2)).narrow(-1, 0, 2);
}

}  // namespace
}  // namespace pose3d::soft_argmax

TORCH_LIBRARY_FRAGMENT(pose3d, m) {
  m.def("soft_argmax_3d_forward(Tensor heatmaps) -> (Tensor coords, Tensor stats)");
  m.def(
      "soft_argmax_3d_backward(Tensor grad_coords, Tensor heatmaps, Tensor coords, "
      "Tensor stats) -> Tensor");
  m.def("soft_argmax_3d(Tensor heatmaps) -> Tensor");
  m.def("soft_argmax_2d(Tensor heatmaps) -> Tensor");
}

TORCH_LIBRARY_IMPL(pose3d, CPU, m) {
  m.impl("soft_argmax_3d_forward", &pose3d::soft_argmax::forward_cpu);
  m.impl("soft_argmax_3d_backward", &pose3d::soft_argmax::backward_cpu);
}

TORCH_LIBRARY_IMPL(pose3d, CompositeImplicitAutograd, m) {
  m.impl("soft_argmax_3d", &pose3d::soft_argmax::soft_argmax_3d);
  m.impl("soft_argmax_2d", &pose3d::soft_argmax::soft_argmax_2d);
}
