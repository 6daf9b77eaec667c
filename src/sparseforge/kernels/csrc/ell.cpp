// Native CPU kernels of sparseforge: sparse (CSR/ELL) x dense products over feature-major activations.
//
// Activations are feature-major: x[n, batch] with unit stride along the batch, so every node's
// activations are one contiguous row (any row stride). A pattern is CSR (indptr[rows + 1], indices[edges],
// sorted within a row). With group G > 1, rows come in groups of G consecutive rows with identical index
// lists ("grouped" patterns): each gathered row then feeds G outputs (G multiply-adds per load).
//
//   spmm(indptr, indices, values, x, G, bias, lo, hi, perm, tile) -> y[rows, batch]:
//        y[r] = clamp(sum_e values[perm[e]] * x[indices[e]] + bias[r], lo, hi)
//        (perm optional: identity; bias and clamp bounds optional, applied to each finished output row while
//        it is in cache: no extra pass over y; tile: -1 choose, 0 stream whole batch rows, 1 batch tiles)
//   sddmm(indptr, indices, gy, x, G, tile) -> g[edges]: g[e] = <gy[row(e)], x[indices[e]]> (tile as in spmm)
//   spmm_bm, sddmm_bm: the same products on batch-major operands (x[batch, n], y[batch, rows], gy[batch, rows]),
//        what nn.Linear-style callers hold; see "batch-major" below (no transposed copies of x or y).
//
// Forward and grad-input are spmm; grad-input runs over the transposed pattern, whose edge e has the value
// values[perm[e]], gathered by the op in one parallel pass into a reused buffer (torch's index_select took
// 8 ms of a 30 ms grad-input at 4096^2, 10% density); grad-values is sddmm.
// Two spmm strategies: by default whole batch rows are streamed (a gathered row is `batch` contiguous
// values, read once per edge, which keeps the hardware prefetchers and the TLB effective), K edges per pass,
// so each pass over an accumulator row in L1 does K multiply-adds; at low density this runs at the L3
// streaming bandwidth. When every input row is read by many outputs, batch tiles of x are packed so the
// gathers hit L2 instead ("tiled spmm" below). sddmm does the same ("tiled sddmm"), streaming whole rows only
// for low out-degrees. Threads (at::parallel_for: torch's
// OpenMP pool and thread count) own disjoint output ranges: no synchronisation. Vector width follows the
// compile flags (-march=native) through GCC vector extensions; no intrinsics.
#include <ATen/Parallel.h>
#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "simd.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>

namespace {

// Edges per pass (measured): enough independent loads to hide latency and few accumulator passes per edge;
// sddmm keeps K * G vector accumulators in registers, so it unrolls less for wide groups.
constexpr int spmm_unroll(int group) { return group == 1 ? 8 : group == 8 ? 2 : 4; }
constexpr int sddmm_unroll(int group) { return group == 1 ? 8 : group == 2 ? 4 : group == 4 ? 2 : 1; }

// ---------------------------------------------------------------------------------------------- spmm
// y[u] += sum_{q < K} w[u][q] * xs[q] for u < G; rows of length B (y rows ldy apart).
template <typename T, int G, int K>
inline void axpy_block(const T* const* xs, const T (&w)[G][K], T* y, int64_t ldy, int64_t B) {
  using V = Vec<T>;
  constexpr int L = V::lanes;
  int64_t c = 0;
  for (; c + L <= B; c += L) {
    typename V::type xv[K];
    for (int q = 0; q < K; ++q) xv[q] = V::load(xs[q] + c);
    for (int u = 0; u < G; ++u) {
      typename V::type a = V::load(y + u * ldy + c);
      for (int q = 0; q < K; ++q) a += w[u][q] * xv[q];
      V::store(y + u * ldy + c, a);
    }
  }
  for (; c < B; ++c)
    for (int u = 0; u < G; ++u) {
      T a = y[u * ldy + c];
      for (int q = 0; q < K; ++q) a += w[u][q] * xs[q][c];
      y[u * ldy + c] = a;
    }
}

// Edges [k, n) of one row group in blocks of K; returns the first edge not done.
template <typename T, int G, int K>
inline int64_t axpy_edges(const int64_t* idx, const T* const* vals, int64_t k, int64_t n, const T* x, int64_t ldx,
                          T* y, int64_t ldy, int64_t B) {
  for (; k + K <= n; k += K) {
    const T* xs[K];
    T w[G][K];
    for (int q = 0; q < K; ++q) xs[q] = x + idx[k + q] * ldx;
    for (int u = 0; u < G; ++u)
      for (int q = 0; q < K; ++q) w[u][q] = vals[u][k + q];
    axpy_block<T, G, K>(xs, w, y, ldy, B);
  }
  return k;
}

// sum_k v[k] * x[idx[k] * ldx]: with unit stride, vectorised gathers (a vector of indices, of values and of
// gathered x per step); else 4 partial sums.
template <typename T>
inline T gathered_dot(const T* v, const int64_t* idx, int64_t n, const T* x, int64_t ldx) {
  if (ldx == 1) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < n; ++k) s += v[k] * x[idx[k]];
    return s;
  }
  T s[4] = {0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4)
    for (int q = 0; q < 4; ++q) s[q] += v[k + q] * x[idx[k + q] * ldx];
  for (; k < n; ++k) s[0] += v[k] * x[idx[k] * ldx];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// Row groups [g0, g1) of y[rows, B] from x (rows ldx apart).
template <typename T, int G>
void spmm_rows(const int64_t* indptr, const int64_t* indices, const T* values, const Epilogue<T>& ep, const T* x,
               int64_t ldx, T* y, int64_t B, int64_t g0, int64_t g1) {
  constexpr int K = spmm_unroll(G);
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t r0 = g * G, beg = indptr[r0], n = indptr[r0 + 1] - beg;
    const int64_t* idx = indices + beg;
    const T* vals[G];  // row u of the group has its own values, edge k at vals[u][k]
    for (int u = 0; u < G; ++u) vals[u] = values + indptr[r0 + u];
    T* yg = y + r0 * B;
    if (B == 1) {  // one sample (latency-bound inference): a gathered dot product per row, 4 partial sums
      for (int u = 0; u < G; ++u) yg[u] = gathered_dot(vals[u], idx, n, x, ldx);
      if (ep.any())
        for (int u = 0; u < G; ++u) finish(ep, r0 + u, yg + u, 1);
      continue;
    }
    std::memset(yg, 0, sizeof(T) * G * B);
    int64_t k = axpy_edges<T, G, K>(idx, vals, 0, n, x, ldx, yg, B, B);
    if constexpr (K > 4) k = axpy_edges<T, G, 4>(idx, vals, k, n, x, ldx, yg, B, B);
    if constexpr (K > 2) k = axpy_edges<T, G, 2>(idx, vals, k, n, x, ldx, yg, B, B);
    axpy_edges<T, G, 1>(idx, vals, k, n, x, ldx, yg, B, B);
    if (ep.any())  // the rows are still in L1
      for (int u = 0; u < G; ++u) finish(ep, r0 + u, yg + u * B, B);
  }
}

