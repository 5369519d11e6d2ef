// Per-problem arithmetic of confidence-weighted DLT triangulation, shared by the CPU and the
// CUDA kernels (every function is __host__ __device__ and works on one problem in registers).
//
// One problem is one joint of one tuple: V views, each with a 2D point (u, v) in pixels, a
// projection matrix P [3, 4] and a confidence c. View v contributes the rows
//   c * (u P[2] - P[0]),  c * (v P[2] - P[1])
// of the DLT system A X = 0 (rows of views with c <= 0 are left out; negative confidences
// count as zero). The answer is the eigenvector of the smallest eigenvalue of A^T A.
//
// Conditioning. In world millimetres the homogeneous solution [X, Y, Z, 1] has a last
// component thousands of times smaller than the others and A^T A spans ~14 orders of
// magnitude, which fp32 cannot resolve. The problem is therefore posed in a normalised world
// frame X = m + s q: m is the weighted centroid of the camera centres (weights c) and s their
// weighted RMS distance from m, so q is of order one for a subject inside the rig. This frame
// is part of the definition of the op (the reference in pose3d/ops/triangulate.py builds the
// same one), which makes the result independent of the world frame's origin and unit.
// The normalised 4x4 matrix is further divided by its trace (eigenvectors do not change).
//
// Backward. With M u_k = l_k u_k and Y = u_0, dY = -(M - l_0 I)^+ dM Y; its transpose gives
// the gradient of M as w Y^T (w = -(M - l_0 I)^+ gY), mapped back through the rows, the frame
// (m, s) and the camera centres C = -P[:, :3]^{-1} P[:, 3] to points2d, proj and confidences.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define POSE3D_HD __host__ __device__ __forceinline__
#else
#define POSE3D_HD inline
#endif

#if defined(__CUDACC__)
#define POSE3D_UNROLL _Pragma("unroll")
#else
#define POSE3D_UNROLL
#endif

