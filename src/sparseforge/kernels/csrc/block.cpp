// Native CPU kernels for *block patterns*: every nonzero of W[rows, n] lies in a dense BS x BS block whose
// corner is a multiple of BS (BS = 4, 8 or 16; topology/block.py). The operands are the scalar CSR arrays of
// the pattern (indptr[rows + 1], indices[edges], values[edges] in CSR order), read as blocks: block row R
// holds rows R*BS .. R*BS + BS - 1, which share one index list; that list is runs of BS consecutive inputs,
// so block k of block row R starts at input indices[indptr[R*BS] + k*BS] and W[R*BS + o, c*BS + i] is
// values[indptr[R*BS + o] + k*BS + i]. One index is read per block (not per edge) and the BS input rows of a
// block are contiguous, so the inner loops have no gathers.
//
//   block_spmm(indptr, indices, values, x, BS, bias, lo, hi, perm) -> y[rows, B]   (feature-major x[n, B])
//   block_spmm_bm(...)                                             -> y[B, rows]   (batch-major x[B, n])
//        y = clamp(W x + bias, lo, hi) (bias, clamp optional). With perm, (indptr, indices) are the transposed
//        pattern (again a block pattern: each block transposed) and its edge e has the value values[perm[e]]:
//        this is grad-input, W^T gy (see "Transposed").
//   block_sddmm(indptr, indices, gy, x, BS)    -> g[edges]  (feature-major gy[rows, B], x[n, B])
//   block_sddmm_bm(indptr, indices, gy, x, BS) -> g[edges]  (batch-major gy[B, rows], x[B, n])
//        g[e] = sum_s gy(s, row(e)) * x(s, indices[e]): per block a dense BS x BS product gy_blk^T x_blk.
//
// Forward / grad-input ("tile" kernel). x is cut into tiles of W = NV vectors of samples, each packed
// feature-major (xt[i][0:W]: in-register transposes of batch-major x, row copies of feature-major x) so
// that a tile (n * W values) stays in L2 while every block row reads it. For a block row and a tile the
// kernel keeps OC x NV vector accumulators (OC outputs x W samples) in registers over all its blocks: per
// input i of a block it loads NV vectors of x (row i of the block, contiguous) and broadcasts OC weights,
// for OC * NV multiply-adds. With AVX-512 (32 registers, 16 floats) and BS = 8: OC = 8, NV <= 3, so
// 24 accumulators + 3 x vectors, and per input 3 loads + 8 broadcasts for 24 FMAs (the compiled loop: 3
// loads, 8 vbroadcastss, 24 vfmadd231ps, 4 scalar ops): the two FMA ports, not the two load ports, are the
// limit (11 loads take 5.5 cycles, 24 FMAs 12); at batch 256 NV = 2 (tile_vectors: no narrow last tile).
// BS = 4: OC = 4, NV <= 6 (6 + 4 loads per 24 FMAs); BS = 16: OC = 16, NV = 1 (1 + 16 loads per 16 FMAs:
// nearly load-bound). With 16 registers (AVX2) the accumulator budget is 12. W is capped so that a tile of x
// fits half of L2; tiles are the outer loop (weights re-read once per tile, from L3), which keeps the output
// rows of one tile in the TLB (a span of tiles per pass over the weights measured slower). The blocks of a
// block row sit at random places in the tile, so while it works on block k the kernel prefetches block k + 1's
// BS x rows (BS * W values) into L1, spread over the BS inputs (at 4096^2, 10%, b = 8, batch 256, one thread,
// CPU clock, A/B in one process: forward 7.8-8.5 -> 6.9-7.3 ms, grad-input 9.8-10.4 -> 8.7-9.6 ms; again on a
// busier machine 8.9-9.1 -> 7.9-8.3 ms and 11.7-12.3 -> 9.9-10.7 ms; b = 4, 16 and float64 no slower). Not the bottleneck there (A/B, same setup): the OC weight streams (one
// block-contiguous stream: kernel no faster, the copy costs ~1 ms per call), nor the weight re-reads per
// tile (OC = 4, NV = 4 at b = 8: no faster).
// Batch-major output: L consecutive output rows are staged [L][W] and written back as L x L register
// transposes (one L-wide store per sample row).
//
// Transposed (grad-input): row o of block (R, k) of W^T is input column R*BS + o of W, and input i is row
// c*BS + i of W; W^T[R*BS + o, c*BS + i] = values[perm[e0 + i] + o] with e0 = the transposed block's first
// edge: one perm lookup per input of a block gives BS contiguous weights. These are copied once per call
// into the transpose's CSR order (a BS x BS transpose per block, into a reused buffer), and the forward
// kernel runs on that: reading them in place would cost BS random cache lines per block on every tile.
//
// Grad-values ("block product" kernel). Per block row R and block k, G = gy_R^T x_k is BS x BS over the
// batch. Vectors run over inputs i (Q = min(BS, L) inputs) and P = L / Q samples: lane p*Q + q holds sample
// s*P + p, input q, so x is packed per block as xb[c][s][i] (contiguous, one load per vector) and gy is
// expanded per block row into ge[s/P][o][L] (gy(s + p, o) repeated over the Q lanes of group p; for P = 1 a
// plain broadcast from gy). For KB blocks at once, per vector of samples: KB x loads + OC gy loads for
// KB * OC FMAs (BS = 8, AVX-512: KB = 3, 3 + 8 loads per 24 FMAs), and at the end of a tile each
// accumulator's P lane groups are summed (log2(P) shuffle + add steps) into the Q values of one output row
// of the block: no full horizontal reductions. The batch is cut into tiles whose packed x fits half of L2
// (and whose expanded gy fits half of L1); each tile adds its part into g (the first stores).
//
// Threads (at::parallel_for) own disjoint output ranges; no synchronisation. No intrinsics: GCC vector
// extensions, width from -march=native (simd.h).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "simd.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

