// CUDA kernels of earn::CompactedAttention (see compacted_attention_cuda.h for the scheme).
// Not run on a GPU here (none lent): plugins/gpu_check.py compares them with the PyTorch reference on one. On the
// CPU, plugins/tests/cuda_emulation runs this same file under an emulation of the CUDA execution model (blocks,
// warps, barriers, shuffles, WMMA), which checks the indexing and synchronisation logic, not the hardware.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <atomic>
#include <mutex>

// Dynamic shared memory and kernel launches go through these two macros so that the emulation can provide them.
#ifndef EARN_DYNAMIC_SMEM
#define EARN_DYNAMIC_SMEM(type, name) extern __shared__ __align__(128) type name[]
#define EARN_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

#include "compacted_attention_cuda.h"

namespace earn
{
namespace cuda
{
namespace
{

constexpr int kWarps = kCcWarps;
constexpr int kThreads = kWarps * 32;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float to_float(float x)
{
    return x;
}

__device__ __forceinline__ float to_float(__half x)
{
    return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);

template <>
__device__ __forceinline__ float from_float<float>(float x)
{
    return x;
}

template <>
__device__ __forceinline__ __half from_float<__half>(float x)
{
    return __float2half_rn(x);
}

__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
    {
        x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
    }
    return x;
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
    {
        x += __shfl_xor_sync(kFull, x, o);
    }
    return x;
}

// 16 bytes of T from global memory (aligned) as floats: 4 floats or 8 halves.
template <typename T>
struct Vec16;

template <>
struct Vec16<float>
{
    static constexpr int kElems = 4;
    __device__ __forceinline__ static void load(float const* src, float* dst)
    {
        float4 const v = *reinterpret_cast<float4 const*>(src);
        dst[0] = v.x;
        dst[1] = v.y;
        dst[2] = v.z;
        dst[3] = v.w;
    }
};

template <>
struct Vec16<__half>
{
    static constexpr int kElems = 8;
    __device__ __forceinline__ static void load(__half const* src, float* dst)
    {
        uint4 const raw = *reinterpret_cast<uint4 const*>(src); // one 16-byte load
        unsigned const words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) // the halves out of each 32-bit word (little-endian: low half first)
        {
            dst[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] & 0xffffu)));
            dst[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] >> 16)));
        }
    }
};

// What one pass-1 block works on: grid (query tile, split, user x KV head). The query tiles of one (user, KV head,
// split) are adjacent block indices: they read the same K/V rows at about the same time (L2 serves the re-reads).
struct BlockWork
{
    int split, kv, qt, b, G, M;
};

__device__ __forceinline__ BlockWork block_work(AttentionShape const& sh)
{
    BlockWork w;
    w.qt = blockIdx.x;
    w.split = blockIdx.y;
    w.kv = static_cast<int>(blockIdx.z % sh.kv_heads);
    w.b = static_cast<int>(blockIdx.z / sh.kv_heads);
    w.G = static_cast<int>(sh.heads / sh.kv_heads);
    w.M = static_cast<int>(sh.beams) * w.G;
    return w;
}

// First unmasked shared key of [s_begin, s_end) for the block's user (s_end when none): the block starts reading
// there, so a left-padded prefix costs one read of its bias, not its K/V rows. `slot`: one int of shared memory.
__device__ __forceinline__ int64_t first_valid_key(float const* bias, int64_t s_begin, int64_t s_end, int* slot,
    int threads)
{
    if (threadIdx.x == 0)
    {
        *slot = static_cast<int>(s_end - s_begin);
    }
    __syncthreads();
    for (int64_t s = s_begin + threadIdx.x; s < s_end; s += threads)
    {
        if (!key_masked(bias[s]))
        {
            atomicMin(slot, static_cast<int>(s - s_begin));
            break;
        }
    }
    __syncthreads();
    return s_begin + *slot;
}

// The end of a query: merge the beam's own generated keys into its online-softmax state (max, sum, acc: this lane's
// DPL output dims), normalise and write the output row. `q`: this lane's DPL query values. One warp per query.
template <typename T, int D>
__device__ __forceinline__ void finish_query(AttentionShape const& sh, Pointers const& ptr, int64_t b, int64_t j,
    int64_t h, int64_t kv, int lane, float const* q, float mx, float sum, float* acc)
{
    constexpr int DPL = D / 32;
    T const* gkey = static_cast<T const*>(ptr.gen_key);
    T const* gval = static_cast<T const*>(ptr.gen_value);
    for (int64_t t = 0; t < sh.gen_len; ++t)
    {
        int64_t const off = sh.gen_row(b, j, kv, t) + lane * DPL;
        float dot = 0.f;
#pragma unroll
        for (int c = 0; c < DPL; ++c)
        {
            dot += q[c] * to_float(gkey[off + c]);
        }
        float const score = warp_sum(dot) * sh.scale;
        float const new_max = fmaxf(mx, score);
        float const ca = rescale_factor(mx, new_max);
        float const e = expf(score - new_max);
        sum = sum * ca + e;
#pragma unroll
        for (int c = 0; c < DPL; ++c)
        {
            acc[c] = acc[c] * ca + e * to_float(gval[off + c]);
        }
        mx = new_max;
    }
    T* out = static_cast<T*>(ptr.out);
    int64_t const qoff = sh.query_row(b, j, h) + lane * DPL;
    float const inv = 1.f / sum;
#pragma unroll
    for (int c = 0; c < DPL; ++c)
    {
        out[qoff + c] = from_float<T>(acc[c] * inv);
    }
}