namespace pose3d {
namespace tri {

// A problem is valid when at least two views have c > 0 and, in the normalised frame:
constexpr double kMinGap = 1e-6;        // (l_1 - l_0) / trace > kMinGap: the answer is unique
constexpr double kMinW = 1e-5;          // |Y_3| > kMinW: the point is not at infinity
constexpr double kMinSpread = 1e-5;     // s > kMinSpread |m|: the cameras are not all one
constexpr double kMinCamVolume = 1e-6;  // |det P[:, :3]| / (row norms) > this: a finite centre
constexpr int kMaxSweeps = 8;           // cap on cyclic Jacobi sweeps (4x4 needs 3-4)

template <typename T>
POSE3D_HD T tsqrt(T x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

template <typename T>
POSE3D_HD T tabs(T x) {
#if defined(__CUDA_ARCH__)
  return ::fabs(x);
#else
  return std::fabs(x);
#endif
}

template <typename T>
POSE3D_HD bool tfinite(T x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

// The Jacobi solver is written once for a scalar T (one problem: each CUDA thread) and for
// the CPU's SIMD lane type (triangulate_lanes.h: several problems in lockstep), which
// overloads these helpers. A comparison gives a mask: bool for a scalar.
template <typename T>
struct ScalarOf {
  using type = T;
};

template <typename T>
POSE3D_HD T select(bool mask, T a, T b) {
  return mask ? a : b;
}

POSE3D_HD bool any_lane(bool mask) { return mask; }

// Where the inputs of one problem live. Element v of a view-indexed quantity is at
// base + v * stride; proj is [V, 3, 4] contiguous from `proj`.
template <typename S>
struct ProblemInput {
  const S* points;  // points2d[b, 0, j, 0]
  const S* proj;    // proj[b, 0, 0, 0]
  const S* conf;    // confidences[b, 0, j]
  int64_t points_stride;
  int64_t conf_stride;
  int views;
};

template <typename S, typename T>
POSE3D_HD T confidence(const ProblemInput<S>& in, int v) {
  const T c = static_cast<T>(in.conf[v * in.conf_stride]);
  return c > T(0) ? c : T(0);  // also maps NaN to 0
}

// The camera centre C = -M^{-1} p (M = P[:, :3], p = P[:, 3]) and M^{-1} (row-major), or
// false when M is (nearly) singular: an affine camera, or a zero matrix padding a view.
template <typename S, typename T>
POSE3D_HD bool camera_centre(const S* P, T C[3], T Minv[9]) {
  const T a = P[0], b = P[1], c = P[2], d = P[4], e = P[5], f = P[6], g = P[8], h = P[9],
          i = P[10];
  const T A = e * i - f * h, B = f * g - d * i, Cf = d * h - e * g;
  const T det = a * A + b * B + c * Cf;
  const T n0 = tsqrt(a * a + b * b + c * c), n1 = tsqrt(d * d + e * e + f * f),
          n2 = tsqrt(g * g + h * h + i * i);
  if (!(tabs(det) > T(kMinCamVolume) * n0 * n1 * n2)) return false;
  const T r = T(1) / det;
  Minv[0] = A * r;  Minv[1] = (c * h - b * i) * r;  Minv[2] = (b * f - c * e) * r;
  Minv[3] = B * r;  Minv[4] = (a * i - c * g) * r;  Minv[5] = (c * d - a * f) * r;
  Minv[6] = Cf * r; Minv[7] = (b * g - a * h) * r;  Minv[8] = (a * e - b * d) * r;
  const T p0 = P[3], p1 = P[7], p2 = P[11];
POSE3D_UNROLL
  for (int k = 0; k < 3; ++k) C[k] = -(Minv[3 * k] * p0 + Minv[3 * k + 1] * p1 + Minv[3 * k + 2] * p2);
  return tfinite(C[0]) && tfinite(C[1]) && tfinite(C[2]);
}

// Adds to gP [3, 4] the gradient of a camera centre: dC = -M^{-1} dP [C; 1], so
// dL/dP = -(M^{-T} gC) [C; 1]^T.
template <typename T>
POSE3D_HD void camera_centre_backward(const T C[3], const T Minv[9], const T gC[3], T gP[12]) {
  T z[3];
POSE3D_UNROLL
  for (int k = 0; k < 3; ++k) z[k] = Minv[k] * gC[0] + Minv[3 + k] * gC[1] + Minv[6 + k] * gC[2];
POSE3D_UNROLL
  for (int r = 0; r < 3; ++r) {
    gP[4 * r + 0] -= z[r] * C[0];
    gP[4 * r + 1] -= z[r] * C[1];
    gP[4 * r + 2] -= z[r] * C[2];
    gP[4 * r + 3] -= z[r];
  }
}

// Camera centres recomputed from proj on demand (the CUDA kernels: arithmetic is cheaper
// than a table in global memory). A centre provider answers `centre(v, C)` (false: none)
// and adds a centre's gradient to its view's gP in `centre_backward(v, C, gC, gP)`.
template <typename S, typename T>
struct CentresFromProj {
  const S* proj;
  POSE3D_HD bool centre(int v, T C[3]) const {
    T Minv[9];
    return camera_centre<S, T>(proj + 12 * v, C, Minv);
  }
  POSE3D_HD void centre_backward(int v, const T C[3], const T gC[3], T gP[12]) const {
    T C2[3], Minv[9];
    camera_centre<S, T>(proj + 12 * v, C2, Minv);
    camera_centre_backward(C, Minv, gC, gP);
  }
};

// Camera centres looked up in a table built once per tuple (the CPU kernels).
template <typename T>
struct Centre {
  T C[3];
  T Minv[9];
  bool ok;
};

template <typename T>
struct CentresFromTable {
  const Centre<T>* table;
  POSE3D_HD bool centre(int v, T C[3]) const {
    const Centre<T>& e = table[v];
    C[0] = e.C[0];
    C[1] = e.C[1];
    C[2] = e.C[2];
    return e.ok;
  }
  POSE3D_HD void centre_backward(int v, const T C[3], const T gC[3], T gP[12]) const {
    camera_centre_backward(C, table[v].Minv, gC, gP);
  }
};

// The normalised frame X = m + s q of one problem.
template <typename T>
struct Frame {
  T m[3];
  T s;
  T inv_s;       // 1 / s (rows divide by s; a multiply is cheaper)
  T weight;      // sum of the weights of the views with a finite centre
  bool from_centres;  // false: fewer than two finite centres, plain frame m = 0, s = 1
  bool distinct;      // the centres are not all one point
};

template <typename S, typename T, typename Centres>
POSE3D_HD Frame<T> make_frame(const ProblemInput<S>& in, const Centres& centres) {
  Frame<T> fr;
  T C[3], sum[3] = {T(0), T(0), T(0)}, W = T(0);
  int n = 0;
  for (int v = 0; v < in.views; ++v) {
    const T w = confidence<S, T>(in, v);
    if (w > T(0) && centres.centre(v, C)) {
      W += w;
      ++n;
POSE3D_UNROLL
      for (int k = 0; k < 3; ++k) sum[k] += w * C[k];
    }
  }
  fr.weight = W;
  fr.from_centres = n >= 2;
  if (!fr.from_centres) {
    fr.m[0] = fr.m[1] = fr.m[2] = T(0);
    fr.s = fr.inv_s = T(1);
    fr.distinct = true;
    return fr;
  }
  const T inv_W = T(1) / W;
POSE3D_UNROLL
  for (int k = 0; k < 3; ++k) fr.m[k] = sum[k] * inv_W;
  T s2 = T(0);
  for (int v = 0; v < in.views; ++v) {
    const T w = confidence<S, T>(in, v);
    if (w > T(0) && centres.centre(v, C)) {
POSE3D_UNROLL
      for (int k = 0; k < 3; ++k) s2 += w * (C[k] - fr.m[k]) * (C[k] - fr.m[k]);
    }
  }
  fr.s = tsqrt(s2 * inv_W);
  const T mnorm = tsqrt(fr.m[0] * fr.m[0] + fr.m[1] * fr.m[1] + fr.m[2] * fr.m[2]);
  fr.distinct = fr.s > T(kMinSpread) * mnorm && fr.s > T(0);
  if (!fr.distinct) fr.s = T(1);  // keeps the arithmetic finite; the problem is invalid
  fr.inv_s = T(1) / fr.s;
  return fr;
}

// Row `k` (0: u, 1: v) of view v before and after normalisation: r = c (u_k P[2] - P[k]),
// rn = [r_0, r_1, r_2, (r . [m, 1]) / s].
template <typename S, typename T>
POSE3D_HD void dlt_row(const ProblemInput<S>& in, const Frame<T>& fr, int v, int k, T c,
                       T r[4], T rn[4]) {
  const S* P = in.proj + 12 * v;
  const T u = static_cast<T>(in.points[v * in.points_stride + k]);
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i) r[i] = c * (u * static_cast<T>(P[8 + i]) - static_cast<T>(P[4 * k + i]));
  rn[0] = r[0];
  rn[1] = r[1];
  rn[2] = r[2];
  rn[3] = (r[0] * fr.m[0] + r[1] * fr.m[1] + r[2] * fr.m[2] + r[3]) * fr.inv_s;
}

// Cyclic Jacobi on a symmetric 4x4 matrix. T is a scalar (one problem) or a SIMD lane type
// (several problems in lockstep); every step is branch-free per lane, a lane whose entry is
// negligible getting the identity rotation.
//
// One rotation zeroes A[p][q] (Golub & Van Loan's symmetric Schur step) and is applied to
// the columns of U. Indices are template arguments so that the arrays stay in registers.
template <int p, int q, typename T>
POSE3D_HD bool jacobi_rotate(T (&A)[4][4], T (&U)[4][4]) {
  using Scalar = typename ScalarOf<T>::type;
  const T zero(Scalar(0)), one(Scalar(1));
  const T eps(Scalar(sizeof(Scalar) == 4 ? 1.2e-7 : 2.3e-16));
  const T apq = A[p][q], app = A[p][p], aqq = A[q][q];
  const T diff = aqq - app;
  // Rotate only where the rotation angle (about apq / diff) is above rounding: below it the
  // eigenvectors are converged to working precision.
  const auto rotate = tabs(apq) > eps * tabs(diff);
  const T theta = diff / (T(Scalar(2)) * select(rotate, apq, one));
  const T t0 = one / (tabs(theta) + tsqrt(one + theta * theta));
  const T t = select(rotate, select(theta < zero, -t0, t0), zero);
  const T c = one / tsqrt(one + t * t), s = t * c;
POSE3D_UNROLL
  for (int r = 0; r < 4; ++r) {
    if (r == p || r == q) continue;
    const T arp = A[r][p], arq = A[r][q];
    A[r][p] = A[p][r] = c * arp - s * arq;
    A[r][q] = A[q][r] = s * arp + c * arq;
  }
  A[p][p] = app - t * apq;
  A[q][q] = aqq + t * apq;
  A[p][q] = A[q][p] = zero;
POSE3D_UNROLL
  for (int r = 0; r < 4; ++r) {
    const T urp = U[r][p], urq = U[r][q];
    U[r][p] = c * urp - s * urq;
    U[r][q] = s * urp + c * urq;
  }
  return any_lane(rotate);
}

// Whether A[p][q] still needs a rotation in some lane (the criterion of jacobi_rotate).
template <int p, int q, typename T>
POSE3D_HD bool jacobi_pending(const T (&A)[4][4]) {
  using Scalar = typename ScalarOf<T>::type;
  const T eps(Scalar(sizeof(Scalar) == 4 ? 1.2e-7 : 2.3e-16));
  return any_lane(tabs(A[p][q]) > eps * tabs(A[q][q] - A[p][p]));
}

// Eigen-decomposition in place: afterwards the diagonal of A holds the eigenvalues and the
// columns of U the eigenvectors. Sweeps until no lane has an entry left to rotate (checked
// without rotating, which is much cheaper than a sweep that finds nothing to do).
template <typename T>
POSE3D_HD void jacobi_eigen4(T (&A)[4][4], T (&U)[4][4]) {
  using Scalar = typename ScalarOf<T>::type;
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
    for (int j = 0; j < 4; ++j) U[i][j] = T(Scalar(i == j ? 1 : 0));
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    // (0,1)|(2,3), (0,2)|(1,3), (0,3)|(1,2): each pair touches disjoint planes, so their
    // angles can be computed side by side.
    bool rotated = jacobi_rotate<0, 1>(A, U);
    rotated |= jacobi_rotate<2, 3>(A, U);
    rotated |= jacobi_rotate<0, 2>(A, U);
    rotated |= jacobi_rotate<1, 3>(A, U);
    rotated |= jacobi_rotate<0, 3>(A, U);
    rotated |= jacobi_rotate<1, 2>(A, U);
    if (!rotated) break;
    if (!(jacobi_pending<0, 1>(A) || jacobi_pending<2, 3>(A) || jacobi_pending<0, 2>(A) ||
          jacobi_pending<1, 3>(A) || jacobi_pending<0, 3>(A) || jacobi_pending<1, 2>(A))) {
      break;
    }
  }
}

// The normalised system of one problem, before its eigen-decomposition.
template <typename T>
struct System {
  Frame<T> frame;
  T scale;  // trace of the normalised A^T A, which the stored matrix is divided by
  bool ok;  // enough views, distinct cameras, finite
};

// Builds the normalised, trace-scaled A^T A of one problem into M (an invalid problem gets
// the identity, so that the arithmetic stays finite).
template <typename S, typename T, typename Centres>
POSE3D_HD System<T> build_system(const ProblemInput<S>& in, const Centres& centres,
                                 T (&M)[4][4]) {
  System<T> sys;
  sys.frame = make_frame<S, T>(in, centres);
  T N[4][4];
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
    for (int j = 0; j < 4; ++j) N[i][j] = T(0);
  int used = 0;
  for (int v = 0; v < in.views; ++v) {
    const T c = confidence<S, T>(in, v);
    if (!(c > T(0))) continue;
    ++used;
POSE3D_UNROLL
    for (int k = 0; k < 2; ++k) {
      T r[4], rn[4];
      dlt_row<S, T>(in, sys.frame, v, k, c, r, rn);
POSE3D_UNROLL
      for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
        for (int j = i; j < 4; ++j) N[i][j] += rn[i] * rn[j];
    }
  }
  sys.scale = N[0][0] + N[1][1] + N[2][2] + N[3][3];
  sys.ok = used >= 2 && sys.frame.distinct && sys.scale > T(0) && tfinite(sys.scale);
  const T inv = sys.ok ? T(1) / sys.scale : T(0);
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
    for (int j = 0; j < 4; ++j) {
      const T x = j >= i ? N[i][j] : N[j][i];
      M[i][j] = sys.ok ? x * inv : (i == j ? T(1) : T(0));
    }
  return sys;
}

// Everything the forward computes about one problem; the backward starts from it.
template <typename T>
struct Solution {
  Frame<T> frame;
  T scale;        // trace of the normalised A^T A
  T lambda[4];    // eigenvalues of (normalised A^T A) / scale
  T U[4][4];      // eigenvectors (columns)
  T lambda0;      // the smallest eigenvalue
  int smallest;   // its column
  T Y[4];         // its eigenvector, signed so that Y[3] >= 0
  T point[3];     // world point m + s Y[:3] / Y[3], or 0 where invalid
  bool valid;
};

// The solution of one problem from its system and its eigen-decomposition (eigenvalues on
// the diagonal of D, eigenvectors in the columns of U).
template <typename T>
POSE3D_HD Solution<T> finish(const System<T>& sys, const T (&D)[4][4], const T (&U)[4][4]) {
  Solution<T> sol;
  sol.frame = sys.frame;
  sol.scale = sys.scale;
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i) {
    sol.lambda[i] = D[i][i];
POSE3D_UNROLL
    for (int j = 0; j < 4; ++j) sol.U[i][j] = U[i][j];
  }
  // Smallest and second-smallest eigenvalue; constant indices only, so that nothing here
  // forces the arrays out of registers.
  int i0 = 0;
  T l0 = sol.lambda[0];
POSE3D_UNROLL
  for (int i = 1; i < 4; ++i) {
    if (sol.lambda[i] < l0) {
      l0 = sol.lambda[i];
      i0 = i;
    }
  }
  sol.smallest = i0;
  sol.lambda0 = l0;
  T second = T(1e30);
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
    if (i != i0 && sol.lambda[i] < second) second = sol.lambda[i];
POSE3D_UNROLL
  for (int c = 0; c < 4; ++c)
POSE3D_UNROLL
    for (int i = 0; i < 4; ++i)
      if (c == i0) sol.Y[i] = sol.U[i][c];
  if (sol.Y[3] < T(0))
POSE3D_UNROLL
    for (int i = 0; i < 4; ++i) sol.Y[i] = -sol.Y[i];
  bool ok = sys.ok && second - l0 > T(kMinGap) && sol.Y[3] > T(kMinW);
  const T s_over_w = ok ? sol.frame.s / sol.Y[3] : T(0);
POSE3D_UNROLL
  for (int k = 0; k < 3; ++k) {
    sol.point[k] = ok ? sol.frame.m[k] + s_over_w * sol.Y[k] : T(0);
    ok = ok && tfinite(sol.point[k]);
  }
  sol.valid = ok;
  if (!ok) sol.point[0] = sol.point[1] = sol.point[2] = T(0);
  return sol;
}

// One problem start to end (the CUDA kernels: one problem per thread).
template <typename S, typename T, typename Centres>
POSE3D_HD Solution<T> solve(const ProblemInput<S>& in, const Centres& centres) {
  T M[4][4], U[4][4];
  const System<T> sys = build_system<S, T>(in, centres, M);
  jacobi_eigen4(M, U);
  return finish(sys, M, U);
}

// Where one problem's gradients go: grad_points2d and grad_confidences are written at
// base + v * stride; grad_proj [V, 3, 4] (contiguous, type A) is added to when kAccumulate
// (the CPU sums the J problems of a tuple in place) or else written (a per-problem slice).
template <typename G, typename A>
struct ProblemGrads {
  G* points;  // grad_points2d[b, 0, j, 0]
  A* proj;    // [V, 3, 4]
  G* conf;    // grad_confidences[b, 0, j]
  int64_t points_stride;
  int64_t conf_stride;
};

// The backward of one problem (its forward `sol` recomputed by the caller) given the
// gradient of its world point, written through `out`.
template <bool kAccumulate, typename S, typename T, typename G, typename A, typename Centres>
POSE3D_HD void solve_backward(const ProblemInput<S>& in, const Centres& centres,
                              const Solution<T>& sol, const S* grad_point,
                              ProblemGrads<G, A> out) {
  const Frame<T>& fr = sol.frame;
  if (!sol.valid) {
    for (int v = 0; v < in.views; ++v) {
      out.points[v * out.points_stride] = G(0);
      out.points[v * out.points_stride + 1] = G(0);
      out.conf[v * out.conf_stride] = G(0);
      if (!kAccumulate)
POSE3D_UNROLL
        for (int i = 0; i < 12; ++i) out.proj[12 * v + i] = A(0);
    }
    return;
  }
  const T gp[3] = {static_cast<T>(grad_point[0]), static_cast<T>(grad_point[1]),
                   static_cast<T>(grad_point[2])};
  // p = m + s q, q = Y[:3] / Y[3].
  T q[3], gY[4], gm[3], gs = T(0);
  const T inv_w = T(1) / sol.Y[3];
POSE3D_UNROLL
  for (int k = 0; k < 3; ++k) {
    q[k] = sol.Y[k] * inv_w;
    gm[k] = gp[k];
    gs += gp[k] * q[k];
    gY[k] = fr.s * gp[k] * inv_w;
  }
  gY[3] = -fr.s * gs * inv_w;
  // w = -(M - l0 I)^+ gY over the other eigenpairs; gradient of (M~ / scale) is w Y^T.
  T w[4] = {T(0), T(0), T(0), T(0)};
  const int i0 = sol.smallest;
POSE3D_UNROLL
  for (int k = 0; k < 4; ++k) {
    if (k == i0) continue;
    T dot = T(0);
POSE3D_UNROLL
    for (int i = 0; i < 4; ++i) dot += gY[i] * sol.U[i][k];
    const T f = dot / (sol.lambda0 - sol.lambda[k]);
POSE3D_UNROLL
    for (int i = 0; i < 4; ++i) w[i] += f * sol.U[i][k];
  }
  const T inv_scale = T(1) / sol.scale;
  // Pass 1: the rows' share of the gradients of m and s.
  for (int v = 0; v < in.views; ++v) {
    const T c = confidence<S, T>(in, v);
    if (!(c > T(0))) continue;
POSE3D_UNROLL
    for (int k = 0; k < 2; ++k) {
      T r[4], rn[4];
      dlt_row<S, T>(in, fr, v, k, c, r, rn);
      const T yr = sol.Y[0] * rn[0] + sol.Y[1] * rn[1] + sol.Y[2] * rn[2] + sol.Y[3] * rn[3];
      const T wr = w[0] * rn[0] + w[1] * rn[1] + w[2] * rn[2] + w[3] * rn[3];
      const T g3 = (w[3] * yr + sol.Y[3] * wr) * inv_scale;  // gradient of rn[3]
POSE3D_UNROLL
      for (int i = 0; i < 3; ++i) gm[i] += g3 * r[i] * fr.inv_s;
      gs -= g3 * rn[3] * fr.inv_s;
    }
  }
  // Pass 2: per view, rows -> points, proj, confidence; frame -> centres -> proj, confidence.
  T C[3];
  for (int v = 0; v < in.views; ++v) {
    const T c = confidence<S, T>(in, v);
    T gP[12];
POSE3D_UNROLL
    for (int i = 0; i < 12; ++i) gP[i] = T(0);
    T gc = T(0), gu[2] = {T(0), T(0)};
    if (c > T(0)) {
      const S* P = in.proj + 12 * v;
POSE3D_UNROLL
      for (int k = 0; k < 2; ++k) {
        T r[4], rn[4], gr[4];
        dlt_row<S, T>(in, fr, v, k, c, r, rn);
        const T yr = sol.Y[0] * rn[0] + sol.Y[1] * rn[1] + sol.Y[2] * rn[2] + sol.Y[3] * rn[3];
        const T wr = w[0] * rn[0] + w[1] * rn[1] + w[2] * rn[2] + w[3] * rn[3];
        T grn[4];
POSE3D_UNROLL
        for (int i = 0; i < 4; ++i) grn[i] = (w[i] * yr + sol.Y[i] * wr) * inv_scale;
POSE3D_UNROLL
        for (int i = 0; i < 3; ++i) gr[i] = grn[i] + grn[3] * fr.m[i] * fr.inv_s;
        gr[3] = grn[3] * fr.inv_s;
        // r = c (u P[2] - P[k])
        const T u = static_cast<T>(in.points[v * in.points_stride + k]);
        T gdot = T(0);
POSE3D_UNROLL
        for (int i = 0; i < 4; ++i) {
          const T p2 = static_cast<T>(P[8 + i]), pk = static_cast<T>(P[4 * k + i]);
          gc += gr[i] * (u * p2 - pk);
          gdot += gr[i] * p2;
          gP[8 + i] += c * u * gr[i];
          gP[4 * k + i] -= c * gr[i];
        }
        gu[k] = c * gdot;
      }
      if (fr.from_centres && centres.centre(v, C)) {
        // m = sum w C / W, s^2 = sum w |C - m|^2 / W, with w = c.
        T d[3], d2 = T(0), gmd = T(0), gC[3];
POSE3D_UNROLL
        for (int i = 0; i < 3; ++i) {
          d[i] = C[i] - fr.m[i];
          d2 += d[i] * d[i];
          gmd += gm[i] * d[i];
        }
POSE3D_UNROLL
        for (int i = 0; i < 3; ++i) gC[i] = c / fr.weight * (gm[i] + gs * d[i] / fr.s);
        gc += (gmd + gs * (d2 - fr.s * fr.s) / (T(2) * fr.s)) / fr.weight;
        centres.centre_backward(v, C, gC, gP);
      }
    }
    out.points[v * out.points_stride] = G(gu[0]);
    out.points[v * out.points_stride + 1] = G(gu[1]);
    out.conf[v * out.conf_stride] = G(gc);
    A* gPv = out.proj + 12 * v;
POSE3D_UNROLL
    for (int i = 0; i < 12; ++i) gPv[i] = kAccumulate ? gPv[i] + A(gP[i]) : A(gP[i]);
  }
}

}  // namespace tri
}  // namespace pose3d