namespace {

constexpr int kAccs = kVecBytes == 64 ? 24 : 12;       // vector accumulators that leave registers for operands
constexpr int64_t kTileBytes = int64_t{1} << 20;       // packed x per tile: half of this machine kind's L2
constexpr int64_t kGeBytes = int64_t{24} << 10;        // expanded gy of one block row (grad-values): half of L1

// Output rows per pass of the tile kernel: BS when BS accumulators fit, else BS / 2, BS / 4.
constexpr int out_chunk(int bs) { return bs <= kAccs ? bs : bs / 2 <= kAccs ? bs / 2 : bs / 4; }
// Sample vectors per tile (at most; fewer when the tile would not fit kTileBytes, or at the end of the batch).
constexpr int max_vectors(int bs) { return std::max(1, kAccs / out_chunk(bs)); }

// --------------------------------------------------------------------------------------- tile kernel
// out[o][0 : NV*L) = sum over the blocks k of block row R of W[R*BS + oc + o, col_k + i] * xt[col_k + i][0 : NV*L)
// for o < OC (out rows ldo apart; xt rows W = NV*L apart, a block's BS rows contiguous).
template <typename T, int BS, int OC, int NV>
inline void tile_block_row(const int64_t* indptr, const int64_t* indices, const T* values, int64_t R, const T* xt,
                           int oc, T* out, int64_t ldo) {
  using V = Vec<T>;
  using VT = typename V::type;
  constexpr int L = V::lanes, W = NV * L;
  const int64_t beg = indptr[R * BS], nb = (indptr[R * BS + 1] - beg) / BS;
  const int64_t* cols = indices + beg;
  const T* wp[OC];  // weight (o, i) of block k at wp[o][k*BS + i]: OC sequential streams
  for (int o = 0; o < OC; ++o) wp[o] = values + indptr[R * BS + oc + o];
  VT acc[OC][NV];
  for (int o = 0; o < OC; ++o)
    for (int v = 0; v < NV; ++v) acc[o][v] = VT{};
  for (int64_t k = 0; k < nb; ++k) {
    const T* xb = xt + cols[k * BS] * W;  // the block's BS input rows, contiguous (BS * W values)
    const char* xn = reinterpret_cast<const char*>(xt + cols[std::min(k + 1, nb - 1) * BS] * W);  // next block's
    for (int i = 0; i < BS; ++i) {
      for (int c = 0; c < W * int{sizeof(T)}; c += 64) __builtin_prefetch(xn + (i * W) * sizeof(T) + c);
      VT xv[NV];
      for (int v = 0; v < NV; ++v) xv[v] = V::load(xb + i * W + v * L);
      for (int o = 0; o < OC; ++o) {
        const T wt = wp[o][k * BS + i];
        for (int v = 0; v < NV; ++v) acc[o][v] += wt * xv[v];
      }
    }
  }
  for (int o = 0; o < OC; ++o)
    for (int v = 0; v < NV; ++v) V::store(out + o * ldo + v * L, acc[o][v]);
}

// Block rows [r0, r0 + nr) (whole block rows) for one tile of nv vectors (runtime nv <= NV) into out[nr][ldo].
template <typename T, int BS, int NV = max_vectors(BS)>
inline void stage_rows(int nv, const int64_t* indptr, const int64_t* indices, const T* values, int64_t r0, int64_t nr,
                       const T* xt, T* out, int64_t ldo) {
  constexpr int OC = out_chunk(BS);
  if (nv >= NV) {
    for (int64_t r = r0; r < r0 + nr; r += BS)
      for (int oc = 0; oc < BS; oc += OC)
        tile_block_row<T, BS, OC, NV>(indptr, indices, values, r / BS, xt, oc, out + (r - r0 + oc) * ldo, ldo);
  } else if constexpr (NV > 1) {
    stage_rows<T, BS, NV - 1>(nv, indptr, indices, values, r0, nr, xt, out, ldo);
  }
}

// Vectors per full tile: at most max_vectors(BS) and what keeps a tile of n rows within kTileBytes; of those
// the most that leave no narrower last tile (or one short by a single vector): a last tile of fewer vectors
// is load-bound (at batch 256, b = 8: 8 tiles of 2 vectors rather than 5 of 3 and one of 1).
template <typename T, int BS>
int tile_vectors(int64_t n, int64_t B) {
  const int64_t per_vector = std::max<int64_t>(1, n) * kVecBytes;
  const int64_t cap = std::clamp<int64_t>(kTileBytes / per_vector, 1, max_vectors(BS));
  const int64_t vectors = (B + Vec<T>::lanes - 1) / Vec<T>::lanes;
  if (vectors <= cap) return static_cast<int>(vectors);
  for (int64_t nv = cap; nv > 1; --nv)
    if (vectors % nv == 0 || vectors % nv == nv - 1) return static_cast<int>(nv);
  return 1;
}

// Values of the stage of block_spmm_run: SR = max(BS, L) rows of up to max_vectors(BS) vectors.
template <typename T, int BS>
constexpr int stage_size() {
  return std::max(BS, Vec<T>::lanes) * max_vectors(BS) * Vec<T>::lanes;
}

// The transpose's values in its own CSR order: out[t_indptr[R*BS + o] + k*BS + i] = values[perm[e0 + i] + o]
// (e0 = t_indptr[R*BS] + k*BS; see "Transposed"): per block BS contiguous runs of BS read, one BS x BS
// transpose written. Read once per call, instead of once per tile at random places (measured at 4096^2, 10%,
// b = 8, batch 256, one thread, loaded machine: grad-input 16.1 ms -> 10.4-11.6 ms).
template <typename T, int BS>
const T* transposed_values(const T* values, const int64_t* t_indptr, const int64_t* perm, int64_t rows) {
  T* out = scratch<T, 7>(t_indptr[rows]);
  at::parallel_for(0, rows / BS, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, t_indptr[BS])),
                   [&](int64_t R0, int64_t R1) {
    for (int64_t R = R0; R < R1; ++R) {
      const int64_t e0 = t_indptr[R * BS], nb = (t_indptr[R * BS + 1] - e0) / BS;
      T* dst[BS];
      for (int o = 0; o < BS; ++o) dst[o] = out + t_indptr[R * BS + o];
      for (int64_t k = 0; k < nb; ++k) {
        const T* src[BS];
        for (int i = 0; i < BS; ++i) src[i] = values + perm[e0 + k * BS + i];
        for (int o = 0; o < BS; ++o)  // one contiguous run of BS per output row
          for (int i = 0; i < BS; ++i) dst[o][k * BS + i] = src[i][o];
      }
    }
  });
  return out;
}