// ---------------------------------------------------------------------------------------- tiled spmm
// Ungrouped patterns whose input rows are each read by many outputs (mean out-degree >= kTileReuse), with at
// least one full tile of batch columns: x is
// first packed into batch tiles xt[t][n][W] of 128 bytes per row (zero-padded past the batch), and each row
// is computed one tile at a time with its W outputs in registers over all its edges. A tile of x is read from
// DRAM/L3 once and then from L2 by every edge, instead of every edge streaming a whole batch row from L3;
// P partial sums keep 8 FMA chains in flight. Measured at 4096^2, batch 256, 2 threads: 21 -> 17 ms at 10%
// density (out-degree 410), 1234 -> 616 ms at 16384^2 10% (x beyond L3); slower at 1% (out-degree 41:
// each gathered 128-byte piece is an L2 miss more often than a streamed row is) and for grouped patterns.
constexpr int64_t kTileReuse = 128;
constexpr int kTileVectors = 128 / kVecBytes;

// xt[t][i][0:W] = x[i, t*W : t*W + W] (zero past the batch) for rows [i0, i1).
template <typename T>
void pack_tiles(const T* x, int64_t ldx, int64_t n, int64_t B, int64_t W, T* xt, int64_t i0, int64_t i1) {
  for (int64_t t = 0, c0 = 0; c0 < B; ++t, c0 += W) {
    const int64_t w = std::min(W, B - c0);
    T* dst = xt + t * n * W;
    for (int64_t i = i0; i < i1; ++i) {
      std::memcpy(dst + i * W, x + i * ldx + c0, sizeof(T) * w);
      if (w < W) std::memset(dst + i * W + w, 0, sizeof(T) * (W - w));
    }
  }
}

// Row groups [g0, g1) of one tile (xt[n][W], W = NV vectors) at batch columns [c0, c0 + width): each group of G
// rows keeps its G * W outputs in registers over all its edges (P partial sums keep >= 8 FMA chains in flight),
// then applies the epilogue and stores row r at y[r - row0][c0 : c0 + width] (rows ldy apart; row0: the row
// that y's first row holds).
template <typename T, int G, int NV>
void tile_rows(const int64_t* indptr, const int64_t* indices, const T* values, const Epilogue<T>& ep, const T* xt,
               T* y, int64_t ldy, int64_t c0, int64_t width, int64_t g0, int64_t g1, int64_t row0 = 0) {
  using V = Vec<T>;
  using VT = typename V::type;
  constexpr int L = V::lanes, W = NV * L, P = G * NV >= 8 ? 1 : 8 / (G * NV);
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t r0 = g * G, beg = indptr[r0], n = indptr[r0 + 1] - beg;
    const int64_t* idx = indices + beg;
    const T* vals[G];
    for (int u = 0; u < G; ++u) vals[u] = values + indptr[r0 + u];
    VT acc[P][G][NV];
    for (int p = 0; p < P; ++p)
      for (int u = 0; u < G; ++u)
        for (int v = 0; v < NV; ++v) acc[p][u][v] = VT{};
    int64_t k = 0;
    for (; k + P <= n; k += P)
      for (int p = 0; p < P; ++p) {
        const T* xr = xt + idx[k + p] * W;
        VT xv[NV];
        for (int v = 0; v < NV; ++v) xv[v] = V::load(xr + v * L);
        for (int u = 0; u < G; ++u)
          for (int v = 0; v < NV; ++v) acc[p][u][v] += vals[u][k + p] * xv[v];
      }
    for (; k < n; ++k) {
      const T* xr = xt + idx[k] * W;
      for (int u = 0; u < G; ++u)
        for (int v = 0; v < NV; ++v) acc[0][u][v] += vals[u][k] * V::load(xr + v * L);
    }
    for (int u = 0; u < G; ++u) {
      T out[W];
      for (int v = 0; v < NV; ++v) {
        VT s = acc[0][u][v];
        for (int p = 1; p < P; ++p) s += acc[p][u][v];
        V::store(out + v * L, s);
      }
      finish(ep, r0 + u, out, width);
      T* dst = y + (r0 + u - row0) * ldy + c0;
      if (width == W)  // a constant size: inlined (a libc call per row was 16% of a 512 -> 256, batch 128 product)
        std::memcpy(dst, out, sizeof(T) * W);
      else
        std::memcpy(dst, out, sizeof(T) * width);
    }
  }
}

template <typename T>
void spmm_tiled(const int64_t* ip, const int64_t* id, const T* v, const Epilogue<T>& ep,
                const T* x, int64_t ldx, int64_t n, T* y, int64_t B, int64_t rows, int64_t edges) {
  constexpr int64_t W = kTileVectors * Vec<T>::lanes;
  const int64_t tiles = (B + W - 1) / W;
  T* xt = scratch<T, 0>(tiles * n * W);
  at::parallel_for(0, n, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(B, 1)),
                   [&](int64_t i0, int64_t i1) { pack_tiles<T>(x, ldx, n, B, W, xt, i0, i1); });
  // tasks are (tile, row) pairs, tile-major: a thread's contiguous range spans few tiles
  at::parallel_for(0, tiles * rows, grain(rows, edges, W), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1;) {
      const int64_t t = a / rows, rs = a % rows, re = std::min(rows, rs + (a1 - a));
      tile_rows<T, 1, kTileVectors>(ip, id, v, ep, xt + t * n * W, y, B, t * W, std::min(W, B - t * W), rs, re);
      a += re - rs;
    }
  });
}