template <int D>
__host__ __device__ constexpr int key_stride()
{
    return D + 4; // keeps the per-lane float4 reads of key rows free of bank conflicts
}

template <int D, int QPW>
constexpr size_t shared_pass_smem()
{
    return sizeof(float)
        * (static_cast<size_t>(kWarps * QPW) * D + kKeyTile * key_stride<D>() + kKeyTile * D + kKeyTile + 4);
}

// Pass 1: one block per (split, KV head x query tile, user); lane j of every warp owns key j of the tile.
// With splits == 1 the block finishes its queries itself (finish_query) and writes the output: no workspace.
template <typename T, int D, int QPW>
__global__ void __launch_bounds__(kThreads) shared_pass(AttentionShape sh, Pointers ptr, int splits,
    int split_len, float* __restrict__ ws_acc, float2* __restrict__ ws_ml)
{
    constexpr int MQ = kWarps * QPW;
    constexpr int KS = key_stride<D>();
    constexpr int DPL = D / 32; // output dims per lane
    constexpr int E = Vec16<T>::kElems;
    EARN_DYNAMIC_SMEM(float4, smem4);
    float* Qs = reinterpret_cast<float*>(smem4); // [MQ][D]
    float* Ks = Qs + MQ * D;                     // [kKeyTile][KS]
    float* Vs = Ks + kKeyTile * KS;              // [kKeyTile][D]
    float* Bs = Vs + kKeyTile * D;               // [kKeyTile]
    int* first_slot = reinterpret_cast<int*>(Bs + kKeyTile);

    T const* query = static_cast<T const*>(ptr.query);
    T const* skey = static_cast<T const*>(ptr.shared_key);
    T const* sval = static_cast<T const*>(ptr.shared_value);
    BlockWork const w = block_work(sh);
    int const split = w.split, kv = w.kv, b = w.b, G = w.G, M = w.M;
    int const m0 = w.qt * MQ;
    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int64_t const S = sh.shared_len;

    // the tile's queries, once
    for (int v = threadIdx.x; v < MQ * D / E; v += kThreads)
    {
        int const ml = (v * E) / D;
        int const d = (v * E) % D;
        int const m = m0 + ml;
        float buf[E];
        if (m < M)
        {
            Vec16<T>::load(query + sh.query_row(b, m / G, kv * G + m % G) + d, buf);
        }
        else
        {
#pragma unroll
            for (int e = 0; e < E; ++e)
            {
                buf[e] = 0.f;
            }
        }
#pragma unroll
        for (int e = 0; e < E; ++e)
        {
            Qs[ml * D + d + e] = buf[e];
        }
    }

    float mx[QPW];
    float sum[QPW];
    float acc[QPW][DPL];
#pragma unroll
    for (int i = 0; i < QPW; ++i)
    {
        mx[i] = -INFINITY;
        sum[i] = 0.f;
#pragma unroll
        for (int c = 0; c < DPL; ++c)
        {
            acc[i][c] = 0.f;
        }
    }

    int64_t const s_begin = static_cast<int64_t>(split) * split_len;
    int64_t const s_end = s_begin + split_len < S ? s_begin + split_len : S;
    float const* bias = ptr.key_bias + b * S;
    int64_t const s_first = first_valid_key(bias, s_begin, s_end, first_slot, kThreads);
    for (int64_t s0 = s_first; s0 < s_end; s0 += kKeyTile)
    {
        __syncthreads(); // the previous tile is consumed (first iteration: nothing to wait for but Q)
        for (int v = threadIdx.x; v < kKeyTile * D / E; v += kThreads)
        {
            int const r = (v * E) / D;
            int const d = (v * E) % D;
            int64_t const s = s0 + r;
            float kb[E];
            float vb[E];
            if (s < s_end)
            {
                int64_t const off = sh.shared_row(b, kv, s) + d;
                Vec16<T>::load(skey + off, kb);
                Vec16<T>::load(sval + off, vb);
            }
            else
            {
#pragma unroll
                for (int e = 0; e < E; ++e)
                {
                    kb[e] = 0.f;
                    vb[e] = 0.f;
                }
            }
#pragma unroll
            for (int e = 0; e < E; ++e)
            {
                Ks[r * KS + d + e] = kb[e];
                Vs[r * D + d + e] = vb[e];
            }
        }
        if (threadIdx.x < kKeyTile)
        {
            int64_t const s = s0 + threadIdx.x;
            float bb = -INFINITY;
            if (s < s_end)
            {
                bb = bias[s];
                bb = key_masked(bb) ? -INFINITY : bb;
            }
            Bs[threadIdx.x] = bb;
        }
        __syncthreads();

        float const my_bias = Bs[lane];
        float4 const* krow = reinterpret_cast<float4 const*>(Ks + lane * KS);
#pragma unroll
        for (int i = 0; i < QPW; ++i)
        {
            int const ml = warp + kWarps * i;
            if (m0 + ml < M) // uniform across the warp
            {
                float4 const* qrow = reinterpret_cast<float4 const*>(Qs + ml * D);
                float dot = 0.f;
#pragma unroll
                for (int c = 0; c < D / 4; ++c)
                {
                    float4 const a = qrow[c];
                    float4 const k = krow[c];
                    dot += a.x * k.x + a.y * k.y + a.z * k.z + a.w * k.w;
                }
                float const score = my_bias == -INFINITY ? -INFINITY : dot * sh.scale + my_bias;
                float const tile_max = warp_max(score);
                if (tile_max != -INFINITY) // uniform: some key of the tile is attended
                {
                    float const new_max = fmaxf(mx[i], tile_max);
                    float const corr = rescale_factor(mx[i], new_max);
                    float const p = score == -INFINITY ? 0.f : expf(score - new_max);
                    sum[i] = sum[i] * corr + warp_sum(p);
#pragma unroll
                    for (int c = 0; c < DPL; ++c)
                    {
                        acc[i][c] *= corr;
                    }
#pragma unroll 8
                    for (int jj = 0; jj < kKeyTile; ++jj)
                    {
                        float const pj = __shfl_sync(kFull, p, jj);
                        float const* vr = Vs + jj * D + lane * DPL;
#pragma unroll
                        for (int c = 0; c < DPL; ++c)
                        {
                            acc[i][c] += pj * vr[c];
                        }
                    }
                    mx[i] = new_max;
                }
            }
        }
    }

    if (splits == 1) // uniform: finish the queries here
    {
#pragma unroll
        for (int i = 0; i < QPW; ++i)
        {
            int const ml = warp + kWarps * i;
            int const m = m0 + ml;
            if (m < M) // uniform across the warp
            {
                float q[DPL];
#pragma unroll
                for (int c = 0; c < DPL; ++c)
                {
                    q[c] = Qs[ml * D + lane * DPL + c];
                }
                finish_query<T, D>(sh, ptr, b, m / G, kv * G + m % G, kv, lane, q, mx[i], sum[i], acc[i]);
            }
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < QPW; ++i)
    {
        int const m = m0 + warp + kWarps * i;
        if (m < M)
        {
            size_t const slot = (static_cast<size_t>(b * sh.kv_heads + kv) * M + m) * splits + split;
#pragma unroll
            for (int c = 0; c < DPL; ++c)
            {
                ws_acc[slot * D + lane * DPL + c] = acc[i][c];
            }
            if (lane == 0)
            {
                ws_ml[slot] = make_float2(mx[i], sum[i]);
            }
        }
    }
}

// Pass 2: one warp per (user, beam, query head): merge the splits, then the beam's generated keys; normalise.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) merge_pass(AttentionShape sh, Pointers ptr, int splits,
    float const* __restrict__ ws_acc, float2 const* __restrict__ ws_ml)
{
    constexpr int DPL = D / 32;
    int64_t const w = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int64_t const total = sh.batch * sh.beams * sh.heads;
    if (w >= total)
    {
        return; // whole warp
    }
    int64_t const h = w % sh.heads;
    int64_t const j = (w / sh.heads) % sh.beams;
    int64_t const b = w / (sh.heads * sh.beams);
    int64_t const G = sh.group();
    int64_t const kv = h / G;
    int64_t const m = j * G + h % G;
    int64_t const M = sh.beams * G;

    float mx = -INFINITY;
    float sum = 0.f;
    float acc[DPL];
#pragma unroll
    for (int c = 0; c < DPL; ++c)
    {
        acc[c] = 0.f;
    }
    size_t const slot0 = (static_cast<size_t>(b * sh.kv_heads + kv) * M + m) * splits;
    for (int sp = 0; sp < splits; ++sp)
    {
        float2 const part = ws_ml[slot0 + sp];
        if (part.x == -INFINITY)
        {
            continue; // nothing attended in that split
        }
        float const new_max = fmaxf(mx, part.x);
        float const ca = rescale_factor(mx, new_max);
        float const cb = expf(part.x - new_max);
        sum = sum * ca + part.y * cb;
#pragma unroll
        for (int c = 0; c < DPL; ++c)
        {
            acc[c] = acc[c] * ca + ws_acc[(slot0 + sp) * D + lane * DPL + c] * cb;
        }
        mx = new_max;
    }

    T const* query = static_cast<T const*>(ptr.query);
    int64_t const qoff = sh.query_row(b, j, h) + lane * DPL;
    float q[DPL];
#pragma unroll
    for (int c = 0; c < DPL; ++c)
    {
        q[c] = to_float(query[qoff + c]);
    }
    finish_query<T, D>(sh, ptr, b, j, h, kv, lane, q, mx, sum, acc);
}