// Tile t of x packed feature-major into dst (rows ld = nv * L apart, zero past the batch), features [i0, i1):
// batch-major x by in-register transposes, feature-major x by row copies (read in place, its rows B apart alias
// in L2 sets).
template <typename T, bool BM>
inline void pack_tile(const T* x, int64_t ldx, int64_t B, int64_t W, int64_t t, int64_t ld, T* dst, int64_t i0,
                      int64_t i1) {
  const int64_t c0 = t * W, width = std::min(W, B - c0);
  if (BM) {
    transpose_rows<T>(x + c0 * ldx, ldx, width, ld, dst, ld, i0, i1);
  } else {
    for (int64_t i = i0; i < i1; ++i) {
      std::memcpy(dst + i * ld, x + i * ldx + c0, sizeof(T) * width);
      std::memset(dst + i * ld + width, 0, sizeof(T) * (ld - width));
    }
  }
}

// Stages [s0, s1) (SR rows each) of tile t (packed at xt, nv vectors) into y, with the epilogue.
template <typename T, int BS, bool BM>
void tile_stages(const int64_t* indptr, const int64_t* indices, const T* values, const Epilogue<T>& ep, const T* xt,
                 int64_t t, int64_t W, int nv, int64_t B, T* y, int64_t rows, int64_t s0, int64_t s1) {
  constexpr int L = Vec<T>::lanes, SR = BS > L ? BS : L;
  alignas(64) T stage[stage_size<T, BS>()];
  const int64_t c0 = t * W, width = std::min(W, B - c0), ldo = nv * L;
  for (int64_t st = s0; st < s1; ++st) {
    const int64_t r0 = st * SR, nr = std::min<int64_t>(SR, rows - r0);
    stage_rows<T, BS>(nv, indptr, indices, values, r0, nr, xt, stage, ldo);
    for (int64_t q = 0; q < nr; ++q) finish(ep, r0 + q, stage + q * ldo, width);
    if (!BM) {
      for (int64_t q = 0; q < nr; ++q) std::memcpy(y + (r0 + q) * B + c0, stage + q * ldo, sizeof(T) * width);
      continue;
    }
    store_transposed<T>(stage, ldo, nr, width, y, rows, c0, r0);  // stage[q][s] -> y[c0 + s][r0 + q]
  }
}

// y = clamp(W x + bias), x batch-major [B, n] (rows ldx apart) when BM, else feature-major [n, B]; y [B, rows]
// (BM) or [rows, B]. values in (indptr, indices) order. On one thread each tile is packed just before its
// stages run, into one reused buffer that stays in L2 (packing every tile first wrote tiles * n * W values out
// and read them back: at 512 -> 2048, 4096 tokens, 8 MB; at 2048 -> 512, 32 MB).
template <typename T, int BS, bool BM>
void block_spmm_run(const int64_t* indptr, const int64_t* indices, const T* values, const Epilogue<T>& ep, const T* x,
                    int64_t ldx, int64_t n, int64_t B, T* y, int64_t rows) {
  constexpr int L = Vec<T>::lanes, SR = BS > L ? BS : L;  // SR: rows per stage
  const int nvf = tile_vectors<T, BS>(n, B);
  const int64_t W = nvf * L, tiles = (B + W - 1) / W;
  const int64_t tail = B - (tiles - 1) * W, tail_nv = (tail + L - 1) / L;
  const int64_t stages = (rows + SR - 1) / SR, edges = indptr[rows];
  auto vectors = [&](int64_t t) { return static_cast<int>(t == tiles - 1 ? tail_nv : nvf); };
  const int threads = at::get_num_threads();
  if (tiles > 1 && tiles >= threads) {
    // a thread's tiles one after the other, each packed into its own reused buffer (its L2) just before use
    // (threads sharing a tile packed by all of them read much of it from another core's L2)
    at::parallel_for(0, tiles, grain(tiles, edges * tiles, W), [&](int64_t t0, int64_t t1) {  // >= 64k FMAs a task
      T* xt = scratch<T, 4>(n * W);
      for (int64_t t = t0; t < t1; ++t) {
        pack_tile<T, BM>(x, ldx, B, W, t, vectors(t) * L, xt, 0, n);
        tile_stages<T, BS, BM>(indptr, indices, values, ep, xt, t, W, vectors(t), B, y, rows, 0, stages);
      }
    });
    return;
  }
  // x packed feature-major, tile t at xt + t*n*W (rows nv*L apart)
  T* xt = scratch<T, 4>(tiles * n * W);
  constexpr int64_t F = 4 * L;  // features per pack task (the register transposes need whole L-blocks)
  const int64_t fb = (n + F - 1) / F;
  at::parallel_for(0, tiles * fb, std::max<int64_t>(1, (int64_t{1} << 14) / (F * W)), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t t = a / fb, i0 = (a % fb) * F;
      pack_tile<T, BM>(x, ldx, B, W, t, vectors(t) * L, xt + t * n * W, i0, std::min(n, i0 + F));
    }
  });
  // work items: (tile, stage of SR rows), tile-major
  at::parallel_for(0, tiles * stages, std::max<int64_t>(1, grain(rows, edges, W) / SR), [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1;) {
      const int64_t t = a / stages, s0 = a % stages, s1 = std::min(stages, s0 + (a1 - a));
      tile_stages<T, BS, BM>(indptr, indices, values, ep, xt + t * n * W, t, W, vectors(t), B, y, rows, s0, s1);
      a += s1 - s0;
    }
  });
}