// --------------------------------------------------------------------------------------------- sddmm
// out[u][q] = <gy[u], xs[q]> for u < G, q < K (gy rows ldg apart).
template <typename T, int G, int K>
inline void dot_block(const T* gy, int64_t ldg, const T* const* xs, int64_t B, T (&out)[G][K]) {
  using V = Vec<T>;
  constexpr int L = V::lanes;
  typename V::type acc[K][G];
  for (int q = 0; q < K; ++q)
    for (int u = 0; u < G; ++u) acc[q][u] = typename V::type{};
  int64_t c = 0;
  for (; c + L <= B; c += L) {
    typename V::type gv[G];
    for (int u = 0; u < G; ++u) gv[u] = V::load(gy + u * ldg + c);
    for (int q = 0; q < K; ++q) {
      const typename V::type xv = V::load(xs[q] + c);
      for (int u = 0; u < G; ++u) acc[q][u] += gv[u] * xv;
    }
  }
  for (int q = 0; q < K; ++q)
    for (int u = 0; u < G; ++u) {
      T s = 0;
      for (int l = 0; l < L; ++l) s += acc[q][u][l];
      for (int64_t t = c; t < B; ++t) s += gy[u * ldg + t] * xs[q][t];
      out[u][q] = s;
    }
}

template <typename T, int G, int K>
inline int64_t dot_edges(const int64_t* idx, T* const* outs, int64_t k, int64_t n, const T* gy, int64_t ldg,
                         const T* x, int64_t ldx, int64_t B) {
  for (; k + K <= n; k += K) {
    const T* xs[K];
    T d[G][K];
    for (int q = 0; q < K; ++q) xs[q] = x + idx[k + q] * ldx;
    dot_block<T, G, K>(gy, ldg, xs, B, d);
    for (int u = 0; u < G; ++u)
      for (int q = 0; q < K; ++q) outs[u][k + q] = d[u][q];
  }
  return k;
}

template <typename T, int G>
void sddmm_rows(const int64_t* indptr, const int64_t* indices, const T* gy, int64_t ldg, const T* x, int64_t ldx,
                T* out, int64_t B, int64_t g0, int64_t g1) {
  constexpr int K = sddmm_unroll(G);
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t r0 = g * G, beg = indptr[r0], n = indptr[r0 + 1] - beg;
    const int64_t* idx = indices + beg;
    T* outs[G];
    for (int u = 0; u < G; ++u) outs[u] = out + indptr[r0 + u];
    const T* gr = gy + r0 * ldg;
    int64_t k = dot_edges<T, G, K>(idx, outs, 0, n, gr, ldg, x, ldx, B);
    if constexpr (K > 4) k = dot_edges<T, G, 4>(idx, outs, k, n, gr, ldg, x, ldx, B);
    if constexpr (K > 2) k = dot_edges<T, G, 2>(idx, outs, k, n, gr, ldg, x, ldx, B);
    dot_edges<T, G, 1>(idx, outs, k, n, gr, ldg, x, ldx, B);
  }
}

// ---------------------------------------------------------------------------------------- tiled sddmm
// Streaming sddmm reads a whole x row (batch values, from L3 once x outgrows L2) per edge. The tiled sddmm
// packs x and gy into batch tiles xt[t][n][W], gt[t][rows][W] (W = NV vectors, zero past the batch; the same
// layout the tiled spmm reads) and runs tile-major: a tile of x (n * W values, chosen to fit L2) is gathered
// by every edge from L2. Per row, the gy tile sits in NV registers; L edges at a time (L = lanes) get one
// vector of partial products each, folded into one vector of L dot products by a transpose-add
// (fold_sums) and added into out[e : e + L] (stored by the first tile, accumulated by the others: out is
// streamed once per tile, sequentially). Threads own disjoint row ranges over all tiles (no races on out).
template <typename T, int NV>
void sddmm_tile_rows(const int64_t* indptr, const int64_t* indices, const T* gt, const T* xt, T* out, bool first,
                     int64_t r0, int64_t r1, int64_t row0 = 0) {
  using V = Vec<T>;
  using VT = typename V::type;
  constexpr int L = V::lanes, W = NV * L;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t beg = indptr[r], n = indptr[r + 1] - beg;
    const int64_t* idx = indices + beg;
    T* o = out + beg;
    VT gv[NV];
    for (int v = 0; v < NV; ++v) gv[v] = V::load(gt + (r - row0) * W + v * L);  // gt's first row is row0
    for (int64_t k = 0; k < n; k += L) {
      const int m = static_cast<int>(std::min<int64_t>(L, n - k));
      VT acc[L];
      for (int q = 0; q < L; ++q) {
        const T* xr = xt + idx[k + (q < m ? q : 0)] * W;  // past the row's end: a repeat, not stored
        acc[q] = gv[0] * V::load(xr);
        for (int v = 1; v < NV; ++v) acc[q] += gv[v] * V::load(xr + v * L);
      }
      fold_sums<T, L>(acc);
      if (m == L) {
        V::store(o + k, first ? acc[0] : acc[0] + V::load(o + k));
      } else {
        for (int q = 0; q < m; ++q) o[k + q] = first ? acc[0][q] : o[k + q] + acc[0][q];
      }
    }
  }
}

template <typename T, int NV>
void sddmm_tiles(const int64_t* ip, const int64_t* id, const T* gt, const T* xt, T* out, int64_t tiles, int64_t n,
                 int64_t rows, int64_t edges) {
  constexpr int64_t W = NV * Vec<T>::lanes;
  at::parallel_for(0, rows, grain(rows, edges, W * tiles), [&](int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < tiles; ++t)
      sddmm_tile_rows<T, NV>(ip, id, gt + t * rows * W, xt + t * n * W, out, t == 0, r0, r1);
  });
}

// Tile width (vectors) for a batch of B over n inputs: the widest of 4/2/1 whose tile of x fits kTileBytes
// (1 MB: half of L2, the rest for gy, out and the pattern), and no wider than the batch needs.
constexpr int64_t kSddmmTileBytes = int64_t{1} << 20;
template <typename T>
int sddmm_tile_vectors(int64_t B, int64_t n) {
  constexpr int L = Vec<T>::lanes;
  int nv = 4;
  while (nv > 1 && ((nv / 2) * L >= B || n * nv * L * int64_t{sizeof(T)} > kSddmmTileBytes)) nv /= 2;
  return nv;
}

// Runs the tiled sddmm once x and gy are packed (W = nv lanes-wide vectors per tile).
template <typename T>
void sddmm_packed(int nv, const int64_t* ip, const int64_t* id, const T* gt, const T* xt, T* out, int64_t tiles,
                  int64_t n, int64_t rows, int64_t edges) {
  if (nv == 4)
    sddmm_tiles<T, 4>(ip, id, gt, xt, out, tiles, n, rows, edges);
  else if (nv == 2)
    sddmm_tiles<T, 2>(ip, id, gt, xt, out, tiles, n, rows, edges);
  else
    sddmm_tiles<T, 1>(ip, id, gt, xt, out, tiles, n, rows, edges);
}

