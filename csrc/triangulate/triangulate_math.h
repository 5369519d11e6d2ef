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
constexpr int kMaxSweeps = 8;           // cyclic Jacobi sweeps (4x4 converges in 3-5)

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
  return x < T(0) ? -x : x;
}

template <typename T>
POSE3D_HD bool tfinite(T x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

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
  for (int k = 0; k < 3; ++k) C[k] = -(Minv[3 * k] * p0 + Minv[3 * k + 1] * p1 + Minv[3 * k + 2] * p2);
  return tfinite(C[0]) && tfinite(C[1]) && tfinite(C[2]);
}

// Adds to gP [3, 4] the gradient of a camera centre: dC = -M^{-1} dP [C; 1], so
// dL/dP = -(M^{-T} gC) [C; 1]^T.
template <typename T>
POSE3D_HD void camera_centre_backward(const T C[3], const T Minv[9], const T gC[3], T gP[12]) {
  T z[3];
  for (int k = 0; k < 3; ++k) z[k] = Minv[k] * gC[0] + Minv[3 + k] * gC[1] + Minv[6 + k] * gC[2];
  for (int r = 0; r < 3; ++r) {
    gP[4 * r + 0] -= z[r] * C[0];
    gP[4 * r + 1] -= z[r] * C[1];
    gP[4 * r + 2] -= z[r] * C[2];
    gP[4 * r + 3] -= z[r];
  }
}

// Camera centres recomputed from proj on demand (the CUDA kernels: arithmetic is cheaper
// than a table in global memory).
template <typename S, typename T>
struct CentresFromProj {
  const S* proj;
  POSE3D_HD bool get(int v, T C[3], T Minv[9]) const { return camera_centre<S, T>(proj + 12 * v, C, Minv); }
};

// Camera centres looked up in a table of `Centre`s built once per tuple (the CPU kernels).
template <typename T>
struct Centre {
  T C[3];
  T Minv[9];
  bool ok;
};

template <typename T>
struct CentresFromTable {
  const Centre<T>* table;
  POSE3D_HD bool get(int v, T C[3], T Minv[9]) const {
    const Centre<T>& e = table[v];
    for (int k = 0; k < 3; ++k) C[k] = e.C[k];
    for (int k = 0; k < 9; ++k) Minv[k] = e.Minv[k];
    return e.ok;
  }
};

// The normalised frame X = m + s q of one problem.
template <typename T>
struct Frame {
  T m[3];
  T s;
  T weight;      // sum of the weights of the views with a finite centre
  bool from_centres;  // false: fewer than two finite centres, plain frame m = 0, s = 1
  bool distinct;      // the centres are not all one point
};

template <typename S, typename T, typename Centres>
POSE3D_HD Frame<T> make_frame(const ProblemInput<S>& in, const Centres& centres) {
  Frame<T> fr;
  T C[3], Minv[9], sum[3] = {T(0), T(0), T(0)}, W = T(0);
  int n = 0;
  for (int v = 0; v < in.views; ++v) {
    const T w = confidence<S, T>(in, v);
    if (w > T(0) && centres.get(v, C, Minv)) {
      W += w;
      ++n;
      for (int k = 0; k < 3; ++k) sum[k] += w * C[k];
    }
  }
  fr.weight = W;
  fr.from_centres = n >= 2;
  if (!fr.from_centres) {
    fr.m[0] = fr.m[1] = fr.m[2] = T(0);
    fr.s = T(1);
    fr.distinct = true;
    return fr;
  }
  for (int k = 0; k < 3; ++k) fr.m[k] = sum[k] / W;
  T s2 = T(0);
  for (int v = 0; v < in.views; ++v) {
    const T w = confidence<S, T>(in, v);
    if (w > T(0) && centres.get(v, C, Minv)) {
      for (int k = 0; k < 3; ++k) s2 += w * (C[k] - fr.m[k]) * (C[k] - fr.m[k]);
    }
  }
  fr.s = tsqrt(s2 / W);
  const T mnorm = tsqrt(fr.m[0] * fr.m[0] + fr.m[1] * fr.m[1] + fr.m[2] * fr.m[2]);
  fr.distinct = fr.s > T(kMinSpread) * mnorm && fr.s > T(0);
  if (!fr.distinct) fr.s = T(1);  // keeps the arithmetic finite; the problem is invalid
  return fr;
}