// ------------------------------------------------------------------------------ block product kernel
template <typename T, int BS>
struct Lanes {
  static constexpr int L = Vec<T>::lanes;
  static constexpr int Q = BS < L ? BS : L;                 // inputs per vector
  static constexpr int P = L / Q;                           // samples per vector
  static constexpr int J = BS / Q;                          // vectors per block row of inputs
  // output rows per pass, blocks per pass
  static constexpr int OC = BS * J <= kAccs ? BS : (BS / 2) * J <= kAccs ? BS / 2 : BS / 4;
  static constexpr int KB = std::max(1, kAccs / (OC * J));
};

// Adds (first: stores) the sum of the P lane groups of a (Q values each) into dst[0:Q].
// In registers: log2(P) halvings (a shuffle and an add each), then the low Q lanes are added to dst.
template <typename T, int Q, int P>
inline void fold_store(typename Vec<T>::type a, T* dst, bool first) {
  typedef T VQ __attribute__((vector_size(Q * sizeof(T))));
  for (int half = Q * P / 2; half >= Q; half /= 2) {
#if defined(__GNUC__) && !defined(__clang__)
    using M = typename Vec<std::conditional_t<sizeof(T) == 4, int32_t, int64_t>>::type;
    M m;
    for (int l = 0; l < Q * P; ++l) m[l] = (l + half) % (Q * P);
    a += __builtin_shuffle(a, m);
#else
    typename Vec<T>::type b;
    for (int l = 0; l < Q * P; ++l) b[l] = a[(l + half) % (Q * P)];
    a += b;
#endif
  }
  VQ s, u;
  std::memcpy(&s, &a, sizeof s);
  if (!first) {
    std::memcpy(&u, dst, sizeof u);
    s += u;
  }
  std::memcpy(dst, &s, sizeof s);
}

// For blocks k in [k0, k0 + KBN) of block row R, output rows [oc, oc + OC): g[indptr[R*BS + o] + k*BS + i]
// (+)= sum over the tile's samples of gy(s, o) x(s, col_k + i). xb[c] = packed block c ([Sp][BS]), ge =
// expanded gy of the block row (P > 1) or gy itself with g(s, o) at gp[s * gs + o * go] (P = 1).
template <typename T, int BS, int KBN>
inline void product_blocks(const int64_t* ip, const int64_t* cols, int64_t R, int64_t k0, int oc, const T* xb,
                           int64_t Sp, const T* ge, const T* gp, int64_t gs, int64_t go, T* g, bool first) {
  using V = Vec<T>;
  using VT = typename V::type;
  using LN = Lanes<T, BS>;
  constexpr int L = LN::L, Q = LN::Q, P = LN::P, J = LN::J, OC = LN::OC;
  const T* xk[KBN];
  for (int b = 0; b < KBN; ++b) xk[b] = xb + (cols[(k0 + b) * BS] / BS) * Sp * BS;
  VT acc[KBN][OC][J];
  for (int b = 0; b < KBN; ++b)
    for (int o = 0; o < OC; ++o)
      for (int j = 0; j < J; ++j) acc[b][o][j] = VT{};
  for (int64_t sp = 0; sp < Sp / P; ++sp) {
    VT xv[KBN][J];
    for (int b = 0; b < KBN; ++b)
      for (int j = 0; j < J; ++j) xv[b][j] = V::load(xk[b] + sp * P * BS + j * Q);
    for (int o = 0; o < OC; ++o) {
      VT gv;
      if constexpr (P > 1) gv = V::load(ge + (sp * BS + oc + o) * L);
      else gv = VT{} + gp[sp * gs + (oc + o) * go];
      for (int b = 0; b < KBN; ++b)
        for (int j = 0; j < J; ++j) acc[b][o][j] += gv * xv[b][j];
    }
  }
  for (int o = 0; o < OC; ++o) {
    T* row = g + ip[R * BS + oc + o];
    for (int b = 0; b < KBN; ++b)
      for (int j = 0; j < J; ++j) fold_store<T, Q, P>(acc[b][o][j], row + (k0 + b) * BS + j * Q, first);
  }
}

// dst[s][i] = x[i][s] for i < BS, s < width (x rows ldx apart). Not vectorised: GCC 12 -O3 -march=native
// gave wrong float64 results when vectorised (a strided gather/scatter; GCC 12 -O3 -march=native; found by the
// float64 tests, cause not isolated further): the scalar loop is right and cheap next to the product.
template <typename T, int BS>
__attribute__((optimize("no-tree-vectorize"))) void pack_fm_block(const T* x, int64_t ldx, int64_t width, T* dst) {
  for (int i = 0; i < BS; ++i)
    for (int64_t s = 0; s < width; ++s) dst[s * BS + i] = x[i * ldx + s];
}

