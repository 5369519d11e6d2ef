// soft_argmax_3d: input checks, dtype rules and the walk over the logits in memory, shared by
// the CPU and CUDA kernels.
//
// Shapes: heatmaps [B, J, D, H, W] (logits), coords [B, J, 3] = expected (x, y, z) voxel
// indices along (W, H, D), stats [B, J, 2] = (max, log(sum exp(logit - max))) per volume.
// coords and stats are float32 for float32/float16/bfloat16 logits and float64 for float64.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

namespace pose3d::soft_argmax {

inline bool is_supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Accumulation and output dtype: float64 stays float64, everything else is float32, since
// coordinates up to ~95 in bfloat16 would be off by up to a quarter voxel.
inline at::ScalarType stats_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_heatmaps(const at::Tensor& heatmaps, const char* op) {
  TORCH_CHECK_VALUE(heatmaps.dim() == 5, op, ": heatmaps must be [B, J, D, H, W], got ",
                    heatmaps.dim(), " dims with shape ", heatmaps.sizes());
  TORCH_CHECK_VALUE(heatmaps.numel() > 0, op, ": heatmaps is empty, shape ", heatmaps.sizes());
  TORCH_CHECK_TYPE(is_supported_dtype(heatmaps.scalar_type()), op,
                   ": heatmaps must be float32, float64, float16 or bfloat16, got ",
                   heatmaps.scalar_type());
}

// How the kernels walk the logits in memory. Soft-argmax treats the three volume axes alike,
// so the kernels take them in the order of their strides: rows of n0 logits along the axis
// of unit stride (inner), n1 rows along the middle axis, n2 groups of rows along the outer
// one. Contiguous [B, J, D, H, W] logits give inner = W, middle = H, outer = D; the
// single-view model's channels_last heatmaps ([N, J*D, h, w] with channels fastest, viewed
// as [N, J, D, h, w]) give inner = D, middle = w, outer = h, and are read where they are.
struct Walk {
  int64_t n0, n1, n2;       // sizes of the inner, middle and outer axis
  int64_t s1, s2;           // strides of the middle and outer axis, in logits
  int64_t sb, sj;           // strides of B and J, in logits
  int64_t J;
  std::array<int, 3> axis;  // the coordinate (0 = x along W, 1 = y along H, 2 = z along D)
                            // of the inner, middle and outer axis
};

// The volume axes (tensor dims 2, 3, 4) by increasing stride; axes of size 1, whose stride
// means nothing, last; W before H before D among equals, so that contiguous logits give W, H, D.
inline std::array<int64_t, 3> axes_by_stride(const at::Tensor& x) {
  std::array<int64_t, 3> dims{4, 3, 2};
  std::stable_sort(dims.begin(), dims.end(), [&](int64_t a, int64_t b) {
    const bool ua = x.size(a) == 1, ub = x.size(b) == 1;
    return ua != ub ? ub : x.stride(a) < x.stride(b);
  });
  return dims;
}

// Whether the kernels read x where it is: its memory is one dense block (so that a gradient
// of the same strides can be allocated, see empty_like) and one volume axis has unit stride.
// Mirrored by pose3d/ops/soft_argmax.py (_reads_in_place) for the fake kernels.
inline bool reads_in_place(const at::Tensor& x) {
  const int64_t inner = axes_by_stride(x)[0];
  return x.is_non_overlapping_and_dense() && (x.size(inner) == 1 || x.stride(inner) == 1);
}

// The logits as the kernels read them: x itself, or a contiguous copy where they cannot.
inline at::Tensor readable(const at::Tensor& x) {
  return reads_in_place(x) ? x : x.contiguous();
}

// The walk over x, which must satisfy reads_in_place.
// Strides of dims of size 1 are 0 here: their index is always 0, and any stride they carry
// must not stop the CUDA kernels' 16-byte loads.
inline Walk walk_of(const at::Tensor& x) {
  const auto d = axes_by_stride(x);
  const auto stride = [&](int64_t dim) { return x.size(dim) == 1 ? 0 : x.stride(dim); };
  return {x.size(d[0]), x.size(d[1]), x.size(d[2]), stride(d[1]), stride(d[2]),
          stride(0), stride(1), x.size(1),
          {static_cast<int>(4 - d[0]), static_cast<int>(4 - d[1]), static_cast<int>(4 - d[2])}};
}

// The gradient of the logits, in the layout the fake kernel promises (empty_like(heatmaps):
// the logits' own strides when they are dense), and the tensor the kernels write: the same
// one when x (readable(heatmaps)) has those strides, else a scratch tensor in x's layout that
// the caller copies into grad afterwards (only for layouts that were copied anyway).
inline std::pair<at::Tensor, at::Tensor> gradient_and_target(const at::Tensor& heatmaps,
                                                             const at::Tensor& x) {
  at::Tensor grad = at::empty_like(heatmaps);
  if (grad.strides() == x.strides()) return {grad, grad};
  return {grad, at::empty_like(x)};
}

inline void check_backward_inputs(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                                  const at::Tensor& coords, const at::Tensor& stats) {
  constexpr const char* op = "soft_argmax_3d_backward";
  check_heatmaps(heatmaps, op);
  const auto B = heatmaps.size(0), J = heatmaps.size(1);
  TORCH_CHECK_VALUE(grad_coords.sizes() == at::IntArrayRef({B, J, 3}), op,
                    ": grad_coords must be [B, J, 3] = [", B, ", ", J, ", 3], got ",
                    grad_coords.sizes());
  TORCH_CHECK_VALUE(coords.sizes() == at::IntArrayRef({B, J, 3}), op,
                    ": coords must be [B, J, 3], got ", coords.sizes());
  TORCH_CHECK_VALUE(stats.sizes() == at::IntArrayRef({B, J, 2}), op,
                    ": stats must be [B, J, 2], got ", stats.sizes());
  for (const at::Tensor* t : {&grad_coords, &coords, &stats}) {
    TORCH_CHECK_TYPE(at::isFloatingType(t->scalar_type()), op,
                     ": grad_coords, coords and stats must be floating point, got ",
                     t->scalar_type());
    TORCH_CHECK_VALUE(t->device() == heatmaps.device(), op,
                      ": all inputs must be on the device of heatmaps (", heatmaps.device(),
                      "), got ", t->device());
  }
}

}  // namespace pose3d::soft_argmax
