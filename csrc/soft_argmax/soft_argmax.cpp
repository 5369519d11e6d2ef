// soft_argmax_3d: op schemas, the public composite ops and the CPU kernels.
//
// Forward reads each [D, H, W] logit volume once, where it lies (see Walk in soft_argmax.h:
// channels_last heatmaps are not copied): it walks the volume in chunks of rows and,
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
#include <array>
#include <cstring>
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
  // memcpy, not std::bit_cast: the extension must build as C++17 (torch 2.11 compiles so)
  uint32_t bits;
  std::memcpy(&bits, &y, sizeof bits);
  bits = (bits - (0x4B400000u - 127u)) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
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

// Calls fn(off, o, r0, nr) for each chunk of a volume walked by w: rows r0 .. r0 + nr - 1
// of the middle axis at outer index o, the first at logit offset off. A chunk stays within
// one outer index, so that every logit of a chunk has the same outer coordinate o and middle
// coordinate r0 + its row.
template <typename Fn>
void for_each_chunk(const Walk& w, int64_t chunk_rows, Fn&& fn) {
  for (int64_t o = 0; o < w.n2; ++o) {
    for (int64_t r0 = 0; r0 < w.n1; r0 += chunk_rows) {
      fn(o * w.s2 + r0 * w.s1, o, r0, std::min(chunk_rows, w.n1 - r0));
    }
  }
}

// Whether the nr rows of a chunk lie back to back in memory.
inline bool dense_rows(const Walk& w, int64_t nr) { return nr == 1 || w.s1 == w.n0; }

// The chunk at x + off as nr * n0 acc_t: the logits themselves when they already are and lie
// back to back, else gathered and converted into buf.
template <typename scalar_t, typename acc_t>
const acc_t* load_chunk(const scalar_t* x, const Walk& w, int64_t nr, std::vector<acc_t>& buf) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (dense_rows(w, nr)) return x;
  }
  buf.resize(nr * w.n0);
  for (int64_t r = 0; r < nr; ++r) {
    const scalar_t* src = x + r * w.s1;
    acc_t* dst = buf.data() + r * w.n0;
    for (int64_t i = 0; i < w.n0; ++i) dst[i] = static_cast<acc_t>(src[i]);
  }
  return buf.data();
}

// Writes nr * n0 gradients from src (back to back) to the chunk's place at grad + off.
template <typename scalar_t, typename acc_t>
void store_chunk(const acc_t* src, scalar_t* grad, const Walk& w, int64_t nr) {
  for (int64_t r = 0; r < nr; ++r) {
    scalar_t* dst = grad + r * w.s1;
    const acc_t* row = src + r * w.n0;
    for (int64_t i = 0; i < w.n0; ++i) dst[i] = static_cast<scalar_t>(row[i]);
  }
}

// Per-volume constants of the backward: p = exp(logit - max) * inv_sum and
// grad_logit = p * sum_k g_k (coordinate_k - E_k), with k = inner, middle, outer axis.
template <typename T>
struct GradTerms {
  T max, inv_sum;
  std::array<T, 3> g, e;  // per walk axis
};

template <typename T>
constexpr T kMinusInf = -std::numeric_limits<T>::infinity();

template <typename scalar_t>
void forward_volume(const scalar_t* x, const Walk& w,
                    const ChunkLayout<at::opmath_type<scalar_t>>& layout,
                    at::opmath_type<scalar_t>* coords, at::opmath_type<scalar_t>* stats,
                    std::vector<at::opmath_type<scalar_t>>& buf) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t *col = layout.col.data(), *row = layout.row.data();
  // Running max and the sums relative to it (total and first moments along the inner,
  // middle and outer axis), in double: a 96^3 volume adds ~500 chunks.
  double m = kMinusInf<double>, s = 0, s0 = 0, s1 = 0, s2 = 0;
  auto rescale = [&](double new_max) {
    const double g = std::exp(m - new_max);  // 0 while m is -inf (NaN sums stay NaN)
    s *= g, s0 *= g, s1 *= g, s2 *= g;
    m = new_max;
  };
  for_each_chunk(w, layout.rows, [&](int64_t off, int64_t o, int64_t r0, int64_t nr) {
    const int64_t n = nr * w.n0;
    const acc_t* chunk = load_chunk(x + off, w, nr, buf);
    acc_t ref = static_cast<acc_t>(m);
    if (m == kMinusInf<double>) {
      ref = chunk_max(chunk, n);  // NaN is skipped by the max; it reaches the sums below
      if (ref == kMinusInf<acc_t>) {
        // No finite logit so far nor here: the -inf logits have no mass (exp(-inf - -inf)
        // would be NaN), but a NaN logit must still make the result NaN.
        if (std::any_of(chunk, chunk + n, [](acc_t v) { return std::isnan(v); })) {
          s = s0 = s1 = s2 = std::numeric_limits<double>::quiet_NaN();
        }
        return;
      }
    }
    Moments<acc_t> c = chunk_moments(chunk, col, row, n, ref);
    if (!(c.max <= ref + kHeadroom)) {
      ref = c.max;
      c = chunk_moments(chunk, col, row, n, ref);
    }
    if (ref > m) rescale(ref);  // the chunk sums are relative to ref, which is now >= m
    const double f = std::exp(ref - m), cs = f * c.sum;
    s += cs;
    s0 += f * c.scol;
    s1 += r0 * cs + f * c.srow;
    s2 += o * cs;
    if (c.max > m) rescale(c.max);
  });
  // A volume without a finite logit has no mass: 0 / 0 = NaN, as the eager softmax gives.
  coords[w.axis[0]] = static_cast<acc_t>(s0 / s);
  coords[w.axis[1]] = static_cast<acc_t>(s1 / s);
  coords[w.axis[2]] = static_cast<acc_t>(s2 / s);
  stats[0] = static_cast<acc_t>(m);
  stats[1] = static_cast<acc_t>(std::log(s));
}