// ------------------------------------------------------------------------------------------ dispatch
void check_pattern(const at::Tensor& indptr, const at::Tensor& indices, int64_t group) {
  TORCH_CHECK(indptr.scalar_type() == at::kLong && indices.scalar_type() == at::kLong,
              "sparseforge: indptr and indices must be int64");
  TORCH_CHECK(indptr.dim() == 1 && indptr.numel() >= 1 && indptr.is_contiguous() && indices.is_contiguous(),
              "sparseforge: indptr [rows + 1] and indices [edges] must be contiguous 1-D tensors");
  TORCH_CHECK(group == 1 || group == 2 || group == 4 || group == 8, "sparseforge: group must be 1, 2, 4 or 8, got ",
              group);
  TORCH_CHECK((indptr.numel() - 1) % group == 0, "sparseforge: rows=", indptr.numel() - 1,
              " is not a multiple of group=", group);
  TORCH_CHECK(indptr.device().is_cpu() && indices.device().is_cpu(), "sparseforge: indptr and indices must be on the CPU");
  // O(rows) sanity of the row pointers (indices themselves are range-checked once, when the layout is built)
  const int64_t* ip = indptr.data_ptr<int64_t>();
  const int64_t rows = indptr.numel() - 1;
  TORCH_CHECK(ip[0] == 0 && ip[rows] == indices.numel(), "sparseforge: indptr must run from 0 to edges=",
              indices.numel(), ", got ", ip[0], " .. ", ip[rows]);
  bool monotone = true;
  for (int64_t r = 0; r < rows; ++r) monotone &= ip[r] <= ip[r + 1];
  TORCH_CHECK(monotone, "sparseforge: indptr must be non-decreasing");
}

void check_rows(const at::Tensor& t, const char* name, at::ScalarType dtype, const char* shape = "[n, batch]",
                const char* along = "the batch") {
  // (a single row's stride is never used: x.t() of an [n, 1] tensor is [1, n] with strides (1, 1))
  TORCH_CHECK(t.dim() == 2 && (t.numel() == 0 || ((t.stride(1) == 1 || t.size(1) <= 1) &&
                                                  (t.stride(0) >= t.size(1) || t.size(0) <= 1))),
              "sparseforge: ", name, " must be 2-D ", shape, " with unit stride along ", along, ", got sizes ",
              t.sizes(), " strides ", t.strides());
  TORCH_CHECK(t.scalar_type() == dtype, "sparseforge: ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
}


template <template <typename, int> class F, typename T, typename... Args>
void with_group(int64_t group, Args&&... args) {
  switch (group) {
    case 1: F<T, 1>::run(args...); break;
    case 2: F<T, 2>::run(args...); break;
    case 4: F<T, 4>::run(args...); break;
    default: F<T, 8>::run(args...); break;
  }
}

template <typename T, int G>
struct SpmmOp {
  static void run(const int64_t* ip, const int64_t* id, const T* v, const Epilogue<T>& ep,
                  const T* x, int64_t ldx, T* y, int64_t B, int64_t groups, int64_t edges) {
    at::parallel_for(0, groups, grain(groups, edges, B),
                     [&](int64_t g0, int64_t g1) { spmm_rows<T, G>(ip, id, v, ep, x, ldx, y, B, g0, g1); });
  }
};

template <typename T, int G>
struct SddmmOp {
  static void run(const int64_t* ip, const int64_t* id, const T* gy, int64_t ldg, const T* x, int64_t ldx, T* out,
                  int64_t B, int64_t groups, int64_t edges) {
    at::parallel_for(0, groups, grain(groups, edges, B),
                     [&](int64_t g0, int64_t g1) { sddmm_rows<T, G>(ip, id, gy, ldg, x, ldx, out, B, g0, g1); });
  }
};

// -------------------------------------------------------------------------------------- batch-major
// Batch-major operands: x[B, n] (samples ldx apart, unit stride along features) -> y[B, rows], with no
// transposed copy of x or y in memory. x is packed one tile of W samples at a time (128 bytes, or one vector
// for small batches) into xt[t][i][0:W] by in-register L x L transposes (L = lanes of a vector), every row
// group is computed one tile at a time with its outputs in registers (tile_rows), and each block of L output
// rows is transposed back in registers and stored as L-wide pieces of L sample rows of y. Work items are
// (tile, feature block) pairs for the pack and (tile, row block) pairs for the product, tile-major, so with
// several tiles a thread mostly reads the tiles it packed itself (its L2). sddmm_bm packs x and gy into the
// tiled sddmm's layout the same way (or, streaming, transposes them whole and runs the feature-major sddmm).

// Feature blocks of the pack: a multiple of L features (the in-register transposes need full blocks).
template <typename T>
constexpr int64_t pack_block() { return 4 * Vec<T>::lanes; }

// One tile of W samples, rows [r0, r1) (r0 a multiple of L and of G): tile_rows into a stage[L][W] block at a
// time, then each full L x L piece is transposed in registers into y[c0 + s][r] (samples ldy apart); partial
// pieces (the last rows of the pattern, the last samples of the batch) are stored one value at a time.
template <typename T, int G, int NV>
void tile_block_bm(const int64_t* ip, const int64_t* id, const T* v, const Epilogue<T>& ep, const T* xt, T* y,
                   int64_t ldy, int64_t c0, int64_t width, int64_t r0, int64_t r1) {
  constexpr int L = Vec<T>::lanes, W = NV * L;
  static_assert(L % G == 0, "a row block holds whole groups");
  alignas(64) T stage[L * W];
  for (int64_t rb = r0; rb < r1; rb += L) {
    const int64_t nr = std::min<int64_t>(L, r1 - rb);
    // stage[q][s] = y[c0 + s][rb + q]: tile_rows writes "feature-major" rows of length W into the stage
    tile_rows<T, G, NV>(ip, id, v, ep, xt, stage, W, 0, width, rb / G, (rb + nr) / G, rb);
    store_transposed<T>(stage, W, nr, width, y, ldy, c0, rb);
  }
}

template <typename T, int G, int NV>
void spmm_bm_tiles(const int64_t* ip, const int64_t* id, const T* v, const Epilogue<T>& ep, const T* x, int64_t ldx,
                   int64_t n, T* y, int64_t B, int64_t rows, int64_t edges) {
  constexpr int L = Vec<T>::lanes, W = NV * L;
  const int64_t tiles = (B + W - 1) / W, blocks = (rows + L - 1) / L;
  const int threads = at::get_num_threads();
  if (tiles > 1 && tiles >= threads) {
    // each thread packs a tile and uses it at once, into one reused buffer of its own that stays in its L2
    // (packing all tiles first wrote tiles * n * W values to memory, cold when other work ran in between, and
    // read them back); threads own whole tiles
    at::parallel_for(0, tiles, grain(tiles, edges * tiles, W), [&](int64_t t0, int64_t t1) {  // >= 64k FMAs a task
      T* xt = scratch<T, 0>(n * W);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t width = std::min<int64_t>(W, B - t * W);
        pack_tiles_bm<T>(x + t * W * ldx, ldx, n, width, W, xt);
        tile_block_bm<T, G, NV>(ip, id, v, ep, xt, y, rows, t * W, width, 0, rows);
      }
    });
    return;
  }
  T* xt = scratch<T, 0>(tiles * n * W);
  pack_tiles_bm<T>(x, ldx, n, B, W, xt);
  at::parallel_for(0, tiles * blocks, std::max<int64_t>(1, grain(rows, edges, W) / L), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1;) {
      const int64_t t = a / blocks, bs = a % blocks, be = std::min(blocks, bs + (a1 - a));
      tile_block_bm<T, G, NV>(ip, id, v, ep, xt + t * n * W, y, rows, t * W, std::min<int64_t>(W, B - t * W), bs * L,
                              std::min(rows, be * L));
      a += be - bs;
    }
  });
}

