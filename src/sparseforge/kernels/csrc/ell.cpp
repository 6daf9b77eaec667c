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
//   sddmm(indptr, indices, gy, x, G) -> g[edges]: g[e] = <gy[row(e)], x[indices[e]]>
//
// Forward and grad-input are spmm; grad-input runs over the transposed pattern, whose edge e has the value
// values[perm[e]], gathered by the op in one parallel pass into a reused buffer (torch's index_select took
// 8 ms of a 30 ms grad-input at 4096^2, 10% density); grad-values is sddmm.
// Two spmm strategies: by default whole batch rows are streamed (a gathered row is `batch` contiguous
// values, read once per edge, which keeps the hardware prefetchers and the TLB effective), K edges per pass,
// so each pass over an accumulator row in L1 does K multiply-adds; at low density this runs at the L3
// streaming bandwidth. When every input row is read by many outputs, batch tiles of x are packed so the
// gathers hit L2 instead ("tiled spmm" below). sddmm streams whole rows. Threads (at::parallel_for: torch's
// OpenMP pool and thread count) own disjoint output ranges: no synchronisation. Vector width follows the
// compile flags (-march=native) through GCC vector extensions; no intrinsics.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

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

// Edges per pass (measured): enough independent loads to hide latency and few accumulator passes per edge;
// sddmm keeps K * G vector accumulators in registers, so it unrolls less for wide groups.
constexpr int spmm_unroll(int group) { return group == 1 ? 8 : group == 8 ? 2 : 4; }
constexpr int sddmm_unroll(int group) { return group == 1 ? 8 : group == 2 ? 4 : group == 4 ? 2 : 1; }

// ---------------------------------------------------------------------------------------------- spmm
// What is applied to each finished output row: + bias[r] (if bias), then clamp to [lo, hi] (if clamp).
template <typename T>
struct Epilogue {
  const T* bias = nullptr;
  bool clamp = false;
  T lo = 0, hi = 0;
  bool any() const { return bias || clamp; }
};

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