// Row `k` (0: u, 1: v) of view v before and after normalisation: r = c (u_k P[2] - P[k]),
// rn = [r_0, r_1, r_2, (r . [m, 1]) / s].
template <typename S, typename T>
POSE3D_HD void dlt_row(const ProblemInput<S>& in, const Frame<T>& fr, int v, int k, T c,
                       T r[4], T rn[4]) {
  const S* P = in.proj + 12 * v;
  const T u = static_cast<T>(in.points[v * in.points_stride + k]);
  for (int i = 0; i < 4; ++i) r[i] = c * (u * static_cast<T>(P[8 + i]) - static_cast<T>(P[4 * k + i]));
  rn[0] = r[0];
  rn[1] = r[1];
  rn[2] = r[2];
  rn[3] = (r[0] * fr.m[0] + r[1] * fr.m[1] + r[2] * fr.m[2] + r[3]) / fr.s;
}

// One Jacobi rotation zeroing A[p][q] (Golub & Van Loan's symmetric Schur step), applied to
// the columns of U. Indices are template arguments so that the arrays stay in registers.
template <int p, int q, typename T>
POSE3D_HD bool jacobi_rotate(T (&A)[4][4], T (&U)[4][4]) {
  const T apq = A[p][q];
  const T app = A[p][p], aqq = A[q][q];
  const T eps = T(sizeof(T) == 4 ? 1.2e-7 : 2.3e-16);
  // Drop an entry whose rotation would be below rounding: the angle is under eps, or the
  // entry is negligible next to both diagonal entries (the relative criterion, which keeps
  // small eigenvalues accurate).
  if (apq == T(0) || tabs(apq) <= eps * tabs(aqq - app) ||
      tabs(apq) <= T(1e-2) * eps * tsqrt(tabs(app * aqq))) {
    A[p][q] = A[q][p] = T(0);
    return false;
  }
  const T theta = (aqq - app) / (T(2) * apq);
  T t = T(1) / (tabs(theta) + tsqrt(T(1) + theta * theta));
  if (theta < T(0)) t = -t;
  const T c = T(1) / tsqrt(T(1) + t * t), s = t * c;
POSE3D_UNROLL
  for (int k = 0; k < 4; ++k) {
    if (k == p || k == q) continue;
    const T akp = A[k][p], akq = A[k][q];
    A[k][p] = A[p][k] = c * akp - s * akq;
    A[k][q] = A[q][k] = s * akp + c * akq;
  }
  A[p][p] = app - t * apq;
  A[q][q] = aqq + t * apq;
  A[p][q] = A[q][p] = T(0);
POSE3D_UNROLL
  for (int k = 0; k < 4; ++k) {
    const T ukp = U[k][p], ukq = U[k][q];
    U[k][p] = c * ukp - s * ukq;
    U[k][q] = s * ukp + c * ukq;
  }
  return true;
}

// Eigen-decomposition of a symmetric 4x4 A in place: afterwards A is diagonal (the
// eigenvalues) and the columns of U are the eigenvectors.
template <typename T>
POSE3D_HD void jacobi_eigen4(T (&A)[4][4], T (&U)[4][4]) {
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
    for (int j = 0; j < 4; ++j) U[i][j] = i == j ? T(1) : T(0);
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    bool rotated = jacobi_rotate<0, 1>(A, U);
    rotated |= jacobi_rotate<2, 3>(A, U);
    rotated |= jacobi_rotate<0, 2>(A, U);
    rotated |= jacobi_rotate<1, 3>(A, U);
    rotated |= jacobi_rotate<0, 3>(A, U);
    rotated |= jacobi_rotate<1, 2>(A, U);
    if (!rotated) break;
  }
}

// Everything the forward computes about one problem; the backward recomputes it.
template <typename T>
struct Solution {
  Frame<T> frame;
  T scale;        // trace of the normalised A^T A
  T lambda[4];    // eigenvalues of (normalised A^T A) / scale
  T U[4][4];      // eigenvectors (columns)
  int smallest;   // column of the smallest eigenvalue
  T Y[4];         // that eigenvector, signed so that Y[3] >= 0
  T point[3];     // world point m + s Y[:3] / Y[3], or 0 where invalid
  bool valid;
};