// ------------------------------------------------------------------------------------------------------------
// Pass 1 for fp16 on tensor cores (WMMA 16x16x16, fp32 accumulation): one block of 4 warps per (split, KV head x
// tile of 64 queries, user); warp w owns 16 queries. Per tile of 64 shared keys: S = Q.K^T with WMMA into shared
// memory, the warp's online softmax on its 16 rows (P rounded to fp16 once, the row sums taken from the rounded
// values), then O = O * correction + P.V with WMMA, O kept in shared memory (a WMMA accumulator's element -> row
// mapping is not specified, so rows cannot be rescaled inside the fragment). Same partial format as shared_pass.
// (kTcWarps, kTcRows, kTcKeys and the host-side TcLayout are in compacted_attention_cuda.h; TcSmem is the same
// layout as compile-time constants, checked against it below.)
template <int D>
struct TcSmem
{
    static constexpr int kLd = D + 8;        // half row stride of Q, K, V (multiple of 8, rows 16-byte aligned)
    static constexpr int kSLd = kTcKeys + 8; // row stride of S (float) and P (half)
    static constexpr size_t round(size_t bytes)
    {
        return (bytes + 127) / 128 * 128;
    }
    static constexpr size_t q = 0;
    static constexpr size_t k = q + round(sizeof(__half) * kTcRows * kLd);
    static constexpr size_t v = k + round(sizeof(__half) * kTcKeys * kLd);
    static constexpr size_t bias = v + round(sizeof(__half) * kTcKeys * kLd);
    static constexpr size_t warp0 = bias + round(sizeof(float) * kTcKeys + 16); // + the first valid key
    // per warp: S [16][kSLd] float, P [16][kSLd] half, O [16][D] float, correction [16] float
    static constexpr size_t w_s = 0;
    static constexpr size_t w_p = w_s + round(sizeof(float) * 16 * kSLd);
    static constexpr size_t w_o = w_p + round(sizeof(__half) * 16 * kSLd);
    static constexpr size_t w_corr = w_o + round(sizeof(float) * 16 * D);
    static constexpr size_t per_warp = w_corr + round(sizeof(float) * 16);
    static constexpr size_t total = warp0 + kTcWarps * per_warp;
};