constexpr int64_t kWideTileBytes = int64_t{1} << 20;

template <typename T, int G>
struct SpmmBmOp {
  static void run(const int64_t* ip, const int64_t* id, const T* v, const Epilogue<T>& ep, const T* x, int64_t ldx,
                  int64_t n, T* y, int64_t B, int64_t rows, int64_t edges) {
    constexpr int L = Vec<T>::lanes;
    const int64_t wide_limit =
        at::get_num_threads() == 1 && edges >= kTileReuse * n ? kWideTileBytes : kWideTileBytes / 2;
    if (B == 1)  // one sample: x and y are single rows, i.e. feature-major columns (gathered dot products)
      SpmmOp<T, G>::run(ip, id, v, ep, x, 1, y, 1, rows / G, edges);
    else if (B <= L)  // small batches: one tile of one vector
      spmm_bm_tiles<T, G, 1>(ip, id, v, ep, x, ldx, n, y, B, rows, edges);
    else if (G <= 4 && B > 2 * L && (B <= 4 * L || n * 4 * L * int64_t{sizeof(T)} <= wide_limit) &&
             n * 4 * L * int64_t{sizeof(T)} <= kWideTileBytes && (B + 4 * L - 1) / (4 * L) >= at::get_num_threads())
      // one tile of 4 vectors (fits L2) instead of two of 2: half the per-row overhead (measured at 4096^2,
      // 5%, 1 thread, loaded machine: batch 48-64 at 0.68-0.84x the feature-major time instead of 0.82-1.09x;
      // no change at 1%); G = 8 would need all 32 vector registers. Larger batches too while a tile of x is
      // at most half of kWideTileBytes (measured, 512 -> 256, batch 128, 1 thread: 0.97x / 1.14x the
      // feature-major time at 10% / 5% instead of 1.02x / 1.24x). On one thread with every input read by many
      // outputs (out-degree >= kTileReuse), tiles of x up to kWideTileBytes (one reused buffer, in L2): half the
      // passes over the pattern (measured, 4096^2 batch 256, 1 thread, thread CPU time: 10% forward 15.9-17.8 ->
      // 14.8-16.0 ms, grad input 18.1-20.2 -> 17.1-17.9; 5% unchanged; 1% unchanged to slower, hence the bound).
      // Not when that leaves fewer tiles than threads: threads sharing one packed tile read half of it from the
      // other core's L2 (2048 -> 1000, batch 64, 2%, 2 threads: 105 us, no faster than one thread; two tiles of
      // 2 vectors, one per thread: 52 us)
      spmm_bm_tiles<T, G, 4>(ip, id, v, ep, x, ldx, n, y, B, rows, edges);
    else
      spmm_bm_tiles<T, G, kTileVectors>(ip, id, v, ep, x, ldx, n, y, B, rows, edges);
  }
};

template <typename T>
Epilogue<T> epilogue(const std::optional<at::Tensor>& bias, std::optional<double> lo, std::optional<double> hi) {
  Epilogue<T> ep;
  if (bias.has_value() && bias->defined()) ep.bias = bias->data_ptr<T>();
  if (lo && hi) ep = {ep.bias, true, static_cast<T>(*lo), static_cast<T>(*hi)};
  return ep;
}

// The values in this pattern's edge order: values[perm[e]] gathered in one parallel pass into a reused buffer
// when perm is given, else values itself.
template <typename T>
const T* edge_values(const at::Tensor& values, const int64_t* perm, int64_t edges) {
  const T* v = values.data_ptr<T>();
  if (!perm) return v;
  T* pv = scratch<T, 1>(edges);
  at::parallel_for(0, edges, int64_t{1} << 14, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) pv[e] = v[perm[e]];
  });
  return pv;
}

template <typename T>
void spmm_run(bool tiled, const int64_t* ip, const int64_t* id, const int64_t* perm, const at::Tensor& values,
              const std::optional<at::Tensor>& bias, std::optional<double> lo, std::optional<double> hi,
              const at::Tensor& x, at::Tensor& y, int64_t group, int64_t rows, int64_t edges) {
  const Epilogue<T> ep = epilogue<T>(bias, lo, hi);
  const int64_t B = x.size(1);
  const T* v = edge_values<T>(values, perm, edges);
  if (tiled)
    spmm_tiled<T>(ip, id, v, ep, x.data_ptr<T>(), x.stride(0), x.size(0), y.data_ptr<T>(), B, rows, edges);
  else
    with_group<SpmmOp, T>(group, ip, id, v, ep, x.data_ptr<T>(), x.stride(0), y.data_ptr<T>(), B, rows / group,
                          edges);
}

