// Declarations shared by the CPU (triangulate.cpp) and CUDA (triangulate_cuda.cu) kernels.
#pragma once

#include <ATen/core/Tensor.h>

namespace pose3d {

// Checks shapes, dtypes and devices; returns {B, V, J}. Raises (TORCH_CHECK) naming the
// offending argument.
std::array<int64_t, 3> triangulate_check_inputs(const at::Tensor& points2d, const at::Tensor& proj,
                                                const at::Tensor& confidences);

// Checks grad_points3d against the inputs' {B, V, J}.
void triangulate_check_grad(const at::Tensor& grad_points3d, const at::Tensor& points2d,
                            const std::array<int64_t, 3>& sizes);

}  // namespace pose3d
