// Shared pieces of sparseforge's native CPU kernels (ell.cpp and the other sources in this directory):
// vector type over GCC vector extensions, work grain, per-thread scratch buffers, the output epilogue and
// in-register transposes. Header-only, all in an anonymous namespace of each including source.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVecBytes)));
  static constexpr int lanes = kVecBytes / sizeof(T);
  static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof v);  // unaligned load
    return v;
  }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof v); }
};

// Rows per task so that a task does at least ~64k multiply-adds (tiny products stay on one thread).
int64_t grain(int64_t groups, int64_t edges, int64_t batch) {
  const int64_t per_group = groups ? (edges * std::max<int64_t>(batch, 1)) / groups : 0;
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(per_group, 1));
}

// What is applied to each finished output row: + bias[r] (if bias), then clamp to [lo, hi] (if clamp).
template <typename T>
struct Epilogue {
  const T* bias = nullptr;
  bool clamp = false;
  T lo = 0, hi = 0;
  bool any() const { return bias || clamp; }
};

// The epilogue on n finished values of row r (the bias is added last, as (W x) + b rounds).
template <typename T>
inline void finish(const Epilogue<T>& ep, int64_t r, T* row, int64_t n) {
  if (ep.bias)
    for (int64_t c = 0; c < n; ++c) row[c] += ep.bias[r];
  if (ep.clamp)
    for (int64_t c = 0; c < n; ++c) row[c] = std::min(std::max(row[c], ep.lo), ep.hi);
}

// A buffer of the calling thread, reused across calls (grow only): a fresh allocation per call would be
// page-faulted in on every call (measured: 2000 faults per call at 4096 x 256, doubling the time at 1%).
template <typename T, int Slot>
T* scratch(int64_t count) {
  struct Buffer {
    void* data = nullptr;
    size_t bytes = 0;
    ~Buffer() { std::free(data); }
  };
  static thread_local Buffer buffer;
  const size_t need = (static_cast<size_t>(count) * sizeof(T) + 63) / 64 * 64;
  if (need > buffer.bytes) {
    std::free(buffer.data);
    buffer.data = std::aligned_alloc(64, need);
    buffer.bytes = buffer.data ? need : 0;
    TORCH_CHECK(buffer.data, "sparseforge: cannot allocate a ", need, "-byte scratch buffer");
  }
  return static_cast<T*>(buffer.data);
}

// Advice that a fresh output of at least 32 MB be backed by 2 MB pages where the kernel offers them (transparent
// huge pages in madvise mode): glibc maps every block that large anew and unmaps it when freed, so each call
// otherwise first-touch faults bytes / 4 KB pages (measured ~10 ms of a 26 ms product writing 4096 x 2048 floats).
// Only whole 2 MB pages inside the block are advised; the memory is the caller's, its contents unchanged.
inline void huge_page_hint(void* data, size_t bytes) {
#if defined(MADV_HUGEPAGE)
  constexpr size_t page = size_t{2} << 20;
  if (bytes < (size_t{32} << 20)) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// Transposes the L x L block r[s][i] in place (r[i][s] afterwards): log2(L) perfect-shuffle stages.
template <typename T>
inline void transpose_square(typename Vec<T>::type (&r)[Vec<T>::lanes]) {
  using VT = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
#if defined(__GNUC__) && !defined(__clang__)
  using M = typename Vec<std::conditional_t<sizeof(T) == 4, int32_t, int64_t>>::type;
  M lo, hi;  // interleave the low (high) halves of two vectors
  for (int j = 0; j < L; ++j) {
    lo[j] = (j % 2 ? L : 0) + j / 2;
    hi[j] = (j % 2 ? L : 0) + L / 2 + j / 2;
  }
  for (int stage = 1; stage < L; stage *= 2) {
    VT t[L];
    for (int i = 0; i < L / 2; ++i) {
      t[2 * i] = __builtin_shuffle(r[i], r[i + L / 2], lo);
      t[2 * i + 1] = __builtin_shuffle(r[i], r[i + L / 2], hi);
    }
    for (int i = 0; i < L; ++i) r[i] = t[i];
  }
#else
  T m[L][L];
  for (int s = 0; s < L; ++s) Vec<T>::store(m[s], r[s]);
  for (int i = 0; i < L; ++i)
    for (int s = 0; s < L; ++s) r[i][s] = m[s][i];
#endif
}

// dst[i][s] = src[s][i] for features i in [i0, i1) and samples s < S, zero for s in [S, Spad); src rows lds
// apart, dst rows ldd apart. Whole L x L blocks go through registers, the rest one value at a time.
template <typename T>
void transpose_rows(const T* src, int64_t lds, int64_t S, int64_t Spad, T* dst, int64_t ldd, int64_t i0, int64_t i1) {
  using V = Vec<T>;
  constexpr int L = V::lanes;
  int64_t s0 = 0;
  for (; s0 + L <= S; s0 += L) {
    int64_t i = i0;
    for (; i + L <= i1; i += L) {
      typename V::type r[L];
      for (int s = 0; s < L; ++s) r[s] = V::load(src + (s0 + s) * lds + i);
      transpose_square<T>(r);
      for (int k = 0; k < L; ++k) V::store(dst + (i + k) * ldd + s0, r[k]);
    }
    for (; i < i1; ++i)
      for (int s = 0; s < L; ++s) dst[i * ldd + s0 + s] = src[(s0 + s) * lds + i];
  }
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t s = s0; s < Spad; ++s) dst[i * ldd + s] = s < S ? src[s * lds + i] : T(0);
}