// The checks both spmm entries share; returns perm's data (nullptr when there is none).
const int64_t* check_spmm_operands(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& values,
                                   const at::Tensor& x, int64_t group, const std::optional<at::Tensor>& bias, std::optional<double> lo,
                                   std::optional<double> hi, const std::optional<at::Tensor>& perm) {
  check_pattern(indptr, indices, group);
  TORCH_CHECK(x.device().is_cpu() && values.device().is_cpu(), "sparseforge: x and values must be on the CPU");
  TORCH_CHECK(values.is_contiguous() && values.numel() == indices.numel(),
              "sparseforge: values must be contiguous with one entry per edge");
  const bool has_perm = perm.has_value() && perm->defined();
  if (has_perm)  // a permutation of the edges (not checked element-wise: callers pass the pattern's transpose order)
    TORCH_CHECK(perm->scalar_type() == at::kLong && perm->dim() == 1 && perm->is_contiguous() &&
                    perm->numel() == indices.numel(),
                "sparseforge: perm must be a contiguous int64 [edges] tensor");
  const int64_t rows = indptr.numel() - 1;
  if (bias.has_value() && bias->defined())
    TORCH_CHECK(bias->dim() == 1 && bias->numel() == rows && bias->is_contiguous() &&
                    bias->scalar_type() == values.scalar_type(),
                "sparseforge: bias must be a contiguous [rows=", rows, "] tensor of the values' dtype");
  TORCH_CHECK(lo.has_value() == hi.has_value() && (!lo || *lo <= *hi),
              "sparseforge: clamp needs both lo and hi with lo <= hi");
  return has_perm ? perm->data_ptr<int64_t>() : nullptr;
}

at::Tensor spmm(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& values, const at::Tensor& x,
                int64_t group, const std::optional<at::Tensor>& bias, std::optional<double> lo,
                std::optional<double> hi, const std::optional<at::Tensor>& perm, int64_t tile) {
  check_rows(x, "x", values.scalar_type());
  TORCH_CHECK(tile >= -1 && tile <= 1, "sparseforge: tile must be -1 (choose), 0 (stream rows) or 1 (tiled), got ",
              tile);
  const int64_t* pp = check_spmm_operands(indptr, indices, values, x, group, bias, lo, hi, perm);
  const int64_t rows = indptr.numel() - 1, B = x.size(1);
  at::Tensor y = at::empty({rows, B}, x.options());
  if (rows == 0 || B == 0) return y;
  huge_page_hint(y.data_ptr(), y.nbytes());
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  const int64_t n = x.size(0), edges = indices.numel();
  const bool tiled = tile == 1 || (tile == -1 && group == 1 && n > 0 && edges >= kTileReuse * n &&
                                   B >= kTileVectors * kVecBytes / static_cast<int64_t>(x.element_size()));
  TORCH_CHECK(!tiled || group == 1, "sparseforge: the tiled kernel is for ungrouped patterns (group 1), got ", group);
  if (x.scalar_type() == at::kFloat)
    spmm_run<float>(tiled, ip, id, pp, values, bias, lo, hi, x, y, group, rows, edges);
  else if (x.scalar_type() == at::kDouble)
    spmm_run<double>(tiled, ip, id, pp, values, bias, lo, hi, x, y, group, rows, edges);
  else
    TORCH_CHECK(false, "sparseforge: spmm supports float32 and float64, got ", x.scalar_type());
  return y;
}

// tile: -1 choose, 0 stream whole rows, 1 tiled (see "tiled sddmm").
void check_tile(int64_t tile) {
  TORCH_CHECK(tile >= -1 && tile <= 1, "sparseforge: tile must be -1 (choose), 0 (stream rows) or 1 (tiled), got ",
              tile);
}

// Whether sddmm runs tiled. tile == -1 chooses: batches of at least one vector, and for feature-major
// operands a mean out-degree of at least kSddmmTileReuse (batch-major streaming pays for whole transposes
// first, so tiles win there at any degree). Measured, 1 thread, thread CPU time, 4096^2 batch 256: 10%
// density 50 -> 21 ms (fm and bm), 1% 5.0 -> 3.1 ms (fm), 5.7 -> 2.9 ms (bm); out-degree 8: fm streaming
// 1.2 ms vs tiled 1.7 ms, bm streaming 2.2 ms vs tiled 1.6 ms.
constexpr int64_t kSddmmTileReuse = 16;
// Groups of 8 rows stream (each gathered row feeds 8 dot products there; the tiled kernel runs rows one by
// one): 8x8 block pattern at 10%, 4096^2 batch 256: streaming 18.3 / 19.3 ms (fm / bm) vs tiled 20.5 / 20.9;
// groups of 4: tiled 22.4 / 20.9 vs streaming 29.1 / 27.5.
bool sddmm_tiled_choice(int64_t tile, bool batch_major, int64_t group, int64_t n, int64_t edges, int64_t B,
                        int64_t elem) {
  if (tile != -1) return tile == 1;
  return group <= 4 && B * elem >= kVecBytes && (batch_major || (n > 0 && edges >= kSddmmTileReuse * n));
}

// The tiled sddmm on x and gy given by pack(src, rows, W, dst) into tile layout; scratch slots 2 and 3.
template <typename T, typename Pack>
void sddmm_tiled_run(const int64_t* ip, const int64_t* id, int64_t rows, int64_t n, int64_t B, T* out,
                     Pack&& pack_x, Pack&& pack_gy) {
  const int nv = sddmm_tile_vectors<T>(B, n);
  const int64_t W = nv * Vec<T>::lanes, tiles = (B + W - 1) / W;
  T* xt = scratch<T, 2>(tiles * n * W);
  T* gt = scratch<T, 3>(tiles * rows * W);
  pack_x(W, xt);
  pack_gy(W, gt);
  sddmm_packed<T>(nv, ip, id, gt, xt, out, tiles, n, rows, ip[rows]);
}

template <typename T>
void sddmm_fm_run(const int64_t* ip, const int64_t* id, const at::Tensor& gy, const at::Tensor& x, at::Tensor& out,
                  int64_t group, int64_t rows, bool tiled) {
  const int64_t B = x.size(1), n = x.size(0);
  const T *xp = x.data_ptr<T>(), *gp = gy.data_ptr<T>();
  if (!tiled) {
    with_group<SddmmOp, T>(group, ip, id, gp, gy.stride(0), xp, x.stride(0), out.data_ptr<T>(), B, rows / group,
                           ip[rows]);
    return;
  }
  auto pack = [B](const T* src, int64_t ld, int64_t count) {
    return [=](int64_t W, T* dst) {
      at::parallel_for(0, count, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(B, 1)),
                       [&](int64_t i0, int64_t i1) { pack_tiles<T>(src, ld, count, B, W, dst, i0, i1); });
    };
  };
  sddmm_tiled_run<T>(ip, id, rows, n, B, out.data_ptr<T>(), pack(xp, x.stride(0), n), pack(gp, gy.stride(0), rows));
}