template <typename S, typename T, typename Centres>
POSE3D_HD Solution<T> solve(const ProblemInput<S>& in, const Centres& centres) {
  Solution<T> sol;
  sol.frame = make_frame<S, T>(in, centres);
  T M[4][4];
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
    for (int j = 0; j < 4; ++j) M[i][j] = T(0);
  int used = 0;
  for (int v = 0; v < in.views; ++v) {
    const T c = confidence<S, T>(in, v);
    if (!(c > T(0))) continue;
    ++used;
    for (int k = 0; k < 2; ++k) {
      T r[4], rn[4];
      dlt_row<S, T>(in, sol.frame, v, k, c, r, rn);
POSE3D_UNROLL
      for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
        for (int j = i; j < 4; ++j) M[i][j] += rn[i] * rn[j];
    }
  }
  sol.scale = M[0][0] + M[1][1] + M[2][2] + M[3][3];
  bool ok = used >= 2 && sol.frame.distinct && sol.scale > T(0) && tfinite(sol.scale);
  const T inv = ok ? T(1) / sol.scale : T(0);
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
POSE3D_UNROLL
    for (int j = i; j < 4; ++j) M[i][j] = M[j][i] = M[i][j] * inv;
  jacobi_eigen4(M, sol.U);
  int i0 = 0;
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i) {
    sol.lambda[i] = M[i][i];
    if (M[i][i] < M[i0][i0]) i0 = i;
  }
  sol.smallest = i0;
  T second = T(1e30);
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i)
    if (i != i0 && sol.lambda[i] < second) second = sol.lambda[i];
  const T sign = sol.U[3][i0] < T(0) ? T(-1) : T(1);
POSE3D_UNROLL
  for (int i = 0; i < 4; ++i) sol.Y[i] = sign * sol.U[i][i0];
  ok = ok && second - sol.lambda[i0] > T(kMinGap) && sol.Y[3] > T(kMinW);
  for (int k = 0; k < 3; ++k) {
    sol.point[k] = ok ? sol.frame.m[k] + sol.frame.s * sol.Y[k] / sol.Y[3] : T(0);
    ok = ok && tfinite(sol.point[k]);
  }
  sol.valid = ok;
  if (!ok) sol.point[0] = sol.point[1] = sol.point[2] = T(0);
  return sol;
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

