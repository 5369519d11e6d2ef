// The `triangulate` op: schemas and CPU kernels. The per-problem arithmetic is in
// triangulate_math.h (shared with the CUDA kernels in triangulate_cuda.cu).
#include "triangulate.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include "triangulate_lanes.h"
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

// Problems solved side by side in one Jacobi batch (vectorised across problems).
constexpr int kLanes = 8;
// Tuples per parallel chunk, at least.
constexpr int64_t kGrainProblems = 256;

template <typename S>
struct Inputs {
  const S* points;
  const S* proj;
  const S* conf;
  int64_t V, J;

  tri::ProblemInput<S> problem(int64_t b, int64_t j) const {
    return {points + (b * V * J + j) * 2, proj + b * V * 12, conf + b * V * J + j, 2 * J, J,
            static_cast<int>(V)};
  }
};

// Solves the problems of tuples [b0, b1) kLanes at a time (SIMD across problems) and hands
// each solution to fn(b, j, input, centres, solution).
template <typename S, typename T, typename Fn>
void solve_tuples(const Inputs<S>& x, int64_t b0, int64_t b1, Fn&& fn) {
  using L = tri::Lanes<T, kLanes>;
  std::vector<tri::Centre<T>> table((b1 - b0) * x.V);
  for (int64_t i = 0; i < (b1 - b0) * x.V; ++i) {
    table[i].ok = tri::camera_centre<S, T>(x.proj + (b0 * x.V + i) * 12, table[i].C, table[i].Minv);
  }
  tri::System<T> sys[kLanes];
  const int64_t first = b0 * x.J, last = b1 * x.J;
  for (int64_t p = first; p < last; p += kLanes) {
    const int n = static_cast<int>(std::min<int64_t>(kLanes, last - p));
    if (n < kLanes) {
      // The tail, one problem at a time with the CUDA kernels' per-thread code (scalar
      // Jacobi, centres recomputed from proj), which the CPU thereby runs and tests too.
      for (int64_t q = p; q < last; ++q) {
        const int64_t b = q / x.J, j = q % x.J;
        const tri::CentresFromProj<S, T> centres{x.proj + b * x.V * 12};
        fn(b, j, x.problem(b, j), centres, tri::solve<S, T>(x.problem(b, j), centres));
      }
      break;
    }
    L A[4][4], U[4][4];
    for (int lane = 0; lane < kLanes; ++lane) {
      const int64_t b = (p + lane) / x.J, j = (p + lane) % x.J;
      const tri::CentresFromTable<T> centres{table.data() + (b - b0) * x.V};
      T M[4][4];
      sys[lane] = tri::build_system<S, T>(x.problem(b, j), centres, M);
      for (int i = 0; i < 4; ++i)
        for (int k = 0; k < 4; ++k) A[i][k].v[lane] = M[i][k];
    }
    tri::jacobi_eigen4(A, U);
    for (int lane = 0; lane < kLanes; ++lane) {
      const int64_t b = (p + lane) / x.J, j = (p + lane) % x.J;
      T D[4][4], V[4][4];
      for (int i = 0; i < 4; ++i)
        for (int k = 0; k < 4; ++k) {
          D[i][k] = A[i][k].v[lane];
          V[i][k] = U[i][k].v[lane];
        }
      const tri::CentresFromTable<T> centres{table.data() + (b - b0) * x.V};
      fn(b, j, x.problem(b, j), centres, tri::finish(sys[lane], D, V));
    }
  }
}

int64_t grain_tuples(int64_t J) { return std::max<int64_t>(1, kGrainProblems / std::max<int64_t>(J, 1)); }

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
    const Inputs<scalar_t> x{points2d.const_data_ptr<scalar_t>(), proj.const_data_ptr<scalar_t>(),
                             confidences.const_data_ptr<scalar_t>(), V, J};
    scalar_t* out = points3d.mutable_data_ptr<scalar_t>();
    bool* ok = valid.mutable_data_ptr<bool>();
    at::parallel_for(0, B, grain_tuples(J), [&](int64_t b0, int64_t b1) {
      solve_tuples<scalar_t, T>(x, b0, b1, [&](int64_t b, int64_t j, const auto&, const auto&,
                                               const tri::Solution<T>& sol) {
        for (int k = 0; k < 3; ++k) out[(b * J + j) * 3 + k] = static_cast<scalar_t>(sol.point[k]);
        ok[b * J + j] = sol.valid;
      });
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
    const Inputs<scalar_t> x{points2d.const_data_ptr<scalar_t>(), proj.const_data_ptr<scalar_t>(),
                             confidences.const_data_ptr<scalar_t>(), V, J};
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    scalar_t* gpts = grad_points2d.mutable_data_ptr<scalar_t>();
    scalar_t* gP = grad_proj.mutable_data_ptr<scalar_t>();
    scalar_t* gconf = grad_confidences.mutable_data_ptr<scalar_t>();
    // Parallel over tuples: the J problems of a tuple add into the same grad_proj[b], which
    // one thread owns (no atomics, a deterministic sum).
    at::parallel_for(0, B, grain_tuples(J), [&](int64_t b0, int64_t b1) {
      std::vector<T> acc((b1 - b0) * V * 12, T(0));
      solve_tuples<scalar_t, T>(x, b0, b1, [&](int64_t b, int64_t j, const auto& in,
                                               const auto& centres, const tri::Solution<T>& sol) {
        const tri::ProblemGrads<scalar_t, T> out{gpts + (b * V * J + j) * 2,
                                                 acc.data() + (b - b0) * V * 12,
                                                 gconf + b * V * J + j, 2 * J, J};
        tri::solve_backward<true, scalar_t, T>(in, centres, sol, g + (b * J + j) * 3, out);
      });
      for (int64_t i = 0; i < (b1 - b0) * V * 12; ++i) {
        gP[b0 * V * 12 + i] = static_cast<scalar_t>(acc[i]);
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