at::Tensor sddmm(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& gy, const at::Tensor& x,
                 int64_t group, int64_t tile) {
  check_pattern(indptr, indices, group);
  check_rows(x, "x", gy.scalar_type());
  check_rows(gy, "gy", gy.scalar_type());
  check_tile(tile);
  TORCH_CHECK(x.device().is_cpu() && gy.device().is_cpu(), "sparseforge: x and gy must be on the CPU");
  const int64_t rows = indptr.numel() - 1, B = x.size(1);
  TORCH_CHECK(gy.size(0) == rows && gy.size(1) == B, "sparseforge: gy must be [rows=", rows, ", batch=", B, "]");
  at::Tensor out = at::empty({indices.numel()}, x.options());
  if (indices.numel() == 0) return out;
  if (B == 0) return out.zero_();
  huge_page_hint(out.data_ptr(), out.nbytes());
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  const bool tiled = sddmm_tiled_choice(tile, false, group, x.size(0), indices.numel(), B, x.element_size());
  if (x.scalar_type() == at::kFloat)
    sddmm_fm_run<float>(ip, id, gy, x, out, group, rows, tiled);
  else if (x.scalar_type() == at::kDouble)
    sddmm_fm_run<double>(ip, id, gy, x, out, group, rows, tiled);
  else
    TORCH_CHECK(false, "sparseforge: sddmm supports float32 and float64, got ", x.scalar_type());
  return out;
}

// Batch-major spmm: x[B, n] -> y[B, rows] (see "batch-major" above); same operands as spmm otherwise.
at::Tensor spmm_bm(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& values, const at::Tensor& x,
                   int64_t group, const std::optional<at::Tensor>& bias, std::optional<double> lo,
                   std::optional<double> hi, const std::optional<at::Tensor>& perm) {
  check_rows(x, "x", values.scalar_type(), "[batch, n]", "features");
  const int64_t* pp = check_spmm_operands(indptr, indices, values, x, group, bias, lo, hi, perm);
  const int64_t rows = indptr.numel() - 1, B = x.size(0), n = x.size(1), edges = indices.numel();
  at::Tensor y = at::empty({B, rows}, x.options());
  if (rows == 0 || B == 0) return y;
  huge_page_hint(y.data_ptr(), y.nbytes());
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  if (x.scalar_type() == at::kFloat) {
    const float* v = edge_values<float>(values, pp, edges);
    with_group<SpmmBmOp, float>(group, ip, id, v, epilogue<float>(bias, lo, hi), x.data_ptr<float>(), x.stride(0), n,
                                y.data_ptr<float>(), B, rows, edges);
  } else if (x.scalar_type() == at::kDouble) {
    const double* v = edge_values<double>(values, pp, edges);
    with_group<SpmmBmOp, double>(group, ip, id, v, epilogue<double>(bias, lo, hi), x.data_ptr<double>(), x.stride(0),
                                 n, y.data_ptr<double>(), B, rows, edges);
  } else {
    TORCH_CHECK(false, "sparseforge: spmm_bm supports float32 and float64, got ", x.scalar_type());
  }
  return y;
}

// The tiled batch-major sddmm over several tiles, rows [rb, re) (as spmm_bm_tiles): each tile of x is packed
// into one reused buffer (L2) and used at once, and gy is packed kSddmmRowChunk rows at a time just before those
// rows run, instead of packing every tile of both to memory first (written, cold when other work ran in between,
// and read back).
constexpr int64_t kSddmmRowChunk = 256;
template <typename T, int NV>
void sddmm_bm_tilewise(const int64_t* ip, const int64_t* id, const T* xp, int64_t ldx, const T* gp, int64_t ldg,
                       int64_t n, int64_t rb, int64_t re, int64_t B, T* out) {
  constexpr int64_t W = NV * Vec<T>::lanes;
  T* xt = scratch<T, 2>(n * W);
  T* gt = scratch<T, 3>(kSddmmRowChunk * W);
  for (int64_t c0 = 0; c0 < B; c0 += W) {
    const int64_t width = std::min(W, B - c0);
    pack_tiles_bm<T>(xp + c0 * ldx, ldx, n, width, W, xt);
    for (int64_t r0 = rb; r0 < re; r0 += kSddmmRowChunk) {
      const int64_t r1 = std::min(re, r0 + kSddmmRowChunk);
      // gt[r - r0][s] = gy[c0 + s][r] (zero past the batch); sddmm_tile_rows reads row r at gt + (r - r0) * W
      transpose_rows<T>(gp + c0 * ldg + r0, ldg, width, W, gt, W, 0, r1 - r0);
      sddmm_tile_rows<T, NV>(ip, id, gt, xt, out, c0 == 0, r0, r1, r0);
    }
  }
}

// Batch-major sddmm: g[e] = sum_b gy[b, row(e)] * x[b, indices[e]] for gy[B, rows], x[B, n]. Tiled: x and gy
// are packed straight into batch tiles by in-register transposes (pack_tiles_bm) and the tiled sddmm runs on
// them (several tiles: sddmm_bm_tilewise on each thread's rows, each tile packed when it is used); streaming:
// both are transposed whole into reused feature-major buffers and the streaming sddmm runs.
template <typename T>
void sddmm_bm_run(const int64_t* ip, const int64_t* id, const at::Tensor& gy, const at::Tensor& x, at::Tensor& out,
                  int64_t group, int64_t rows, bool tiled) {
  constexpr int64_t F = pack_block<T>();
  const int64_t B = x.size(0), n = x.size(1);
  const T *xp = x.data_ptr<T>(), *gp = gy.data_ptr<T>();
  if (tiled) {
    const int nv = sddmm_tile_vectors<T>(B, n), threads = at::get_num_threads();
    if (B > nv * Vec<T>::lanes) {  // several tiles: pack each when it is used (see sddmm_bm_tilewise)
      T* o = out.data_ptr<T>();
      // threads own row ranges, each packing every tile of x itself into its own L2 (tiles packed once by all
      // threads and shared were read half from the other core's L2: 2 threads, 4096^2 batch 256, 1%: 1.75 ->
      // 1.32 ms; 10% unchanged, 8.5 ms)
      const int64_t per_thread = std::max(grain(rows, ip[rows], B), (rows + threads - 1) / threads);
      at::parallel_for(0, rows, per_thread, [&](int64_t r0, int64_t r1) {
        if (nv == 4)
          sddmm_bm_tilewise<T, 4>(ip, id, xp, x.stride(0), gp, gy.stride(0), n, r0, r1, B, o);
        else if (nv == 2)
          sddmm_bm_tilewise<T, 2>(ip, id, xp, x.stride(0), gp, gy.stride(0), n, r0, r1, B, o);
        else
          sddmm_bm_tilewise<T, 1>(ip, id, xp, x.stride(0), gp, gy.stride(0), n, r0, r1, B, o);
      });
      return;
    }
  }
  if (tiled) {
    auto pack = [B](const T* src, int64_t ld, int64_t count) {
      return [=](int64_t W, T* dst) { pack_tiles_bm<T>(src, ld, count, B, W, dst); };
    };
    sddmm_tiled_run<T>(ip, id, rows, n, B, out.data_ptr<T>(), pack(xp, x.stride(0), n), pack(gp, gy.stride(0), rows));
    return;
  }
  T* xt = scratch<T, 2>(n * B);
  T* gt = scratch<T, 3>(rows * B);
  const int64_t xb = (n + F - 1) / F, gb = (rows + F - 1) / F;
  at::parallel_for(0, xb + gb, std::max<int64_t>(1, (int64_t{1} << 14) / (F * B)), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      if (a < xb)
        transpose_rows<T>(xp, x.stride(0), B, B, xt, B, a * F, std::min(n, (a + 1) * F));
      else
        transpose_rows<T>(gp, gy.stride(0), B, B, gt, B, (a - xb) * F, std::min(rows, (a - xb + 1) * F));
    }
  });
  with_group<SddmmOp, T>(group, ip, id, gt, B, xt, B, out.data_ptr<T>(), B, rows / group, ip[rows]);
}