// ge[sp][o][p*Q + q] = gy(sp*P + p, o) for samples < width (else 0), gy(s, o) = gp[s * ld + o] (BM) or
// gp[o * ld + s].
template <typename T, int BS, bool BM>
inline void expand_gy(const T* gp, int64_t ld, int64_t width, int64_t Sp, T* ge) {
  using LN = Lanes<T, BS>;
  constexpr int L = LN::L, Q = LN::Q, P = LN::P;
  if (BM)  // the samples' rows are far apart (no hardware prefetch): ask for the next block rows' line of each
    for (int64_t s = 0; s < width; ++s) __builtin_prefetch(gp + s * ld + 2 * 64 / sizeof(T));
  for (int64_t sp = 0; sp < Sp / P; ++sp)
    for (int o = 0; o < BS; ++o)
      for (int p = 0; p < P; ++p) {
        const int64_t s = sp * P + p;
        const T v = s < width ? gp[BM ? s * ld + o : o * ld + s] : T(0);
        T* e = ge + (sp * BS + o) * L + p * Q;
        for (int q = 0; q < Q; ++q) e[q] = v;
      }
}

// expand_gy on feature-major gy, not vectorised (as pack_fm_block: vectorised, lanes of ge came out zero for
// float64 at batch >= 17).
template <typename T, int BS>
__attribute__((optimize("no-tree-vectorize"))) void expand_gy_fm(const T* gp, int64_t ld, int64_t width, int64_t Sp,
                                                                  T* ge) {
  expand_gy<T, BS, false>(gp, ld, width, Sp, ge);
}

// g = sddmm over the pattern, x and gy batch-major ([B, n], [B, rows]) when BM, else feature-major.
template <typename T, int BS, bool BM>
void block_sddmm_run(const int64_t* ip, const int64_t* indices, const T* gy, int64_t ldg, const T* x, int64_t ldx,
                     int64_t n, int64_t B, T* g, int64_t rows) {
  using LN = Lanes<T, BS>;
  constexpr int L = LN::L, Q = LN::Q, P = LN::P, OC = LN::OC, KB = LN::KB;
  // samples per tile: the packed x tile (n * S values) within kTileBytes, whole vectors, at most the batch
  // samples per tile: the packed x tile (n * S values) within kTileBytes and, with P > 1, the expanded gy of a
  // block row (S * BS * Q values, read OC vectors per FMA pass) within kGeBytes, i.e. in L1 (at 512 -> 2048,
  // 4096 tokens, S = 512 left it in L2 feeding 8 vectors per 24 FMAs: 27.5 ms, 23-24 ms with the cap; one
  // thread, loaded machine), whole vectors, at most the batch
  int64_t S = kTileBytes / (std::max<int64_t>(n, 1) * int64_t{sizeof(T)});
  if (P > 1) S = std::min<int64_t>(S, kGeBytes / (BS * Q * int64_t{sizeof(T)}));
  S = std::max<int64_t>(4 * P, std::min<int64_t>(S, (B + P - 1) / P * P)) / P * P;
  const int64_t tiles = (B + S - 1) / S, nblk = n / BS, edges = ip[rows];
  T* xb = scratch<T, 5>(nblk * S * BS);
  // gy(s, r) of a batch-major or feature-major gy is at gy[s * gs + r * go]
  const int64_t gs = BM ? ldg : 1, go = BM ? 1 : ldg;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t c0 = t * S, width = std::min(S, B - c0), Sp = (width + P - 1) / P * P;
    const bool first = t == 0;
    // xb[c][s][i] = x(c0 + s, c*BS + i), zero for s >= width
    at::parallel_for(0, nblk, std::max<int64_t>(1, (int64_t{1} << 14) / (Sp * BS)), [&](int64_t b0, int64_t b1) {
      for (int64_t c = b0; c < b1; ++c) {
        T* dst = xb + c * Sp * BS;
        if (BM) {
          for (int64_t s = 0; s < width; ++s) std::memcpy(dst + s * BS, x + (c0 + s) * ldx + c * BS, sizeof(T) * BS);
        } else {
          pack_fm_block<T, BS>(x + c * BS * ldx + c0, ldx, width, dst);
        }
        std::memset(dst + width * BS, 0, sizeof(T) * (Sp - width) * BS);
      }
    });
    at::parallel_for(0, rows / BS, std::max<int64_t>(1, grain(rows / BS, edges, Sp)), [&](int64_t R0, int64_t R1) {
      T* ge = P > 1 ? scratch<T, 6>(Sp * BS * Q) : nullptr;
      for (int64_t R = R0; R < R1; ++R) {
        const int64_t beg = ip[R * BS], nb = (ip[R * BS + 1] - beg) / BS;
        const T* gp = gy + c0 * gs + R * BS * go;
        if constexpr (P > 1) {
          if (BM) expand_gy<T, BS, true>(gp, gs, width, Sp, ge);
          else expand_gy_fm<T, BS>(gp, go, width, Sp, ge);
        }
        for (int oc = 0; oc < BS; oc += OC) {
          int64_t k = 0;
          for (; k + KB <= nb; k += KB)
            product_blocks<T, BS, KB>(ip, indices + beg, R, k, oc, xb, Sp, ge, gp, gs, go, g, first);
          for (; k < nb; ++k)
            product_blocks<T, BS, 1>(ip, indices + beg, R, k, oc, xb, Sp, ge, gp, gs, go, g, first);
        }
      }
    });
  }
}