// The epilogue on n finished values of row r (the bias is added last, as (W x) + b rounds).
template <typename T>
inline void finish(const Epilogue<T>& ep, int64_t r, T* row, int64_t n) {
  if (ep.bias)
    for (int64_t c = 0; c < n; ++c) row[c] += ep.bias[r];
  if (ep.clamp)
    for (int64_t c = 0; c < n; ++c) row[c] = std::min(std::max(row[c], ep.lo), ep.hi);
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
      for (int u = 0; u < G; ++u) {
        T s[4] = {0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 4 <= n; k += 4)
          for (int q = 0; q < 4; ++q) s[q] += vals[u][k + q] * x[idx[k + q] * ldx];
        for (; k < n; ++k) s[0] += vals[u][k] * x[idx[k] * ldx];
        yg[u] = (s[0] + s[1]) + (s[2] + s[3]);
      }
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

// Rows [r0, r1) of the tile xt at batch columns [c0, c0 + width) of y[rows, B].
template <typename T>
void spmm_tile_rows(const int64_t* indptr, const int64_t* indices, const T* values, const Epilogue<T>& ep,
                    const T* xt, T* y, int64_t B, int64_t c0, int64_t width, int64_t r0, int64_t r1) {
  using V = Vec<T>;
  using VT = typename V::type;
  constexpr int L = V::lanes, NV = kTileVectors, W = NV * L, P = NV >= 8 ? 1 : 8 / NV;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t beg = indptr[r], n = indptr[r + 1] - beg;
    const int64_t* idx = indices + beg;
    const T* vals = values + beg;
    VT acc[P][NV];
    for (int p = 0; p < P; ++p)
      for (int v = 0; v < NV; ++v) acc[p][v] = VT{};
    int64_t k = 0;
    for (; k + P <= n; k += P)
      for (int p = 0; p < P; ++p) {
        const T* xr = xt + idx[k + p] * W;
        const T w = vals[k + p];
        for (int v = 0; v < NV; ++v) acc[p][v] += w * V::load(xr + v * L);
      }
    for (; k < n; ++k) {
      const T* xr = xt + idx[k] * W;
      for (int v = 0; v < NV; ++v) acc[0][v] += vals[k] * V::load(xr + v * L);
    }
    T out[W];
    for (int v = 0; v < NV; ++v) {
      VT s = acc[0][v];
      for (int p = 1; p < P; ++p) s += acc[p][v];
      V::store(out + v * L, s);
    }
    finish(ep, r, out, width);
    std::memcpy(y + r * B + c0, out, sizeof(T) * width);
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
      spmm_tile_rows<T>(ip, id, v, ep, xt + t * n * W, y, B, t * W, std::min(W, B - t * W), rs, re);
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

void check_rows(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.dim() == 2 && (t.stride(1) == 1 || t.size(1) <= 1) && t.stride(0) >= t.size(1),
              "sparseforge: ", name, " must be 2-D [n, batch] with unit stride along the batch, got sizes ",
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

template <typename T>
Epilogue<T> epilogue(const std::optional<at::Tensor>& bias, std::optional<double> lo, std::optional<double> hi) {
  Epilogue<T> ep;
  if (bias.has_value() && bias->defined()) ep.bias = bias->data_ptr<T>();
  if (lo && hi) ep = {ep.bias, true, static_cast<T>(*lo), static_cast<T>(*hi)};
  return ep;
}

template <typename T>
void spmm_run(bool tiled, const int64_t* ip, const int64_t* id, const int64_t* perm, const at::Tensor& values,
              const std::optional<at::Tensor>& bias, std::optional<double> lo, std::optional<double> hi,
              const at::Tensor& x, at::Tensor& y, int64_t group, int64_t rows, int64_t edges) {
  const Epilogue<T> ep = epilogue<T>(bias, lo, hi);
  const int64_t B = x.size(1);
  const T* v = values.data_ptr<T>();
  if (perm) {  // values into this pattern's edge order, one parallel pass (into a reused buffer)
    T* pv = scratch<T, 1>(edges);
    at::parallel_for(0, edges, int64_t{1} << 14, [&](int64_t e0, int64_t e1) {
      for (int64_t e = e0; e < e1; ++e) pv[e] = v[perm[e]];
    });
    v = pv;
  }
  if (tiled)
    spmm_tiled<T>(ip, id, v, ep, x.data_ptr<T>(), x.stride(0), x.size(0), y.data_ptr<T>(), B, rows, edges);
  else
    with_group<SpmmOp, T>(group, ip, id, v, ep, x.data_ptr<T>(), x.stride(0), y.data_ptr<T>(), B, rows / group,
                          edges);
}

at::Tensor spmm(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& values, const at::Tensor& x,
                int64_t group, const std::optional<at::Tensor>& bias, std::optional<double> lo,
                std::optional<double> hi, const std::optional<at::Tensor>& perm, int64_t tile) {
  check_pattern(indptr, indices, group);
  check_rows(x, "x", values.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && values.device().is_cpu(), "sparseforge: x and values must be on the CPU");
  TORCH_CHECK(values.is_contiguous() && values.numel() == indices.numel(),
              "sparseforge: values must be contiguous with one entry per edge");
  TORCH_CHECK(tile >= -1 && tile <= 1, "sparseforge: tile must be -1 (choose), 0 (stream rows) or 1 (tiled), got ",
              tile);
  const bool has_perm = perm.has_value() && perm->defined();
  if (has_perm)  // a permutation of the edges (not checked element-wise: callers pass the pattern's transpose order)
    TORCH_CHECK(perm->scalar_type() == at::kLong && perm->dim() == 1 && perm->is_contiguous() &&
                    perm->numel() == indices.numel(),
                "sparseforge: perm must be a contiguous int64 [edges] tensor");
  const int64_t* pp = has_perm ? perm->data_ptr<int64_t>() : nullptr;
  const int64_t rows = indptr.numel() - 1, B = x.size(1);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias)
    TORCH_CHECK(bias->dim() == 1 && bias->numel() == rows && bias->is_contiguous() &&
                    bias->scalar_type() == values.scalar_type(),
                "sparseforge: bias must be a contiguous [rows=", rows, "] tensor of the values' dtype");
  TORCH_CHECK(lo.has_value() == hi.has_value() && (!lo || *lo <= *hi),
              "sparseforge: clamp needs both lo and hi with lo <= hi");
  at::Tensor y = at::empty({rows, B}, x.options());
  if (rows == 0 || B == 0) return y;
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

at::Tensor sddmm(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& gy, const at::Tensor& x,
                 int64_t group) {
  check_pattern(indptr, indices, group);
  check_rows(x, "x", gy.scalar_type());
  check_rows(gy, "gy", gy.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && gy.device().is_cpu(), "sparseforge: x and gy must be on the CPU");
  const int64_t rows = indptr.numel() - 1, B = x.size(1);
  TORCH_CHECK(gy.size(0) == rows && gy.size(1) == B, "sparseforge: gy must be [rows=", rows, ", batch=", B, "]");
  at::Tensor out = at::empty({indices.numel()}, x.options());
  if (indices.numel() == 0) return out;
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  if (x.scalar_type() == at::kFloat)
    with_group<SddmmOp, float>(group, ip, id, gy.data_ptr<float>(), gy.stride(0), x.data_ptr<float>(), x.stride(0),
                               out.data_ptr<float>(), B, rows / group, indices.numel());
  else if (x.scalar_type() == at::kDouble)
    with_group<SddmmOp, double>(group, ip, id, gy.data_ptr<double>(), gy.stride(0), x.data_ptr<double>(),
                                x.stride(0), out.data_ptr<double>(), B, rows / group, indices.numel());
  else
    TORCH_CHECK(false, "sparseforge: sddmm supports float32 and float64, got ", x.scalar_type());
  return out;
}

}  // namespace

TORCH_LIBRARY(sparseforge, m) {
  m.def("spmm(Tensor indptr, Tensor indices, Tensor values, Tensor x, int group, Tensor? bias=None, float? lo=None, float? hi=None, Tensor? perm=None, int tile=-1) -> Tensor");
  m.def("sddmm(Tensor indptr, Tensor indices, Tensor gy, Tensor x, int group) -> Tensor");
}

TORCH_LIBRARY_IMPL(sparseforge, CPU, m) {
  m.impl("spmm", &spmm);
  m.impl("sddmm", &sddmm);
}
