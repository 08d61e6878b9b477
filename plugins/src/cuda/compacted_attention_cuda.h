// CUDA implementation of earn::CompactedAttention (flash-decoding split-K over the shared keys), host interface.
//
// Used by the TensorRT plugin (src/trt), by plugins/gpu_check.py (bound into PyTorch) and by the CPU emulation test
// (plugins/tests/cuda_emulation). No TensorRT here.
//
// One or two kernels per call (plan_launch decides, from the shape, the element type and the device):
//  1. shared pass: one block per (user, KV head, query tile, split of the shared keys). The block reads its split
//     of the KV head's shared keys/values ONCE for all beams x group queries of the tile, through shared memory,
//     with an online softmax, starting at the user's first unmasked key (a left-padded prefix is not read).
//     fp32: CUDA cores, tiles of up to 128 queries (64 for head_dim 128) x 32 keys. fp16: tensor cores (WMMA),
//     tiles of 64 queries x 64 keys, unless the layout exceeds the device's shared memory or CUDA cores are asked
//     for. With ONE split the block then merges each query's own generated keys and writes the normalised output
//     (no workspace, no second kernel). With several it writes unnormalised partials plus (max, sum), and
//  2. merge: one warp per (user, beam, query head) merges the splits and the beam's own <= Tg generated keys and
//     writes the normalised output.
// Splits come from bytes (byte_split_limit: the partials of a split cost at most 5% of the K/V it reads) and from
// parallelism (about two pass-1 blocks per SM). The query tiles of one (user, KV head, split) are adjacent block
// indices, so their re-reads of the same K/V rows are served by L2 on a GPU (plugins/README.md, byte model).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "earn/compacted_attention.h"