// ------------------------------------------------------------------------------ block dot kernel
// Grad-values on batch-major operands when a tile of many samples fits: both operands packed feature-major
// (rows of S samples, in-register transposes), and each block's BS x BS values are dot products over the S
// samples: OC x IC sample-vector accumulators (OC rows of one side x IC of the other) take OC + IC loads per
// OC * IC multiply-adds, and are reduced once per tile by a transpose-add (fold_sums) into one vector of OC * IC
// sums. Nothing is expanded: the product kernel above copies each gy value Q times per block row and tile, which
// costs as much as the multiply-adds when block rows hold few blocks (512 -> 2048: 6 blocks a row). One side is
// gathered (each of its blocks meets many partners): packed whole per tile, it has to stay in L2, so the side with
// fewer features is gathered and S is what fits kTileBytes; the other side is streamed, packed lcm(L, BS)
// features at a time just before its blocks run. Gathering gy (fewer outputs than inputs) walks the pattern by
// block columns: the block transpose of the pattern is built per call (one entry per block, not per edge).
constexpr int kDotRows = kVecBytes == 64 ? 4 : 2;  // OC: 4 x 4 = 16 accumulators + 8 operands of 32 registers

// g[p * ps + q * qs] (+)= sum_s a[p][s] * b[q][s] for p, q < BS (rows of a and b S apart, S a multiple of L).
template <typename T, int BS>
inline void dot_block(const T* a, const T* b, int64_t S, T* g, int64_t ps, int64_t qs, bool first) {
  using V = Vec<T>;
  using VT = typename V::type;
  constexpr int L = V::lanes, OC = kDotRows, IC = 4, NA = OC * IC;
  static_assert(NA % L == 0 && BS % OC == 0 && BS % IC == 0, "whole folds and whole row groups");
  for (int p0 = 0; p0 < BS; p0 += OC)
    for (int q0 = 0; q0 < BS; q0 += IC) {
      VT acc[NA];
      for (int f = 0; f < NA; ++f) acc[f] = VT{};
      for (int64_t s = 0; s < S; s += L) {
        VT av[OC], bv[IC];
        for (int o = 0; o < OC; ++o) av[o] = V::load(a + (p0 + o) * S + s);
        for (int i = 0; i < IC; ++i) bv[i] = V::load(b + (q0 + i) * S + s);
        for (int o = 0; o < OC; ++o)
          for (int i = 0; i < IC; ++i) acc[o * IC + i] += av[o] * bv[i];
      }
      for (int f = 0; f < NA; f += L) {
        fold_sums<T, L>(acc + f);
        for (int l = 0; l < L; ++l) {
          T* d = g + (p0 + (f + l) / IC) * ps + (q0 + (f + l) % IC) * qs;
          *d = first ? acc[f][l] : *d + acc[f][l];
        }
      }
    }
}

// Samples per tile of the dot kernel (a multiple of L): what keeps the gathered side's tile (m features) within
// kTileBytes, at most the batch; 0 when that is under kDotMinBytes per row (a fold per few multiply-adds: the
// product kernel is faster there, e.g. 4096^2 at batch 256).
constexpr int64_t kDotMinBytes = 1024;
constexpr int64_t kStreamBytes = int64_t{8} << 20;
template <typename T>
int64_t dot_samples(int64_t m, int64_t B) {
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t S = std::min(kTileBytes / (std::max<int64_t>(m, 1) * int64_t{sizeof(T)}) / L * L, (B + L - 1) / L * L);
  return S * int64_t{sizeof(T)} >= kDotMinBytes ? S : 0;
}

// g = block sddmm of batch-major gy [B, rows] and x [B, n] by the dot kernel, S samples per tile.
template <typename T, int BS>
void block_sddmm_dot(const int64_t* ip, const int64_t* indices, const T* gy, int64_t ldg, const T* x, int64_t ldx,
                     int64_t n, int64_t B, T* g, int64_t rows, int64_t S) {
  constexpr int64_t L = Vec<T>::lanes, FA = BS > L ? BS : L;  // a multiple of BS and of L
  const bool by_columns = rows < n;  // gather gy, stream x by block columns
  const int64_t nbr = rows / BS, nbc = n / BS, na = by_columns ? nbc : nbr;
  // pairs of streamed block a: [start[a], start[a + 1]) of (partner block, first edge, row length)
  std::vector<int64_t> start(na + 1, 0), partner(ip[rows] / (BS * BS)), base(partner.size()), len(partner.size());
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t R = 0; R < nbr; ++R) {
      const int64_t beg = ip[R * BS], nb = (ip[R * BS + 1] - beg) / BS;
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t C = indices[beg + k * BS] / BS, a = by_columns ? C : R;
        if (pass == 0) {
          ++start[a + 1];
        } else {
          const int64_t e = fill[a]++;
          partner[e] = by_columns ? R : C;
          base[e] = beg + k * BS;
          len[e] = nb * BS;
        }
      }
    }
    if (pass == 0)
      for (int64_t a = 0; a < na; ++a) start[a + 1] += start[a];
  }
  const T *ga = by_columns ? x : gy, *gb = by_columns ? gy : x;  // streamed and gathered operands
  const int64_t lda = by_columns ? ldx : ldg, ldb = by_columns ? ldg : ldx, fa = by_columns ? n : rows,
                fb = by_columns ? rows : n;
  // the streamed side is packed kStreamBytes at a time (FC features, whole blocks and whole L-blocks)
  const int64_t FC = std::max(FA, kStreamBytes / (S * int64_t{sizeof(T)}) / FA * FA);
  T* tb = scratch<T, 5>(fb * S);
  T* ta = scratch<T, 6>(std::min(fa, FC) * S);
  for (int64_t c0 = 0; c0 < B; c0 += S) {
    const int64_t width = std::min(S, B - c0);
    // both sides packed L samples at a time over all (FC) features: sequential reads the prefetchers follow
    // (reading FA features of each sample row just before use was latency-bound: rows 8 KB apart at 2048)
    pack_tiles_bm<T>(gb + c0 * ldb, ldb, fb, width, S, tb);
    for (int64_t f0 = 0; f0 < fa; f0 += FC) {
      const int64_t fc = std::min(FC, fa - f0);
      pack_tiles_bm<T>(ga + c0 * lda + f0, lda, fc, width, S, ta);
      at::parallel_for(f0 / BS, (f0 + fc) / BS, std::max<int64_t>(1, grain(fa / BS, ip[rows], S)),
                       [&](int64_t a0, int64_t a1) {
        for (int64_t a = a0; a < a1; ++a)
          for (int64_t e = start[a]; e < start[a + 1]; ++e) {
            const int64_t ps = by_columns ? 1 : len[e], qs = by_columns ? len[e] : 1;
            dot_block<T, BS>(ta + (a * BS - f0) * S, tb + partner[e] * BS * S, S, g + base[e], ps, qs, c0 == 0);
          }
      });
    }
  }
}