template <int D>
__global__ void __launch_bounds__(kTcWarps * 32) shared_pass_tc(AttentionShape sh, Pointers ptr, int splits,
    int split_len, float* __restrict__ ws_acc, float2* __restrict__ ws_ml)
{
    using namespace nvcuda;
    using L = TcSmem<D>;
    constexpr int LD = L::kLd;
    constexpr int SLD = L::kSLd;
    EARN_DYNAMIC_SMEM(unsigned char, smem_tc); // 128-byte aligned: WMMA pointers need 32 bytes
    unsigned char* smem = smem_tc;
    __half* Qs = reinterpret_cast<__half*>(smem + L::q);
    __half* Ks = reinterpret_cast<__half*>(smem + L::k);
    __half* Vs = reinterpret_cast<__half*>(smem + L::v);
    float* Bs = reinterpret_cast<float*>(smem + L::bias);
    int* first_slot = reinterpret_cast<int*>(Bs + kTcKeys);
    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    unsigned char* wbase = smem + L::warp0 + warp * L::per_warp;
    float* Sw = reinterpret_cast<float*>(wbase + L::w_s);
    __half* Pw = reinterpret_cast<__half*>(wbase + L::w_p);
    float* Ow = reinterpret_cast<float*>(wbase + L::w_o);
    float* Cw = reinterpret_cast<float*>(wbase + L::w_corr);

    __half const* query = static_cast<__half const*>(ptr.query);
    __half const* skey = static_cast<__half const*>(ptr.shared_key);
    __half const* sval = static_cast<__half const*>(ptr.shared_value);
    BlockWork const bw = block_work(sh);
    int const split = bw.split, kv = bw.kv, b = bw.b, G = bw.G, M = bw.M;
    int const m0 = bw.qt * kTcRows;
    int64_t const S = sh.shared_len;
    constexpr int E = 8; // halves per 16-byte load

    for (int v = threadIdx.x; v < kTcRows * D / E; v += kTcWarps * 32)
    {
        int const r = (v * E) / D;
        int const d = (v * E) % D;
        int const m = m0 + r;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u); // zero rows for queries past M: scores 0, never written out
        if (m < M)
        {
            raw = *reinterpret_cast<uint4 const*>(query + sh.query_row(b, m / G, kv * G + m % G) + d);
        }
        *reinterpret_cast<uint4*>(Qs + r * LD + d) = raw;
    }
    for (int e = lane; e < 16 * D; e += 32)
    {
        Ow[e] = 0.f;
    }
    // softmax state of row (lane / 2), held by both lanes of the pair; lane h = lane % 2 of the pair owns columns
    // 8c + 4h .. 8c + 4h + 3 (c = 0..7): S read as float4, P written as 4 halves, free of bank conflicts (TcLayout)
    int const row = lane / 2;
    int const col0 = (lane % 2) * 4;
    float row_max = -INFINITY;
    float row_sum = 0.f;

    int64_t const s_begin = static_cast<int64_t>(split) * split_len;
    int64_t const s_end = s_begin + split_len < S ? s_begin + split_len : S;
    float const* bias = ptr.key_bias + b * S;
    int64_t const s_first = first_valid_key(bias, s_begin, s_end, first_slot, kTcWarps * 32);
    for (int64_t s0 = s_first; s0 < s_end; s0 += kTcKeys)
    {
        __syncthreads(); // the previous tile's K/V are consumed (first iteration: Q is stored)
        for (int v = threadIdx.x; v < kTcKeys * D / E; v += kTcWarps * 32)
        {
            int const r = (v * E) / D;
            int const d = (v * E) % D;
            int64_t const s = s0 + r;
            uint4 kraw = make_uint4(0u, 0u, 0u, 0u);
            uint4 vraw = make_uint4(0u, 0u, 0u, 0u);
            if (s < s_end)
            {
                int64_t const off = sh.shared_row(b, kv, s) + d;
                kraw = *reinterpret_cast<uint4 const*>(skey + off);
                vraw = *reinterpret_cast<uint4 const*>(sval + off);
            }
            *reinterpret_cast<uint4*>(Ks + r * LD + d) = kraw;
            *reinterpret_cast<uint4*>(Vs + r * LD + d) = vraw;
        }
        for (int j = threadIdx.x; j < kTcKeys; j += kTcWarps * 32)
        {
            int64_t const s = s0 + j;
            float bb = -INFINITY;
            if (s < s_end)
            {
                bb = bias[s];
                bb = key_masked(bb) ? -INFINITY : bb;
            }
            Bs[j] = bb;
        }
        __syncthreads();

        // S = Q K^T for the warp's 16 rows x 64 keys
#pragma unroll
        for (int nt = 0; nt < kTcKeys / 16; ++nt)
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.f);
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
            {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kb;
                wmma::load_matrix_sync(a, Qs + (warp * 16) * LD + kk * 16, LD);
                wmma::load_matrix_sync(kb, Ks + (nt * 16) * LD + kk * 16, LD);
                wmma::mma_sync(acc, a, kb, acc);
            }
            wmma::store_matrix_sync(Sw + nt * 16, acc, SLD, wmma::mem_row_major);
        }
        __syncwarp();

        // online softmax of row `row` over this tile: the lane pair splits the 64 columns in chunks of 4
        float tile_max = -INFINITY;
        float* srow = Sw + row * SLD;
