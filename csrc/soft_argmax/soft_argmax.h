// soft_argmax_3d: input checks and dtype rules shared by the CPU and CUDA kernels.
//
// Shapes: heatmaps [B, J, D, H, W] (logits), coords [B, J, 3] = expected (x, y, z) voxel
// indices along (W, H, D), stats [B, J, 2] = (max, log(sum exp(logit - max))) per volume.
// coords and stats are float32 for float32/float16/bfloat16 logits and float64 for float64.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

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