// The backward of one problem given the gradient of its world point, written through `out`.
template <bool kAccumulate, typename S, typename T, typename G, typename A, typename Centres>
POSE3D_HD void solve_backward(const ProblemInput<S>& in, const Centres& centres,
                              const S* grad_point, ProblemGrads<G, A> out) {
  const Solution<T> sol = solve<S, T>(in, centres);
  const Frame<T>& fr = sol.frame;
  if (!sol.valid) {
    for (int v = 0; v < in.views; ++v) {
      out.points[v * out.points_stride] = G(0);
      out.points[v * out.points_stride + 1] = G(0);
      out.conf[v * out.conf_stride] = G(0);
      if (!kAccumulate)
        for (int i = 0; i < 12; ++i) out.proj[12 * v + i] = A(0);
    }
    return;
  }
  const T gp[3] = {static_cast<T>(grad_point[0]), static_cast<T>(grad_point[1]),
                   static_cast<T>(grad_point[2])};
  // p = m + s q, q = Y[:3] / Y[3].
  T q[3], gY[4], gm[3], gs = T(0);
  for (int k = 0; k < 3; ++k) {
    q[k] = sol.Y[k] / sol.Y[3];
    gm[k] = gp[k];
    gs += gp[k] * q[k];
    gY[k] = fr.s * gp[k] / sol.Y[3];
  }
  gY[3] = -fr.s * gs / sol.Y[3];
  // w = -(M - l0 I)^+ gY over the other eigenpairs; gradient of (M~ / scale) is w Y^T.
  T w[4] = {T(0), T(0), T(0), T(0)};
  const int i0 = sol.smallest;
POSE3D_UNROLL
  for (int k = 0; k < 4; ++k) {
    if (k == i0) continue;
    T dot = T(0);
POSE3D_UNROLL
    for (int i = 0; i < 4; ++i) dot += gY[i] * sol.U[i][k];
    const T f = dot / (sol.lambda[i0] - sol.lambda[k]);
POSE3D_UNROLL
    for (int i = 0; i < 4; ++i) w[i] += f * sol.U[i][k];
  }
  const T inv_scale = T(1) / sol.scale;
  // Pass 1: the rows' share of the gradients of m and s.
  for (int v = 0; v < in.views; ++v) {
    const T c = confidence<S, T>(in, v);
    if (!(c > T(0))) continue;
    for (int k = 0; k < 2; ++k) {
      T r[4], rn[4];
      dlt_row<S, T>(in, fr, v, k, c, r, rn);
      const T yr = sol.Y[0] * rn[0] + sol.Y[1] * rn[1] + sol.Y[2] * rn[2] + sol.Y[3] * rn[3];
      const T wr = w[0] * rn[0] + w[1] * rn[1] + w[2] * rn[2] + w[3] * rn[3];
      const T g3 = (w[3] * yr + sol.Y[3] * wr) * inv_scale;  // gradient of rn[3]
      for (int i = 0; i < 3; ++i) gm[i] += g3 * r[i] / fr.s;
      gs -= g3 * rn[3] / fr.s;
    }
  }
  // Pass 2: per view, rows -> points, proj, confidence; frame -> centres -> proj, confidence.
  T C[3], Minv[9];
  for (int v = 0; v < in.views; ++v) {
    const T c = confidence<S, T>(in, v);
    T gP[12];
    for (int i = 0; i < 12; ++i) gP[i] = T(0);
    T gc = T(0), gu[2] = {T(0), T(0)};
    if (c > T(0)) {
      const S* P = in.proj + 12 * v;
      for (int k = 0; k < 2; ++k) {
        T r[4], rn[4], gr[4];
        dlt_row<S, T>(in, fr, v, k, c, r, rn);
        const T yr = sol.Y[0] * rn[0] + sol.Y[1] * rn[1] + sol.Y[2] * rn[2] + sol.Y[3] * rn[3];
        const T wr = w[0] * rn[0] + w[1] * rn[1] + w[2] * rn[2] + w[3] * rn[3];
        T grn[4];
        for (int i = 0; i < 4; ++i) grn[i] = (w[i] * yr + sol.Y[i] * wr) * inv_scale;
        for (int i = 0; i < 3; ++i) gr[i] = grn[i] + grn[3] * fr.m[i] / fr.s;
        gr[3] = grn[3] / fr.s;
        // r = c (u P[2] - P[k])
        const T u = static_cast<T>(in.points[v * in.points_stride + k]);
        T gdot = T(0);
        for (int i = 0; i < 4; ++i) {
          const T p2 = static_cast<T>(P[8 + i]), pk = static_cast<T>(P[4 * k + i]);
          gc += gr[i] * (u * p2 - pk);
          gdot += gr[i] * p2;
          gP[8 + i] += c * u * gr[i];
          gP[4 * k + i] -= c * gr[i];
        }
        gu[k] = c * gdot;
      }
      if (fr.from_centres && centres.get(v, C, Minv)) {
        // m = sum w C / W, s^2 = sum w |C - m|^2 / W, with w = c.
        T d[3], d2 = T(0), gmd = T(0), gC[3];
        for (int i = 0; i < 3; ++i) {
          d[i] = C[i] - fr.m[i];
          d2 += d[i] * d[i];
          gmd += gm[i] * d[i];
        }
        for (int i = 0; i < 3; ++i) gC[i] = c / fr.weight * (gm[i] + gs * d[i] / fr.s);
        gc += (gmd + gs * (d2 - fr.s * fr.s) / (T(2) * fr.s)) / fr.weight;
        camera_centre_backward(C, Minv, gC, gP);
      }
    }
    out.points[v * out.points_stride] = G(gu[0]);
    out.points[v * out.points_stride + 1] = G(gu[1]);
    out.conf[v * out.conf_stride] = G(gc);
    A* gPv = out.proj + 12 * v;
    for (int i = 0; i < 12; ++i) gPv[i] = kAccumulate ? gPv[i] + A(gP[i]) : A(gP[i]);
  }
}

}  // namespace tri
}  // namespace pose3d
