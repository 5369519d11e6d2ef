// CUDA kernels of the `triangulate` op: one thread per problem (tuple b, joint j), all in
// registers, fp32 for float inputs. The per-problem arithmetic is in triangulate_math.h.
// Compiled without --use_fast_math (see setup.py): IEEE divide, reciprocal and sqrt and
// denormals kept, so that a problem gets the CPU's arithmetic (up to FMA contraction) and the
// same validity decisions at the thresholds.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "triangulate.h"
#include "triangulate_math.h"

namespace pose3d {
namespace {

constexpr int kThreads = 128;

template <typename S>
__device__ __forceinline__ tri::ProblemInput<S> problem_input(const S* pts, const S* proj,
                                                             const S* conf, int64_t b,
                                                             int64_t j, int V, int64_t J) {
  return {pts + (b * V * J + j) * 2, proj + b * V * 12, conf + b * V * J + j, 2 * J, J, V};
}

template <typename S>
__global__ void __launch_bounds__(kThreads)
    triangulate_kernel(const S* __restrict__ pts, const S* __restrict__ proj,
                       const S* __restrict__ conf, S* __restrict__ out, bool* __restrict__ valid,
                       int64_t B, int V, int64_t J) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= B * J) return;
  const int64_t b = idx / J, j = idx - b * J;
  const tri::ProblemInput<S> in = problem_input(pts, proj, conf, b, j, V, J);
  const tri::CentresFromProj<S, S> centres{in.proj};
  const tri::Solution<S> sol = tri::solve<S, S>(in, centres);
  out[idx * 3 + 0] = sol.point[0];
  out[idx * 3 + 1] = sol.point[1];
  out[idx * 3 + 2] = sol.point[2];
  valid[idx] = sol.valid;
}

// grad_proj of each problem goes to its own slice of `proj_partial` [B, J, V, 12]; the sum
// over J is a deterministic reduction afterwards (no atomics).
template <typename S>
__global__ void __launch_bounds__(kThreads)
    triangulate_backward_kernel(const S* __restrict__ grad, const S* __restrict__ pts,
                                const S* __restrict__ proj, const S* __restrict__ conf,
                                S* __restrict__ grad_pts, S* __restrict__ proj_partial,
                                S* __restrict__ grad_conf, int64_t B, int V, int64_t J) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= B * J) return;
  const int64_t b = idx / J, j = idx - b * J;
  const tri::ProblemInput<S> in = problem_input(pts, proj, conf, b, j, V, J);
  const tri::CentresFromProj<S, S> centres{in.proj};
  const tri::ProblemGrads<S, S> out{grad_pts + (b * V * J + j) * 2, proj_partial + idx * V * 12,
                                    grad_conf + b * V * J + j, 2 * J, J};
  tri::solve_backward<false, S, S>(in, centres, tri::solve<S, S>(in, centres), grad + idx * 3,
                                   out);
}

int64_t blocks_for(int64_t problems) {
  const int64_t blocks = (problems + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks < (int64_t(1) << 31), "triangulate: too many problems for one launch");
  return blocks;
}

std::tuple<at::Tensor, at::Tensor> triangulate_cuda(const at::Tensor& points2d_in,
                                                    const at::Tensor& proj_in,
                                                    const at::Tensor& confidences_in) {
  // Named, not a structured binding: lambdas capture those only from C++20 on, and the
  // extension builds as C++17 where torch asks for it (torch 2.11).
  const auto sizes = triangulate_check_inputs(points2d_in, proj_in, confidences_in);
  const int64_t B = sizes[0], V = sizes[1], J = sizes[2];
  TORCH_CHECK(points2d_in.is_cuda(), "triangulate_cuda: inputs must be on a CUDA device");
  const c10::cuda::CUDAGuard guard(points2d_in.device());
  const at::Tensor points2d = points2d_in.contiguous(), proj = proj_in.contiguous(),
                   confidences = confidences_in.contiguous();
  at::Tensor points3d = at::empty({B, J, 3}, points2d.options());
  at::Tensor valid = at::empty({B, J}, points2d.options().dtype(at::kBool));
  if (B * J == 0) return {points3d, valid};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points2d.scalar_type(), "triangulate_cuda", [&] {
    triangulate_kernel<scalar_t><<<blocks_for(B * J), kThreads, 0, stream>>>(
        points2d.const_data_ptr<scalar_t>(), proj.const_data_ptr<scalar_t>(),
        confidences.const_data_ptr<scalar_t>(), points3d.mutable_data_ptr<scalar_t>(),
        valid.mutable_data_ptr<bool>(), B, static_cast<int>(V), J);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {points3d, valid};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> triangulate_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& points2d_in, const at::Tensor& proj_in,
    const at::Tensor& confidences_in) {
  const auto sizes = triangulate_check_inputs(points2d_in, proj_in, confidences_in);
  const int64_t B = sizes[0], V = sizes[1], J = sizes[2];
  triangulate_check_grad(grad_in, points2d_in, sizes);
  TORCH_CHECK(points2d_in.is_cuda(), "triangulate_backward_cuda: inputs must be on a CUDA device");
  const c10::cuda::CUDAGuard guard(points2d_in.device());
  const at::Tensor grad = grad_in.contiguous(), points2d = points2d_in.contiguous(),
                   proj = proj_in.contiguous(), confidences = confidences_in.contiguous();
  at::Tensor grad_points2d = at::empty_like(points2d);
  at::Tensor grad_confidences = at::empty_like(confidences);
  if (B * J == 0) {
    grad_points2d.zero_();
    grad_confidences.zero_();
    return {grad_points2d, at::zeros_like(proj), grad_confidences};
  }
  at::Tensor proj_partial = at::empty({B, J, V, 3, 4}, proj.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(points2d.scalar_type(), "triangulate_backward_cuda", [&] {
    triangulate_backward_kernel<scalar_t><<<blocks_for(B * J), kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), points2d.const_data_ptr<scalar_t>(),
        proj.const_data_ptr<scalar_t>(), confidences.const_data_ptr<scalar_t>(),
        grad_points2d.mutable_data_ptr<scalar_t>(), proj_partial.mutable_data_ptr<scalar_t>(),
        grad_confidences.mutable_data_ptr<scalar_t>(), B, static_cast<int>(V), J);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_points2d, proj_partial.sum(1), grad_confidences};
}

}  // namespace
}  // namespace pose3d

TORCH_LIBRARY_IMPL(pose3d, CUDA, m) {
  m.impl("triangulate", &pose3d::triangulate_cuda);
  m.impl("triangulate_backward", &pose3d::triangulate_backward_cuda);
}
