// A SIMD lane type for the CPU kernels: N problems solved in lockstep by the Jacobi code of
// triangulate_math.h, which is written once for a scalar and for this type. Each operation is
// a loop over lanes without control flow, which the compiler turns into vector
// instructions; square roots use SSE directly because std::sqrt's errno path would stop that.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "triangulate_math.h"

namespace pose3d {
namespace tri {

template <int N, typename T>
struct LaneMask {
  using Bits = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  Bits m[N];
};

template <typename T, int N>
struct Lanes {
  T v[N];
  Lanes() = default;
  explicit Lanes(T x) {
    for (int i = 0; i < N; ++i) v[i] = x;
  }
};

template <typename T, int N>
struct ScalarOf<Lanes<T, N>> {
  using type = T;
};

#define POSE3D_LANES_BINARY(op)                                          \
  template <typename T, int N>                                           \
  inline Lanes<T, N> operator op(const Lanes<T, N>& a, const Lanes<T, N>& b) { \
    Lanes<T, N> r;                                                       \
    for (int i = 0; i < N; ++i) r.v[i] = a.v[i] op b.v[i];               \
    return r;                                                            \
  }
POSE3D_LANES_BINARY(+)
POSE3D_LANES_BINARY(-)
POSE3D_LANES_BINARY(*)
POSE3D_LANES_BINARY(/)
#undef POSE3D_LANES_BINARY

#define POSE3D_LANES_COMPARE(op)                                              \
  template <typename T, int N>                                                \
  inline LaneMask<N, T> operator op(const Lanes<T, N>& a, const Lanes<T, N>& b) { \
    LaneMask<N, T> r;                                                         \
    for (int i = 0; i < N; ++i) r.m[i] = a.v[i] op b.v[i] ? -1 : 0;           \
    return r;                                                                 \
  }
POSE3D_LANES_COMPARE(<)
POSE3D_LANES_COMPARE(>)
#undef POSE3D_LANES_COMPARE

template <typename T, int N>
inline Lanes<T, N> operator-(const Lanes<T, N>& a) {
  Lanes<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = -a.v[i];
  return r;
}

template <typename T, int N>
inline Lanes<T, N> select(const LaneMask<N, T>& mask, const Lanes<T, N>& a, const Lanes<T, N>& b) {
  Lanes<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = mask.m[i] ? a.v[i] : b.v[i];
  return r;
}

template <int N, typename T>
inline bool any_lane(const LaneMask<N, T>& mask) {
  typename LaneMask<N, T>::Bits any = 0;
  for (int i = 0; i < N; ++i) any |= mask.m[i];
  return any != 0;
}

template <typename T, int N>
inline Lanes<T, N> tabs(const Lanes<T, N>& a) {
  Lanes<T, N> r;
  for (int i = 0; i < N; ++i) r.v[i] = std::fabs(a.v[i]);
  return r;
}

template <typename T, int N>
inline Lanes<T, N> tsqrt(const Lanes<T, N>& a) {
  Lanes<T, N> r;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float> && N % 4 == 0) {
    for (int i = 0; i < N; i += 4) _mm_storeu_ps(r.v + i, _mm_sqrt_ps(_mm_loadu_ps(a.v + i)));
    return r;
  } else if constexpr (std::is_same_v<T, double> && N % 2 == 0) {
    for (int i = 0; i < N; i += 2) _mm_storeu_pd(r.v + i, _mm_sqrt_pd(_mm_loadu_pd(a.v + i)));
    return r;
  }
#endif
  for (int i = 0; i < N; ++i) r.v[i] = std::sqrt(a.v[i]);
  return r;
}

}  // namespace tri
}  // namespace pose3d