#pragma unroll
        for (int c = 0; c < kTcKeys / 8; ++c)
        {
            int const col = 8 * c + col0;
            float4 const raw = *reinterpret_cast<float4 const*>(srow + col);
            float4 const bb = *reinterpret_cast<float4 const*>(Bs + col);
            float4 sc;
            sc.x = bb.x == -INFINITY ? -INFINITY : raw.x * sh.scale + bb.x;
            sc.y = bb.y == -INFINITY ? -INFINITY : raw.y * sh.scale + bb.y;
            sc.z = bb.z == -INFINITY ? -INFINITY : raw.z * sh.scale + bb.z;
            sc.w = bb.w == -INFINITY ? -INFINITY : raw.w * sh.scale + bb.w;
            *reinterpret_cast<float4*>(srow + col) = sc;
            tile_max = fmaxf(tile_max, fmaxf(fmaxf(sc.x, sc.y), fmaxf(sc.z, sc.w)));
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(kFull, tile_max, 1));
        float const new_max = fmaxf(row_max, tile_max);
        float const corr = new_max == -INFINITY ? 1.f : rescale_factor(row_max, new_max);
        float psum = 0.f;
        __half* prow = Pw + row * SLD;
#pragma unroll
        for (int c = 0; c < kTcKeys / 8; ++c)
        {
            int const col = 8 * c + col0;
            float4 const sc = *reinterpret_cast<float4 const*>(srow + col);
            float const scs[4] = {sc.x, sc.y, sc.z, sc.w};
            unsigned short bits[4];
#pragma unroll
            for (int e = 0; e < 4; ++e)
            {
                __half const ph = __float2half_rn(scs[e] == -INFINITY ? 0.f : expf(scs[e] - new_max));
                psum += __half2float(ph); // the denominator sums what the numerator multiplies
                bits[e] = __half_as_ushort(ph);
            }
            uint2 packed; // one 8-byte store of the 4 halves (little-endian: the lower column in the low half)
            packed.x = static_cast<unsigned>(bits[0]) | (static_cast<unsigned>(bits[1]) << 16);
            packed.y = static_cast<unsigned>(bits[2]) | (static_cast<unsigned>(bits[3]) << 16);
            *reinterpret_cast<uint2*>(prow + col) = packed;
        }
        psum += __shfl_xor_sync(kFull, psum, 1);
        row_sum = row_sum * corr + psum;
        row_max = new_max;
        if (lane % 2 == 0)
        {
            Cw[row] = corr;
        }
        __syncwarp();
        for (int e = lane; e < 16 * D; e += 32)
        {
            Ow[e] *= Cw[e / D];
        }
        __syncwarp();

        // O += P V (P: 16 x 64 half, V: 64 x D half)