// y[c0 + s][r0 + q] = stage[q][s] for rows q < nr and samples s < width (stage rows ld apart, y rows ldy apart):
// how a block of feature-major results goes back into batch-major y. Whole L x L pieces are transposed in
// registers (one L-wide store per sample row), the rest is stored one value at a time.
template <typename T>
inline void store_transposed(const T* stage, int64_t ld, int64_t nr, int64_t width, T* y, int64_t ldy, int64_t c0,
                             int64_t r0) {
  using V = Vec<T>;
  constexpr int L = V::lanes;
  for (int64_t s0 = 0; s0 < width; s0 += L) {
    for (int64_t q0 = 0; q0 < nr; q0 += L) {
      if (q0 + L <= nr && s0 + L <= width) {
        typename V::type r[L];
        for (int q = 0; q < L; ++q) r[q] = V::load(stage + (q0 + q) * ld + s0);
        transpose_square<T>(r);
        for (int s = 0; s < L; ++s) V::store(y + (c0 + s0 + s) * ldy + r0 + q0, r[s]);
      } else {
        for (int64_t s = s0; s < std::min<int64_t>(width, s0 + L); ++s)
          for (int64_t q = q0; q < std::min<int64_t>(nr, q0 + L); ++q) y[(c0 + s) * ldy + r0 + q] = stage[q * ld + s];
      }
    }
  }
}

// Transpose-add: acc[q] (q < L) -> acc[0] with lane q = the sum of acc[q]'s lanes, in 2(L - 1) two-source
// shuffles (log2(L) stages; stage S folds vector i + S/2 into i, halving the lane blocks that hold one sum).
// How several dot products (one per vector) are finished together without a horizontal sum each.
template <typename T, int S>
inline void fold_sums(typename Vec<T>::type* acc) {
  if constexpr (S > 1) {
    using VT = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes, H = S / 2;
#if defined(__GNUC__) && !defined(__clang__)
    using M = typename Vec<std::conditional_t<sizeof(T) == 4, int32_t, int64_t>>::type;
    M m1, m2;  // lane l of block b (S lanes): first half from a's block b, second half from b's block b
    for (int l = 0; l < L; ++l) {
      const int blk = l / S, w = l % S;
      m1[l] = w < H ? blk * S + w : L + blk * S + w - H;
      m2[l] = w < H ? blk * S + w + H : L + blk * S + w;
    }
    for (int i = 0; i < H; ++i)
      acc[i] = __builtin_shuffle(acc[i], acc[i + H], m1) + __builtin_shuffle(acc[i], acc[i + H], m2);
#else
    for (int i = 0; i < H; ++i) {
      VT a = acc[i], b = acc[i + H], c;
      for (int l = 0; l < L; ++l) {
        const int blk = l / S, w = l % S;
        c[l] = w < H ? a[blk * S + w] + a[blk * S + w + H] : b[blk * S + w - H] + b[blk * S + w];
      }
      acc[i] = c;
    }
#endif
    fold_sums<T, H>(acc);
  }
}

// xt[t][i][0:W] = x[t * W + s, i] (zero past B) for all tiles and features, in parallel. A task is L samples over
// all features: L sequential read streams, which the prefetchers follow (blocks of 4L features over a whole tile
// read W streams of 4L values each: measured slower when x comes from L3/DRAM, as between calls of a network).
template <typename T>
void pack_tiles_bm(const T* x, int64_t ldx, int64_t n, int64_t B, int64_t W, T* xt) {
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t tiles = (B + W - 1) / W, blocks = W / L;  // W is a multiple of L
  at::parallel_for(0, tiles * blocks, std::max<int64_t>(1, (int64_t{1} << 14) / (L * std::max<int64_t>(n, 1))),
                   [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t t = a / blocks, s0 = t * W + (a % blocks) * L;  // samples [s0, s0 + L) of x (zero past B)
      transpose_rows<T>(x + std::min(s0, B) * ldx, ldx, std::clamp<int64_t>(B - s0, 0, L), L,
                        xt + t * n * W + (s0 - t * W), W, 0, n);
    }
  });
}

}  // namespace