namespace earn
{
namespace cuda
{

enum class DType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

struct Pointers
{
    void const* query;
    void const* shared_key;
    void const* shared_value;
    float const* key_bias;
    void const* gen_key;
    void const* gen_value;
    void* out;
};

constexpr int kKeyTile = 32;      // keys per shared-memory tile of the CUDA-core pass (one per lane)
constexpr int kMaxSplits = 64;    // upper bound of the split count
constexpr int kMinSplitKeys = 64; // never split below this many keys per split
// Splits are planned from bytes: the partials a split writes and the merge pass reads back (fp32 output row + max
// + sum per query) may cost at most 1/kPartialBudgetInv of the K/V bytes that split reads (5%): a split is worth
// its partials only when it reads far more than it writes.
constexpr int64_t kPartialBudgetInv = 20;
constexpr int kCcWarps = 8;  // warps per block of the CUDA-core pass
constexpr int kTcWarps = 4;  // warps per block of the tensor-core pass (16 query rows each)
constexpr int kTcKeys = 64;  // keys per shared-memory tile of the tensor-core pass
constexpr int kTcRows = 16 * kTcWarps;
constexpr size_t kDefaultSmem = 48 * 1024; // dynamic shared memory a kernel gets without opting in

static inline bool head_dim_supported(int64_t d)
{
    return d == 32 || d == 64 || d == 128;
}

// Which pass-1 kernel: fp16 runs on tensor cores by default (WMMA, fp32 accumulation), fp32 on CUDA cores.
// The values of kCudaCores and kTensorCores are the TensorRT plugin's tactics.
enum class Algo : int32_t
{
    kAuto = 0,
    kCudaCores = 1,   // fp32 math on CUDA cores, fp32 or fp16 I/O
    kTensorCores = 2, // fp16 only
};

static inline size_t elem_bytes(DType t)
{
    return t == DType::kFloat16 ? 2 : 4;
}

// Queries per block of the CUDA-core pass (one block reads the shared keys once for all of them).
constexpr int64_t queries_per_tile(int64_t head_dim)
{
    return head_dim <= 64 ? 128 : 64;
}

static inline int64_t query_tiles(AttentionShape const& sh)
{
    int64_t const m = sh.beams * sh.group();
    int64_t const t = queries_per_tile(sh.head_dim);
    return (m + t - 1) / t;
}

constexpr size_t round128(size_t bytes)
{
    return (bytes + 127) / 128 * 128;
}

// Dynamic shared memory of the CUDA-core pass: Q [rows][D], K [kKeyTile][D + 4], V [kKeyTile][D], bias
// [kKeyTile] and the block's first valid key (4 floats) -- float. (compacted_attention.cu static_asserts it.)
constexpr size_t cc_smem_bytes(int64_t d)
{
    return sizeof(float)
        * static_cast<size_t>(queries_per_tile(d) * d + kKeyTile * (d + 4) + kKeyTile * d + kKeyTile + 4);
}

// Shared-memory layout of the tensor-core pass (offsets in bytes, 128-byte aligned regions): Q, K, V tiles
// (half, row stride D + 8), bias [kTcKeys] + the block's first valid key, then per warp: S [16][72] float,
// P [16][72] half, O [16][D] float, correction [16] float. Row stride 72 of S and P: the softmax reads S as float4
// and writes P as 4 halves at columns 8c + 4h (lane pair h = 0, 1 of row r), which hits 8 distinct 16-byte bank
// groups per quarter-warp for S and 16 distinct 8-byte ones per half-warp for P: no bank conflicts.
struct TcLayout
{
    static constexpr int kSLd = kTcKeys + 8;
    size_t q = 0, k = 0, v = 0, bias = 0, warp0 = 0, w_s = 0, w_p = 0, w_o = 0, w_corr = 0, per_warp = 0, total = 0;
    int ld = 0;
    explicit constexpr TcLayout(int64_t d)
    {
        ld = static_cast<int>(d) + 8;
        q = 0;
        k = q + round128(2 * kTcRows * static_cast<size_t>(ld));
        v = k + round128(2 * kTcKeys * static_cast<size_t>(ld));
        bias = v + round128(2 * kTcKeys * static_cast<size_t>(ld));
        warp0 = bias + round128(sizeof(float) * kTcKeys + 16);
        w_s = 0;
        w_p = w_s + round128(sizeof(float) * 16 * kSLd);
        w_o = w_p + round128(2 * 16 * kSLd);
        w_corr = w_o + round128(sizeof(float) * 16 * static_cast<size_t>(d));
        per_warp = w_corr + round128(sizeof(float) * 16);
        total = warp0 + kTcWarps * per_warp;
    }
};

// What the device offers (read once per device by the launcher; the byte model passes its own).
struct DeviceLimits
{
    int sm_count = 0;
    int smem_optin = 0; // cudaDevAttrMaxSharedMemoryPerBlockOptin: 232448 on H100/H200, 101376 on A10/L4/L40S
};

// How one call runs: which pass-1 kernel, its query tile, how the shared keys are split, shared memory and the
// workspace it needs (none with one split: the pass-1 block merges the generated keys and writes the output).
struct LaunchPlan
{
    Algo path = Algo::kCudaCores; // kCudaCores or kTensorCores, never kAuto
    bool tc_fell_back = false;    // tensor cores asked for, their layout does not fit the device's shared memory
    int64_t tile_rows = 0;        // queries per pass-1 block
    int64_t q_tiles = 0;
    int64_t key_tile = 0;         // keys per shared-memory tile
    int64_t splits = 1;
    int64_t split_len = 0;
    size_t smem = 0;              // dynamic shared memory of the pass-1 kernel
    size_t workspace = 0;         // bytes of workspace used (0 when splits == 1)
};

// Workspace of `splits` splits: fp32 partial outputs (256-byte aligned) then (max, sum) per (user, KV head, query,
// split).
static inline size_t partials_bytes(AttentionShape const& sh, int64_t splits)
{
    if (splits <= 1)
    {
        return 0;
    }
    size_t const slots = static_cast<size_t>(sh.batch * sh.kv_heads * sh.beams * sh.group() * splits);
    return (slots * static_cast<size_t>(sh.head_dim) * sizeof(float) + 255) / 256 * 256 + slots * 2 * sizeof(float);
}

// Most splits the byte rule allows: the partials of one split (written and read back) <= 1/kPartialBudgetInv of
// the K/V bytes it reads, i.e. split_len >= kPartialBudgetInv * M * (D + 2) * 4 / (D * elem).
static inline int64_t byte_split_limit(AttentionShape const& sh, DType dtype)
{
    int64_t const m = sh.beams * sh.group();
    int64_t const partial = 2 * m * (sh.head_dim + 2) * 4;                                 // per split
    int64_t const kv_per_key = 2 * sh.head_dim * static_cast<int64_t>(elem_bytes(dtype)); // K + V row
    int64_t const min_len = (kPartialBudgetInv * partial + kv_per_key - 1) / kv_per_key;
    return min_len > 0 ? sh.shared_len / min_len : sh.shared_len;
}

static inline LaunchPlan plan_launch(AttentionShape const& sh, DType dtype, Algo algo, DeviceLimits const& dev)
{
    LaunchPlan p;
    bool const want_tc = dtype == DType::kFloat16 && algo != Algo::kCudaCores;
    size_t const tc_smem = TcLayout(sh.head_dim).total;
    size_t const limit = dev.smem_optin > 0 ? static_cast<size_t>(dev.smem_optin) : kDefaultSmem;
    p.path = want_tc && tc_smem <= limit ? Algo::kTensorCores : Algo::kCudaCores;
    p.tc_fell_back = want_tc && p.path != Algo::kTensorCores;
    p.tile_rows = p.path == Algo::kTensorCores ? kTcRows : queries_per_tile(sh.head_dim);
    p.key_tile = p.path == Algo::kTensorCores ? kTcKeys : kKeyTile;
    p.smem = p.path == Algo::kTensorCores ? tc_smem : cc_smem_bytes(sh.head_dim);
    int64_t const m = sh.beams * sh.group();
    p.q_tiles = (m + p.tile_rows - 1) / p.tile_rows;
    // parallelism: about two pass-1 blocks per SM; bounded by kMinSplitKeys, kMaxSplits and the byte rule
    int64_t const blocks = sh.batch * sh.kv_heads * p.q_tiles;
    int64_t want = blocks > 0 ? (2 * static_cast<int64_t>(dev.sm_count) + blocks - 1) / blocks : 1;
    int64_t const most = (sh.shared_len + kMinSplitKeys - 1) / kMinSplitKeys;
    int64_t const by_bytes = byte_split_limit(sh, dtype);
    want = want < most ? want : most;
    want = want < by_bytes ? want : by_bytes;
    want = want < kMaxSplits ? want : kMaxSplits;
    int64_t splits = want < 1 ? 1 : want;
    int64_t split_len = (sh.shared_len + splits - 1) / splits;
    split_len = (split_len + p.key_tile - 1) / p.key_tile * p.key_tile;
    split_len = split_len < p.key_tile ? p.key_tile : split_len;
    p.splits = sh.shared_len > 0 ? (sh.shared_len + split_len - 1) / split_len : 1;
    p.split_len = split_len;
    p.workspace = partials_bytes(sh, p.splits);
    return p;
}

// Workspace of any call with at most `sh`'s sizes and element type, on any device: what getWorkspaceSize reserves.
// With s >= 2 splits, M * s <= shared_len * D * elem / (kPartialBudgetInv * 4 * (D + 2)) (the byte rule), so the
// bound holds for every smaller beam and query count too.
static inline size_t workspace_bytes(AttentionShape const& sh, DType dtype = DType::kFloat32)
{
    int64_t const m = sh.beams * sh.group();
    int64_t const most = (sh.shared_len + kMinSplitKeys - 1) / kMinSplitKeys;
    int64_t const cap = most < kMaxSplits ? most : kMaxSplits;
    int64_t const by_bytes = sh.shared_len * sh.head_dim * static_cast<int64_t>(elem_bytes(dtype))
        / (kPartialBudgetInv * 4 * (sh.head_dim + 2));
    int64_t slots_per_head = m * cap < by_bytes ? m * cap : by_bytes; // M * splits
    if (cap < 2 || slots_per_head < 2)
    {
        return 0; // never more than one split: no workspace
    }
    size_t const slots = static_cast<size_t>(sh.batch * sh.kv_heads * slots_per_head);
    return (slots * static_cast<size_t>(sh.head_dim) * sizeof(float) + 255) / 256 * 256 + slots * 2 * sizeof(float)
        + 1024; // + alignment slack
}

// Index of the first input/output pointer the kernels cannot use (query, shared_key, shared_value, key_bias,
// gen_key, gen_value, out): the 16-byte vector loads need 16-byte aligned bases (the bias 4-byte); -1 when all are.
static inline int misaligned_pointer(Pointers const& p)
{
    void const* ptrs[7] = {p.query, p.shared_key, p.shared_value, p.key_bias, p.gen_key, p.gen_value, p.out};
    for (int i = 0; i < 7; ++i)
    {
        uintptr_t const need = i == 3 ? 4 : 16;
        if (reinterpret_cast<uintptr_t>(ptrs[i]) % need != 0)
        {
            return i;
        }
    }
    return -1;
}

// The device's limits, read once per device (multiprocessors, shared-memory opt-in limit) and the kernels' shared
// memory attributes set once per device. Thread-safe.
cudaError_t device_limits(DeviceLimits& out);

// Forget the cached limits (tests that change the emulated device; never needed on a GPU).
void forget_device_limits();

// Launch the kernels on `stream` (pass 1, plus the merge pass when the plan has more than one split). Returns
// cudaSuccess, or: cudaErrorInvalidValue for unsupported shapes (see head_dim_supported), kTensorCores with fp32,
// a misaligned pointer (misaligned_pointer), a workspace smaller than the plan's; cudaErrorInvalidConfiguration
// when even the CUDA-core pass needs more shared memory than the device allows; or the launch's error.
// Launch errors are read with cudaPeekAtLastError (an earlier, unrelated error is not cleared).
cudaError_t launch_compacted_attention(AttentionShape const& sh, DType dtype, Pointers const& ptr, void* workspace,
    size_t workspace_size, cudaStream_t stream, Algo algo = Algo::kAuto);

// The plan launch_compacted_attention uses on the current device (what a call would do; for tests and tools).
cudaError_t current_plan(AttentionShape const& sh, DType dtype, Algo algo, LaunchPlan& out);

// Launch with a given plan (launch_compacted_attention = current_plan + this; tests force one or many splits).
// A plan inconsistent with the shape (tile height, split cover, key-tile multiple) is cudaErrorInvalidValue.
cudaError_t launch_planned(AttentionShape const& sh, DType dtype, Pointers const& ptr, LaunchPlan const& plan,
    void* workspace, size_t workspace_size, cudaStream_t stream);

} // namespace cuda
} // namespace earn