// ------------------------------------------------------------------------------------------ dispatch
// O(rows) checks of a block pattern (index values are range-checked once, when the layout is built).
void check_blocks(const at::Tensor& indptr, const at::Tensor& indices, int64_t block, int64_t n) {
  TORCH_CHECK(block == 4 || block == 8 || block == 16, "sparseforge: block must be 4, 8 or 16, got ", block);
  TORCH_CHECK(indptr.scalar_type() == at::kLong && indices.scalar_type() == at::kLong,
              "sparseforge: indptr and indices must be int64");
  TORCH_CHECK(indptr.dim() == 1 && indptr.numel() >= 1 && indptr.is_contiguous() && indices.is_contiguous() &&
                  indptr.device().is_cpu() && indices.device().is_cpu(),
              "sparseforge: indptr [rows + 1] and indices [edges] must be contiguous 1-D CPU tensors");
  const int64_t rows = indptr.numel() - 1;
  TORCH_CHECK(rows % block == 0 && n % block == 0, "sparseforge: rows=", rows, " and n=", n,
              " must be multiples of block=", block);
  const int64_t* ip = indptr.data_ptr<int64_t>();
  TORCH_CHECK(ip[0] == 0 && ip[rows] == indices.numel(), "sparseforge: indptr must run from 0 to edges=",
              indices.numel(), ", got ", ip[0], " .. ", ip[rows]);
  bool ok = true;
  for (int64_t R = 0; R < rows / block; ++R) {
    const int64_t len = ip[R * block + 1] - ip[R * block];
    ok &= len >= 0 && len % block == 0 && len / block <= n / block;
    for (int64_t o = 1; o < block; ++o) ok &= ip[R * block + o + 1] - ip[R * block + o] == len;
  }
  TORCH_CHECK(ok, "sparseforge: not a block pattern of block=", block,
              ": the rows of each block row must have one length, a multiple of the block");
}

void check_values(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.dim() == 2 && (t.numel() == 0 || ((t.stride(1) == 1 || t.size(1) <= 1) && t.stride(0) >= t.size(1))),
              "sparseforge: ", name, " must be 2-D with unit stride along its last dimension, got sizes ", t.sizes(),
              " strides ", t.strides());
  TORCH_CHECK(t.scalar_type() == dtype, "sparseforge: ", name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.device().is_cpu(), "sparseforge: ", name, " must be on the CPU");
}

template <typename T, int BS, bool BM>
void spmm_block(const int64_t* ip, const int64_t* id, const T* values, const int64_t* perm, const Epilogue<T>& ep,
                const T* x, int64_t ldx, int64_t n, int64_t B, T* y, int64_t rows) {
  const T* v = perm ? transposed_values<T, BS>(values, ip, perm, rows) : values;
  block_spmm_run<T, BS, BM>(ip, id, v, ep, x, ldx, n, B, y, rows);
}

template <typename T, bool BM>
void spmm_typed(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& values, const at::Tensor& x,
                int64_t block, const std::optional<at::Tensor>& bias, std::optional<double> lo,
                std::optional<double> hi, const int64_t* perm, at::Tensor& y) {
  Epilogue<T> ep;
  if (bias.has_value() && bias->defined()) ep.bias = bias->data_ptr<T>();
  if (lo && hi) ep = {ep.bias, true, static_cast<T>(*lo), static_cast<T>(*hi)};
  const int64_t rows = indptr.numel() - 1, n = x.size(BM ? 1 : 0), B = x.size(BM ? 0 : 1);
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  const T *v = values.data_ptr<T>(), *xp = x.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  switch (block) {
    case 4: spmm_block<T, 4, BM>(ip, id, v, perm, ep, xp, x.stride(0), n, B, yp, rows); break;
    case 8: spmm_block<T, 8, BM>(ip, id, v, perm, ep, xp, x.stride(0), n, B, yp, rows); break;
    default: spmm_block<T, 16, BM>(ip, id, v, perm, ep, xp, x.stride(0), n, B, yp, rows); break;
  }
}