#pragma unroll
        for (int nt = 0; nt < D / 16; ++nt)
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            wmma::load_matrix_sync(o, Ow + nt * 16, D, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < kTcKeys / 16; ++kk)
            {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vb;
                wmma::load_matrix_sync(pa, Pw + kk * 16, SLD);
                wmma::load_matrix_sync(vb, Vs + (kk * 16) * LD + nt * 16, LD);
                wmma::mma_sync(o, pa, vb, o);
            }
            wmma::store_matrix_sync(Ow + nt * 16, o, D, wmma::mem_row_major);
        }
        __syncwarp();
    }

    if (splits == 1) // uniform: finish the warp's 16 rows here, the whole warp on one row at a time
    {
        constexpr int DPL = D / 32;
        for (int r = 0; r < 16; ++r)
        {
            int const m = m0 + warp * 16 + r;
            float const mx = __shfl_sync(kFull, row_max, 2 * r); // lanes 2r, 2r + 1 hold row r's state
            float const sm = __shfl_sync(kFull, row_sum, 2 * r);
            if (m >= M)
            {
                break; // uniform
            }
            float q[DPL];
            float acc[DPL];
#pragma unroll
            for (int c = 0; c < DPL; ++c)
            {
                q[c] = __half2float(Qs[(warp * 16 + r) * LD + lane * DPL + c]);
                acc[c] = Ow[r * D + lane * DPL + c];
            }
            finish_query<__half, D>(sh, ptr, b, m / G, kv * G + m % G, kv, lane, q, mx, sm, acc);
        }
        return;
    }
    // partials of the warp's 16 rows (same format as shared_pass)
    for (int r = 0; r < 16; ++r)
    {
        int const m = m0 + warp * 16 + r;
        if (m >= M)
        {
            break;
        }
        size_t const slot = (static_cast<size_t>(b * sh.kv_heads + kv) * M + m) * splits + split;
        for (int d = lane; d < D; d += 32)
        {
            ws_acc[slot * D + d] = Ow[r * D + d];
        }
        if (lane == 2 * r) // the pair of lanes 2r, 2r + 1 holds row r's state
        {
            ws_ml[slot] = make_float2(row_max, row_sum);
        }
    }
}

#if !defined(__CUDA_ARCH__)
static_assert(TcSmem<32>::total == TcLayout(32).total && TcSmem<64>::total == TcLayout(64).total
        && TcSmem<128>::total == TcLayout(128).total,
    "TcLayout (host, plan_launch) must describe shared_pass_tc's layout");
#endif

template <typename T, int D>
constexpr int cc_qpw()
{
    return D <= 64 ? 16 : 8;
}

// ------------------------------------------------------------------------------------------------ device limits
// Read once per device: the multiprocessor count (split planning), the shared-memory opt-in limit (which pass-1
// layouts fit), and every pass-1 kernel that needs more than 48 KiB opted in up to its need -- not on every
// enqueue of every layer. Kernels whose layout does not fit stay un-opted; plan_launch never picks them.
constexpr int kMaxDevices = 64;
std::mutex g_device_mutex;
DeviceLimits g_limits[kMaxDevices];
std::atomic<bool> g_limits_ready[kMaxDevices];

template <typename K>
cudaError_t opt_in(K kernel, size_t smem, int limit)
{
    if (smem <= kDefaultSmem || smem > static_cast<size_t>(limit))
    {
        return cudaSuccess;
    }
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
}

