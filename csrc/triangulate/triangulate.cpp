// The `triangulate` op: schemas and CPU kernels. The per-problem arithmetic is in
// triangulate_math.h (shared with the CUDA kernels in triangulate_cuda.cu).
#include "triangulate.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <array>
#include <tuple>
#include <vector>

#include "triangulate_math.h"

namespace pose3d {

std::array<int64_t, 3> triangulate_check_inputs(const at::Tensor& points2d, const at::Tensor& proj,
                                                const at::Tensor& confidences) {
  TORCH_CHECK(points2d.dim() == 4 && points2d.size(3) == 2,
              "triangulate: points2d must be [B, V, J, 2], got ", points2d.sizes());
  const int64_t B = points2d.size(0), V = points2d.size(1), J = points2d.size(2);
  TORCH_CHECK(proj.dim() == 4 && proj.size(0) == B && proj.size(1) == V && proj.size(2) == 3 &&
                  proj.size(3) == 4,
              "triangulate: proj must be [B, V, 3, 4] = [", B, ", ", V, ", 3, 4], got ",
              proj.sizes());
  TORCH_CHECK(confidences.dim() == 3 && confidences.size(0) == B && confidences.size(1) == V &&
                  confidences.size(2) == J,
              "triangulate: confidences must be [B, V, J] = [", B, ", ", V, ", ", J, "], got ",
              confidences.sizes());
  TORCH_CHECK(points2d.scalar_type() == at::kFloat || points2d.scalar_type() == at::kDouble,
              "triangulate: points2d must be float32 or float64, got ", points2d.scalar_type());
  TORCH_CHECK(proj.scalar_type() == points2d.scalar_type() &&
                  confidences.scalar_type() == points2d.scalar_type(),
              "triangulate: points2d, proj and confidences must share a dtype, got ",
              points2d.scalar_type(), ", ", proj.scalar_type(), ", ", confidences.scalar_type());
  TORCH_CHECK(proj.device() == points2d.device() && confidences.device() == points2d.device(),
              "triangulate: points2d, proj and confidences must be on one device, got ",
              points2d.device(), ", ", proj.device(), ", ", confidences.device());
  TORCH_CHECK(V < (int64_t(1) << 30) && B * J < (int64_t(1) << 62), "triangulate: too many views");
  return {B, V, J};
}

void triangulate_check_grad(const at::Tensor& grad_points3d, const at::Tensor& points2d,
                            const std::array<int64_t, 3>& sizes) {
  TORCH_CHECK(grad_points3d.dim() == 3 && grad_points3d.size(0) == sizes[0] &&
                  grad_points3d.size(1) == sizes[2] && grad_points3d.size(2) == 3,
              "triangulate_backward: grad_points3d must be [B, J, 3] = [", sizes[0], ", ",
              sizes[2], ", 3], got ", grad_points3d.sizes());
  TORCH_CHECK(grad_points3d.scalar_type() == points2d.scalar_type() &&
                  grad_points3d.device() == points2d.device(),
              "triangulate_backward: grad_points3d must match points2d's dtype and device");
}

namespace {

// Float inputs are solved in float: the normalised frame keeps fp32 accurate, and the CPU
// then computes exactly what the CUDA kernel computes.
template <typename scalar_t>
using compute_t = scalar_t;

// Problems per parallel chunk: enough to amortise the camera-centre table of a tuple.
constexpr int64_t kGrainProblems = 256;

template <typename T, typename S>
void fill_centres(const S* proj_b, int64_t V, std::vector<tri::Centre<T>>& table) {
  table.resize(V);
  for (int64_t v = 0; v < V; ++v) {
    table[v].ok = tri::camera_centre<S, T>(proj_b + 12 * v, table[v].C, table[v].Minv);
  }
}

template <typename S>
tri::ProblemInput<S> problem_input(const S* pts, const S* proj, const S* conf, int64_t b,
                                   int64_t j, int64_t V, int64_t J) {
  return {pts + (b * V * J + j) * 2, proj + b * V * 12, conf + b * V * J + j, 2 * J, J,
          static_cast<int>(V)};
}

std::tuple<at::Tensor, at::Tensor> triangulate_cpu(const at::Tensor& points2d_in,
                                                   const at::Tensor& proj_in,
                                                   const at::Tensor& confidences_in) {
  const auto [B, V, J] = triangulate_check_inputs(points2d_in, proj_in, confidences_in);
  TORCH_CHECK(points2d_in.device().is_cpu(), "triangulate_cpu: inputs must be on the CPU");
  const at::Tensor points2d = points2d_in.contiguous(), proj = proj_in.contiguous(),
                   confidences = confidences_in.contiguous();
  at::Tensor points3d = at::empty({B, J, 3}, points2d.options());
  at::Tensor valid = at::empty({B, J}, points2d.options().dtype(at::kBool));
  if (B * J == 0) return {points3d, valid};
  AT_DISPATCH_FLOATING_TYPES(points2d.scalar_type(), "triangulate_cpu", [&] {
    using T = compute_t<scalar_t>;
    const scalar_t* pts = points2d.const_data_ptr<scalar_t>();
    const scalar_t* P = proj.const_data_ptr<scalar_t>();
    const scalar_t* conf = confidences.const_data_ptr<scalar_t>();
    scalar_t* out = points3d.mutable_data_ptr<scalar_t>();
    bool* ok = valid.mutable_data_ptr<bool>();
    const int64_t grain = std::max<int64_t>(1, kGrainProblems / std::max<int64_t>(J, 1));
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<tri::Centre<T>> table;
      for (int64_t b = b0; b < b1; ++b) {
        fill_centres<T>(P + b * V * 12, V, table);
        const tri::CentresFromTable<T> centres{table.data()};
        for (int64_t j = 0; j < J; ++j) {
          const auto in = problem_input(pts, P, conf, b, j, V, J);
          const tri::Solution<T> sol = tri::solve<scalar_t, T>(in, centres);
          for (int k = 0; k < 3; ++k) out[(b * J + j) * 3 + k] = static_cast<scalar_t>(sol.point[k]);
          ok[b * J + j] = sol.valid;
        }
      }
    });
  });
  return {points3d, valid};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> triangulate_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& points2d_in, const at::Tensor& proj_in,
    const at::Tensor& confidences_in) {
  const auto sizes = triangulate_check_inputs(points2d_in, proj_in, confidences_in);
  const auto [B, V, J] = sizes;
  triangulate_check_grad(grad_in, points2d_in, sizes);
  TORCH_CHECK(points2d_in.device().is_cpu(), "triangulate_backward_cpu: inputs must be on the CPU");
  const at::Tensor grad = grad_in.contiguous(), points2d = points2d_in.contiguous(),
                   proj = proj_in.contiguous(), confidences = confidences_in.contiguous();
  at::Tensor grad_points2d = at::empty_like(points2d);
  at::Tensor grad_proj = at::zeros_like(proj);
  at::Tensor grad_confidences = at::empty_like(confidences);
  if (B * J == 0) {
    grad_points2d.zero_();
    grad_confidences.zero_();
    return {grad_points2d, grad_proj, grad_confidences};
  }
  AT_DISPATCH_FLOATING_TYPES(points2d.scalar_type(), "triangulate_backward_cpu", [&] {
    using T = compute_t<scalar_t>;
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const scalar_t* pts = points2d.const_data_ptr<scalar_t>();
    const scalar_t* P = proj.const_data_ptr<scalar_t>();
    const scalar_t* conf = confidences.const_data_ptr<scalar_t>();
    scalar_t* gpts = grad_points2d.mutable_data_ptr<scalar_t>();
    scalar_t* gP = grad_proj.mutable_data_ptr<scalar_t>();
    scalar_t* gconf = grad_confidences.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, kGrainProblems / std::max<int64_t>(J, 1));
    // Parallel over tuples: the J problems of a tuple add into the same grad_proj[b], which
    // one thread then owns (no atomics, a deterministic sum).
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      std::vector<tri::Centre<T>> table;
      std::vector<T> acc(V * 12);
      for (int64_t b = b0; b < b1; ++b) {
        fill_centres<T>(P + b * V * 12, V, table);
        const tri::CentresFromTable<T> centres{table.data()};
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t j = 0; j < J; ++j) {
          const auto in = problem_input(pts, P, conf, b, j, V, J);
          const tri::ProblemGrads<scalar_t, T> out{gpts + (b * V * J + j) * 2, acc.data(),
                                                   gconf + b * V * J + j, 2 * J, J};
          tri::solve_backward<true, scalar_t, T>(in, centres, g + (b * J + j) * 3, out);
        }
        for (int64_t i = 0; i < V * 12; ++i) gP[b * V * 12 + i] = static_cast<scalar_t>(acc[i]);
      }
    });
  });
  return {grad_points2d, grad_proj, grad_confidences};
}

}  // namespace

}  // namespace pose3d

TORCH_LIBRARY_FRAGMENT(pose3d, m) {
  m.def(
      "triangulate(Tensor points2d, Tensor proj, Tensor confidences) -> (Tensor points3d, Tensor "
      "valid)");
  m.def(
      "triangulate_backward(Tensor grad_points3d, Tensor points2d, Tensor proj, Tensor "
      "confidences) -> (Tensor grad_points2d, Tensor grad_proj, Tensor grad_confidences)");
}

TORCH_LIBRARY_IMPL(pose3d, CPU, m) {
  m.impl("triangulate", &pose3d::triangulate_cpu);
  m.impl("triangulate_backward", &pose3d::triangulate_backward_cpu);
}