template <typename scalar_t>
void backward_volume(const scalar_t* x, scalar_t* grad, const Walk& w,
                     const ChunkLayout<at::opmath_type<scalar_t>>& layout,
                     const GradTerms<at::opmath_type<scalar_t>>& t,
                     std::vector<at::opmath_type<scalar_t>>& in_buf,
                     std::vector<at::opmath_type<scalar_t>>& out_buf) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t b = t.inv_sum * t.g[0], c = t.inv_sum * t.g[1];
  const acc_t *col = layout.col.data(), *row = layout.row.data();
  for_each_chunk(w, layout.rows, [&](int64_t off, int64_t o, int64_t r0, int64_t nr) {
    const int64_t n = nr * w.n0;
    // a + b col + c row = inv_sum sum_k g_k (coordinate_k - E_k) on this chunk
    const acc_t a =
        t.inv_sum * (t.g[1] * (r0 - t.e[1]) + t.g[2] * (o - t.e[2]) - t.g[0] * t.e[0]);
    const acc_t* chunk = load_chunk(x + off, w, nr, in_buf);
    acc_t* out = nullptr;  // where the gradient can be written in place
    if constexpr (std::is_same_v<scalar_t, acc_t>) {
      if (dense_rows(w, nr)) out = grad + off;
    }
    if (out != nullptr) {
      chunk_grad(chunk, out, col, row, n, t.max, a, b, c);
    } else {
      out_buf.resize(n);
      chunk_grad(chunk, out_buf.data(), col, row, n, t.max, a, b, c);
      store_chunk(out_buf.data(), grad + off, w, nr);
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
  const at::Tensor x = readable(heatmaps);
  const Walk w = walk_of(x);
  const int64_t B = x.size(0), J = x.size(1);
  const auto opts = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor coords = at::empty({B, J, 3}, opts), stats = at::empty({B, J, 2}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    acc_t* cp = coords.mutable_data_ptr<acc_t>();
    acc_t* sp = stats.mutable_data_ptr<acc_t>();
    at::parallel_for(0, B * J, 1, [&](int64_t v0, int64_t v1) {
      const ChunkLayout<acc_t> layout(w.n0);
      std::vector<acc_t> buf;
      for (int64_t v = v0; v < v1; ++v) {
        const int64_t off = v / J * w.sb + v % J * w.sj;
        forward_volume(xp + off, w, layout, cp + 3 * v, sp + 2 * v, buf);
      }
    });
  });
  return {coords, stats};
}

at::Tensor backward_cpu(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                        const at::Tensor& coords, const at::Tensor& stats) {
  check_backward_inputs(grad_coords, heatmaps, coords, stats);
  const at::Tensor x = readable(heatmaps);
  const Walk w = walk_of(x);
  const int64_t B = x.size(0), J = x.size(1);
  const auto acc = stats_dtype(x.scalar_type());
  const at::Tensor g = grad_coords.to(acc).contiguous(), c = coords.to(acc).contiguous(),
                   st = stats.to(acc).contiguous();
  const auto grads = gradient_and_target(heatmaps, x);
  const at::Tensor &grad = grads.first, &target = grads.second;  // target has x's strides
  advise_huge_pages(target);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "soft_argmax_3d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gp = target.mutable_data_ptr<scalar_t>();
    const acc_t* gc = g.const_data_ptr<acc_t>();
    const acc_t* cc = c.const_data_ptr<acc_t>();
    const acc_t* sc = st.const_data_ptr<acc_t>();
    at::parallel_for(0, B * J, 1, [&](int64_t v0, int64_t v1) {
      const ChunkLayout<acc_t> layout(w.n0);
      std::vector<acc_t> in_buf, out_buf;
      for (int64_t v = v0; v < v1; ++v) {
        GradTerms<acc_t> terms{sc[2 * v], std::exp(-sc[2 * v + 1]), {}, {}};
        for (int k = 0; k < 3; ++k) {
          terms.g[k] = gc[3 * v + w.axis[k]];
          terms.e[k] = cc[3 * v + w.axis[k]];
        }
        const int64_t off = v / J * w.sb + v % J * w.sj;
        backward_volume(xp + off, gp + off, w, layout, terms, in_buf, out_buf);
      }
    });
  });
  if (!target.is_same(grad)) grad.copy_(target);
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