template <bool BM>
at::Tensor block_spmm_any(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& values,
                          const at::Tensor& x, int64_t block, const std::optional<at::Tensor>& bias,
                          std::optional<double> lo, std::optional<double> hi, const std::optional<at::Tensor>& perm) {
  check_values(x, "x", values.scalar_type());
  const int64_t n = x.size(BM ? 1 : 0), B = x.size(BM ? 0 : 1);
  check_blocks(indptr, indices, block, n);
  const int64_t rows = indptr.numel() - 1;
  TORCH_CHECK(values.device().is_cpu() && values.is_contiguous() && values.numel() == indices.numel(),
              "sparseforge: values must be contiguous CPU with one entry per edge");
  const bool has_perm = perm.has_value() && perm->defined();
  if (has_perm)
    TORCH_CHECK(perm->scalar_type() == at::kLong && perm->dim() == 1 && perm->is_contiguous() &&
                    perm->numel() == indices.numel(),
                "sparseforge: perm must be a contiguous int64 [edges] tensor");
  if (bias.has_value() && bias->defined())
    TORCH_CHECK(bias->dim() == 1 && bias->numel() == rows && bias->is_contiguous() &&
                    bias->scalar_type() == values.scalar_type(),
                "sparseforge: bias must be a contiguous [rows=", rows, "] tensor of the values' dtype");
  TORCH_CHECK(lo.has_value() == hi.has_value() && (!lo || *lo <= *hi),
              "sparseforge: clamp needs both lo and hi with lo <= hi");
  at::Tensor y = BM ? at::empty({B, rows}, x.options()) : at::empty({rows, B}, x.options());
  if (rows == 0 || B == 0) return y;
  huge_page_hint(y.data_ptr(), y.nbytes());
  const int64_t* pp = has_perm ? perm->data_ptr<int64_t>() : nullptr;
  if (x.scalar_type() == at::kFloat)
    spmm_typed<float, BM>(indptr, indices, values, x, block, bias, lo, hi, pp, y);
  else if (x.scalar_type() == at::kDouble)
    spmm_typed<double, BM>(indptr, indices, values, x, block, bias, lo, hi, pp, y);
  else
    TORCH_CHECK(false, "sparseforge: block_spmm supports float32 and float64, got ", x.scalar_type());
  return y;
}

template <typename T, bool BM>
void sddmm_typed(int64_t block, const int64_t* ip, const int64_t* id, const at::Tensor& gy, const at::Tensor& x,
                 int64_t n, int64_t B, T* g, int64_t rows) {
  const T *gp = gy.data_ptr<T>(), *xp = x.data_ptr<T>();
  const int64_t S = BM ? dot_samples<T>(std::min(n, rows), B) : 0;  // the dot kernel when a wide tile fits
  if (S) {
    switch (block) {
      case 4: block_sddmm_dot<T, 4>(ip, id, gp, gy.stride(0), xp, x.stride(0), n, B, g, rows, S); break;
      case 8: block_sddmm_dot<T, 8>(ip, id, gp, gy.stride(0), xp, x.stride(0), n, B, g, rows, S); break;
      default: block_sddmm_dot<T, 16>(ip, id, gp, gy.stride(0), xp, x.stride(0), n, B, g, rows, S); break;
    }
    return;
  }
  switch (block) {
    case 4: block_sddmm_run<T, 4, BM>(ip, id, gp, gy.stride(0), xp, x.stride(0), n, B, g, rows); break;
    case 8: block_sddmm_run<T, 8, BM>(ip, id, gp, gy.stride(0), xp, x.stride(0), n, B, g, rows); break;
    default: block_sddmm_run<T, 16, BM>(ip, id, gp, gy.stride(0), xp, x.stride(0), n, B, g, rows); break;
  }
}

template <bool BM>
at::Tensor block_sddmm_any(const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& gy,
                           const at::Tensor& x, int64_t block) {
  check_values(x, "x", gy.scalar_type());
  check_values(gy, "gy", gy.scalar_type());
  const int64_t n = x.size(BM ? 1 : 0), B = x.size(BM ? 0 : 1);
  check_blocks(indptr, indices, block, n);
  const int64_t rows = indptr.numel() - 1;
  TORCH_CHECK(gy.size(BM ? 1 : 0) == rows && gy.size(BM ? 0 : 1) == B, "sparseforge: gy must be ",
              BM ? "[batch, rows]" : "[rows, batch]", " with rows=", rows, ", batch=", B, ", got ", gy.sizes());
  at::Tensor out = at::empty({indices.numel()}, x.options());
  if (indices.numel() == 0) return out;
  if (B == 0) return out.zero_();
  huge_page_hint(out.data_ptr(), out.nbytes());
  const int64_t *ip = indptr.data_ptr<int64_t>(), *id = indices.data_ptr<int64_t>();
  if (x.scalar_type() == at::kFloat)
    sddmm_typed<float, BM>(block, ip, id, gy, x, n, B, out.data_ptr<float>(), rows);
  else if (x.scalar_type() == at::kDouble)
    sddmm_typed<double, BM>(block, ip, id, gy, x, n, B, out.data_ptr<double>(), rows);
  else
    TORCH_CHECK(false, "sparseforge: block_sddmm supports float32 and float64, got ", x.scalar_type());
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sparseforge, m) {
  m.def("block_spmm(Tensor indptr, Tensor indices, Tensor values, Tensor x, int block, Tensor? bias=None, float? lo=None, float? hi=None, Tensor? perm=None) -> Tensor");
  m.def("block_spmm_bm(Tensor indptr, Tensor indices, Tensor values, Tensor x, int block, Tensor? bias=None, float? lo=None, float? hi=None, Tensor? perm=None) -> Tensor");
  m.def("block_sddmm(Tensor indptr, Tensor indices, Tensor gy, Tensor x, int block) -> Tensor");
  m.def("block_sddmm_bm(Tensor indptr, Tensor indices, Tensor gy, Tensor x, int block) -> Tensor");
}

TORCH_LIBRARY_IMPL(sparseforge, CPU, m) {
  m.impl("block_spmm", &block_spmm_any<false>);
  m.impl("block_spmm_bm", &block_spmm_any<true>);
  m.impl("block_sddmm", &block_sddmm_any<false>);
  m.impl("block_sddmm_bm", &block_sddmm_any<true>);
}