at::Tensor sddmm_bm(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& gy, const at::Tensor& x,
                    int64_t group, int64_t tile) {
  check_pattern(indptr, indices, group);
  check_rows(x, "x", gy.scalar_type(), "[batch, n]", "features");
  check_rows(gy, "gy", gy.scalar_type(), "[batch, rows]", "rows");
  check_tile(tile);
  TORCH_CHECK(x.device().is_cpu() && gy.device().is_cpu(), "sparseforge: x and gy must be on the CPU");
  const int64_t rows = indptr.numel() - 1, B = x.size(0);
  TORCH_CHECK(gy.size(0) == B && gy.size(1) == rows, "sparseforge: gy must be [batch=", B, ", rows=", rows, "], got ",
              gy.sizes());
  at::Tensor out = at::empty({indices.numel()}, x.options());
  if (indices.numel() == 0) return out;
  if (B == 0) return out.zero_();
  huge_page_hint(out.data_ptr(), out.nbytes());
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  const bool tiled = sddmm_tiled_choice(tile, true, group, x.size(1), indices.numel(), B, x.element_size());
  if (x.scalar_type() == at::kFloat)
    sddmm_bm_run<float>(ip, id, gy, x, out, group, rows, tiled);
  else if (x.scalar_type() == at::kDouble)
    sddmm_bm_run<double>(ip, id, gy, x, out, group, rows, tiled);
  else
    TORCH_CHECK(false, "sparseforge: sddmm_bm supports float32 and float64, got ", x.scalar_type());
  return out;
}

// The eager inference entry (python.cpp): y[B, rows] = x[B, n_in] W^T (+ bias), or an undefined tensor when the
// operands do not fit this path (the caller then takes the general one). The pattern (indptr, indices, group) is a
// layer's, validated when its layout was built; only the sizes the kernel relies on are checked here, and nothing
// goes through the dispatcher (cold, every dispatched call cost ~20 us of a ~100 us product at 512 -> 256 when
// other work ran in between: the benchmark's situation, and a network's).
template <typename T>
at::Tensor linear_bm_run(const at::Tensor& x, const at::Tensor& values, const at::Tensor* bias, const int64_t* ip,
                         const int64_t* id, int64_t group, int64_t rows, int64_t edges) {
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor y(at::detail::empty_cpu({B, rows}, x.scalar_type()));
  if (B == 0 || rows == 0) return y;
  huge_page_hint(y.data_ptr(), y.nbytes());
  Epilogue<T> ep;
  if (bias) ep.bias = bias->data_ptr<T>();
  with_group<SpmmBmOp, T>(group, ip, id, values.data_ptr<T>(), ep, x.data_ptr<T>(), x.stride(0), n, y.data_ptr<T>(),
                          B, rows, edges);
  return y;
}

}  // namespace

namespace sparseforge {

at::Tensor linear_bm(const at::Tensor& x, const at::Tensor& values, const at::Tensor* bias, const at::Tensor& indptr,
                     const at::Tensor& indices, int64_t group, int64_t n_in) {
  const at::ScalarType dtype = x.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) || x.dim() != 2 || x.size(1) != n_in || !x.device().is_cpu() ||
      x.is_conj() || x.is_neg() || x.layout() != at::kStrided)
    return {};
  if (x.numel() && !((x.stride(1) == 1 || x.size(1) <= 1) && (x.stride(0) >= x.size(1) || x.size(0) <= 1)))
    return {};  // rows not unit-stride: the general path copies
  if (values.scalar_type() != dtype || !values.device().is_cpu() || !values.is_contiguous() ||
      values.numel() != indices.numel())
    return {};
  const int64_t rows = indptr.numel() - 1;
  if (bias && (bias->scalar_type() != dtype || !bias->device().is_cpu() || !bias->is_contiguous() ||
               bias->dim() != 1 || bias->numel() != rows))
    return {};
  if (indptr.scalar_type() != at::kLong || indices.scalar_type() != at::kLong || !indptr.device().is_cpu() ||
      !indptr.is_contiguous() || !indices.is_contiguous() || rows < 0 || !(group == 1 || group == 2 || group == 4 ||
      group == 8) || rows % group)
    return {};
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>(), edges = indices.numel();
  if (ip[0] != 0 || ip[rows] != edges) return {};
  return dtype == at::kFloat ? linear_bm_run<float>(x, values, bias, ip, id, group, rows, edges)
                             : linear_bm_run<double>(x, values, bias, ip, id, group, rows, edges);
}

}  // namespace sparseforge

TORCH_LIBRARY(sparseforge, m) {
  m.def("spmm(Tensor indptr, Tensor indices, Tensor values, Tensor x, int group, Tensor? bias=None, float? lo=None, float? hi=None, Tensor? perm=None, int tile=-1) -> Tensor");
  m.def("sddmm(Tensor indptr, Tensor indices, Tensor gy, Tensor x, int group, int tile=-1) -> Tensor");
  m.def("spmm_bm(Tensor indptr, Tensor indices, Tensor values, Tensor x, int group, Tensor? bias=None, float? lo=None, float? hi=None, Tensor? perm=None) -> Tensor");
  m.def("sddmm_bm(Tensor indptr, Tensor indices, Tensor gy, Tensor x, int group, int tile=-1) -> Tensor");
}

TORCH_LIBRARY_IMPL(sparseforge, CPU, m) {
  m.impl("spmm", &spmm);
  m.impl("sddmm", &sddmm);
  m.impl("spmm_bm", &spmm_bm);
  m.impl("sddmm_bm", &sddmm_bm);
}