template <int D>
cudaError_t opt_in_dim(int limit)
{
    constexpr int QPW = cc_qpw<float, D>();
    static_assert(kWarps * QPW == (D <= 64 ? 128 : 64), "queries_per_tile() must match the kernel");
    constexpr size_t cc = shared_pass_smem<D, QPW>();
#if !defined(__CUDA_ARCH__)
    static_assert(cc == cc_smem_bytes(D), "cc_smem_bytes (host, plan_launch) must match shared_pass's layout");
#endif
    cudaError_t err = opt_in(shared_pass<float, D, QPW>, cc, limit);
    if (err == cudaSuccess)
    {
        err = opt_in(shared_pass<__half, D, QPW>, cc, limit);
    }
    if (err == cudaSuccess)
    {
        err = opt_in(shared_pass_tc<D>, TcSmem<D>::total, limit);
    }
    return err;
}

template <typename T, int D>
cudaError_t launch_cc(AttentionShape const& sh, Pointers const& ptr, LaunchPlan const& plan, float* ws_acc,
    float2* ws_ml, cudaStream_t stream)
{
    constexpr int QPW = cc_qpw<T, D>();
    dim3 const grid1(static_cast<unsigned>(plan.q_tiles), static_cast<unsigned>(plan.splits),
        static_cast<unsigned>(sh.batch * sh.kv_heads));
    EARN_LAUNCH((shared_pass<T, D, QPW>), grid1, kThreads, plan.smem, stream, sh, ptr, static_cast<int>(plan.splits),
        static_cast<int>(plan.split_len), ws_acc, ws_ml);
    return cudaSuccess;
}

template <int D>
cudaError_t launch_tc(AttentionShape const& sh, Pointers const& ptr, LaunchPlan const& plan, float* ws_acc,
    float2* ws_ml, cudaStream_t stream)
{
    dim3 const grid1(static_cast<unsigned>(plan.q_tiles), static_cast<unsigned>(plan.splits),
        static_cast<unsigned>(sh.batch * sh.kv_heads));
    EARN_LAUNCH(shared_pass_tc<D>, grid1, kTcWarps * 32, plan.smem, stream, sh, ptr, static_cast<int>(plan.splits),
        static_cast<int>(plan.split_len), ws_acc, ws_ml);
    return cudaSuccess;
}

template <typename T, int D>
void launch_merge(AttentionShape const& sh, Pointers const& ptr, LaunchPlan const& plan, float const* ws_acc,
    float2 const* ws_ml, cudaStream_t stream)
{
    int64_t const warps = sh.batch * sh.beams * sh.heads;
    dim3 const grid2(static_cast<unsigned>((warps + kWarps - 1) / kWarps));
    EARN_LAUNCH((merge_pass<T, D>), grid2, kThreads, 0, stream, sh, ptr, static_cast<int>(plan.splits), ws_acc, ws_ml);
}

template <int D>
void launch_dim(AttentionShape const& sh, DType dtype, Pointers const& ptr, LaunchPlan const& plan, float* ws_acc,
    float2* ws_ml, cudaStream_t stream)
{
    if (dtype == DType::kFloat32)
    {
        launch_cc<float, D>(sh, ptr, plan, ws_acc, ws_ml, stream);
    }
    else if (plan.path == Algo::kCudaCores)
    {
        launch_cc<__half, D>(sh, ptr, plan, ws_acc, ws_ml, stream);
    }
    else
    {
        launch_tc<D>(sh, ptr, plan, ws_acc, ws_ml, stream);
    }
    if (plan.splits > 1)
    {
        if (dtype == DType::kFloat32)
        {
            launch_merge<float, D>(sh, ptr, plan, ws_acc, ws_ml, stream);
        }
        else
        {
            launch_merge<__half, D>(sh, ptr, plan, ws_acc, ws_ml, stream);
        }
    }
}

} // namespace

cudaError_t device_limits(DeviceLimits& out)
{
    int device = 0;
    cudaError_t err = cudaGetDevice(&device); // a host-side read of the thread's current device
    if (err != cudaSuccess)
    {
        return err;
    }
    if (device < 0 || device >= kMaxDevices)
    {
        return cudaErrorInvalidDevice;
    }
    if (g_limits_ready[device].load(std::memory_order_acquire))
    {
        out = g_limits[device];
        return cudaSuccess;
    }
    std::lock_guard<std::mutex> lock(g_device_mutex);
    if (!g_limits_ready[device].load(std::memory_order_relaxed))
    {
        DeviceLimits lim;
        err = cudaDeviceGetAttribute(&lim.sm_count, cudaDevAttrMultiProcessorCount, device);
        if (err == cudaSuccess)
        {
            err = cudaDeviceGetAttribute(&lim.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
        }
        if (err == cudaSuccess)
        {
            err = opt_in_dim<32>(lim.smem_optin);
        }
        if (err == cudaSuccess)
        {
            err = opt_in_dim<64>(lim.smem_optin);
        }
        if (err == cudaSuccess)
        {
            err = opt_in_dim<128>(lim.smem_optin);
        }
        if (err != cudaSuccess)
        {
            return err;
        }
        g_limits[device] = lim;
        g_limits_ready[device].store(true, std::memory_order_release);
    }
    out = g_limits[device];
    return cudaSuccess;
}

void forget_device_limits()
{
    std::lock_guard<std::mutex> lock(g_device_mutex);
    for (auto& ready : g_limits_ready)
    {
        ready.store(false, std::memory_order_release);
    }
}

cudaError_t current_plan(AttentionShape const& sh, DType dtype, Algo algo, LaunchPlan& out)
{
    DeviceLimits lim;
    cudaError_t const err = device_limits(lim);
    if (err == cudaSuccess)
    {
        out = plan_launch(sh, dtype, algo, lim);
    }
    return err;
}

cudaError_t launch_compacted_attention(AttentionShape const& sh, DType dtype, Pointers const& ptr, void* workspace,
    size_t workspace_size, cudaStream_t stream, Algo algo)
{
    if (algo == Algo::kTensorCores && dtype != DType::kFloat16)
    {
        return cudaErrorInvalidValue;
    }
    if (!head_dim_supported(sh.head_dim) || sh.kv_heads <= 0 || sh.heads % sh.kv_heads != 0)
    {
        return cudaErrorInvalidValue;
    }
    LaunchPlan plan;
    cudaError_t const err = current_plan(sh, dtype, algo, plan);
    if (err != cudaSuccess)
    {
        return err;
    }
    return launch_planned(sh, dtype, ptr, plan, workspace, workspace_size, stream);
}

cudaError_t launch_planned(AttentionShape const& sh, DType dtype, Pointers const& ptr, LaunchPlan const& plan,
    void* workspace, size_t workspace_size, cudaStream_t stream)
{
    if (!head_dim_supported(sh.head_dim) || sh.kv_heads <= 0 || sh.heads % sh.kv_heads != 0 || sh.gen_len < 1)
    {
        return cudaErrorInvalidValue;
    }
    if (plan.path == Algo::kTensorCores && dtype != DType::kFloat16)
    {
        return cudaErrorInvalidValue;
    }
    if (sh.batch == 0 || sh.beams == 0)
    {
        return cudaSuccess;
    }
    if (misaligned_pointer(ptr) >= 0)
    {
        return cudaErrorInvalidValue; // callers name the tensor (misaligned_pointer)
    }
    int64_t const m = sh.beams * sh.group();
    bool const plan_ok = plan.splits >= 1 && plan.split_len >= plan.key_tile && plan.split_len % plan.key_tile == 0
        && plan.splits * plan.split_len >= sh.shared_len
        && (plan.splits - 1) * plan.split_len < (sh.shared_len > 0 ? sh.shared_len : 1)
        && plan.tile_rows == (plan.path == Algo::kTensorCores ? kTcRows : queries_per_tile(sh.head_dim))
        && plan.q_tiles * plan.tile_rows >= m && plan.splits <= 65535 && plan.q_tiles <= 2147483647
        && sh.batch * sh.kv_heads <= 65535
        && plan.smem == (plan.path == Algo::kTensorCores ? TcLayout(sh.head_dim).total : cc_smem_bytes(sh.head_dim));
    if (!plan_ok)
    {
        return cudaErrorInvalidValue;
    }
    DeviceLimits lim;
    cudaError_t const err = device_limits(lim);
    if (err != cudaSuccess)
    {
        return err;
    }
    if (plan.smem > kDefaultSmem && plan.smem > static_cast<size_t>(lim.smem_optin))
    {
        return cudaErrorInvalidConfiguration; // this layout does not fit the device (plan_launch avoids it)
    }
    float* ws_acc = nullptr;
    float2* ws_ml = nullptr;
    if (plan.splits > 1)
    {
        size_t const need = partials_bytes(sh, plan.splits);
        size_t const slots = static_cast<size_t>(sh.batch * sh.kv_heads * m * plan.splits);
        uintptr_t const base = (reinterpret_cast<uintptr_t>(workspace) + 255) / 256 * 256;
        if (workspace == nullptr || need + (base - reinterpret_cast<uintptr_t>(workspace)) > workspace_size)
        {
            return cudaErrorInvalidValue;
        }
        ws_acc = reinterpret_cast<float*>(base);
        ws_ml = reinterpret_cast<float2*>(base + need - slots * sizeof(float2));
    }
    switch (sh.head_dim)
    {
    case 32: launch_dim<32>(sh, dtype, ptr, plan, ws_acc, ws_ml, stream); break;
    case 64: launch_dim<64>(sh, dtype, ptr, plan, ws_acc, ws_ml, stream); break;
    default: launch_dim<128>(sh, dtype, ptr, plan, ws_acc, ws_ml, stream); break;
    }
    return cudaPeekAtLastError(); // does not clear an error someone else left (nor hide one of ours)
}

} // namespace cuda
} // namespace earn
