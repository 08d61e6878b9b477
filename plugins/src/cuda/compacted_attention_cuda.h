// CUDA implementation of earn::CompactedAttention (flash-decoding split-K over the shared keys), host interface.
//
// Used by the TensorRT plugin (src/trt), by plugins/gpu_check.py (bound into PyTorch) and by the CPU emulation test
// (plugins/tests/cuda_emulation). No TensorRT here.
//
// Two kernels per call:
//  1. shared pass: one block per (user, KV head, query tile, split of the shared keys). The block reads its split
//     of the KV head's shared keys/values ONCE for all beams x group queries of the tile, through shared memory,
//     with an online softmax; it writes unnormalised partial outputs plus (max, sum). fp32: CUDA cores, tiles of
//     up to 128 queries (64 for head_dim 128) x 32 keys. fp16: tensor cores (WMMA), tiles of 64 queries x 64 keys.
//  2. merge: one warp per (user, beam, query head) merges the splits and the beam's own <= Tg generated keys and
//     writes the normalised output.
// Splits are chosen so that the shared pass has about two blocks per SM (long prompts get more splits).
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

constexpr int kKeyTile = 32;     // keys per shared-memory tile (one per lane)
constexpr int kMaxSplits = 64;   // upper bound of the split count (sizes the workspace)
constexpr int kMinSplitKeys = 64; // never split below this many keys per split

static inline bool head_dim_supported(int64_t d)
{
    return d == 32 || d == 64 || d == 128;
}

// Queries per block (one block reads the shared keys once for all of them).
static inline int64_t queries_per_tile(int64_t head_dim)
{
    return head_dim <= 64 ? 128 : 64;
}

static inline int64_t query_tiles(AttentionShape const& sh)
{
    int64_t const m = sh.beams * sh.group();
    int64_t const t = queries_per_tile(sh.head_dim);
    return (m + t - 1) / t;
}

// Number of splits of the shared keys for this call; `sm_count` = multiprocessors of the device.
static inline int64_t plan_splits(AttentionShape const& sh, int64_t sm_count)
{
    int64_t const blocks = sh.batch * sh.kv_heads * query_tiles(sh);
    int64_t want = blocks > 0 ? (2 * sm_count + blocks - 1) / blocks : 1;
    int64_t const most = (sh.shared_len + kMinSplitKeys - 1) / kMinSplitKeys;
    want = want < most ? want : most;
    want = want < kMaxSplits ? want : kMaxSplits;
    return want < 1 ? 1 : want;
}

// Workspace of one call with at most `sh`'s sizes: partial outputs and (max, sum) of every split.
static inline size_t workspace_bytes(AttentionShape const& sh)
{
    int64_t const m = sh.beams * sh.group();
    int64_t most = (sh.shared_len + kMinSplitKeys - 1) / kMinSplitKeys; // plan_splits' bound on any device
    int64_t const splits = most < 1 ? 1 : (most < kMaxSplits ? most : kMaxSplits);
    size_t const per_query = static_cast<size_t>(splits) * static_cast<size_t>(sh.head_dim + 2) * sizeof(float);
    return static_cast<size_t>(sh.batch * sh.kv_heads * m) * per_query + 1024; // + alignment slack
}

// Which pass-1 kernel: fp16 runs on tensor cores by default (WMMA, fp32 accumulation), fp32 on CUDA cores.
enum class Algo : int32_t
{
    kAuto = 0,
    kCudaCores = 1,  // fp32 math on CUDA cores, fp32 or fp16 I/O
    kTensorCores = 2, // fp16 only
};

// Launch both kernels on `stream`. Returns cudaSuccess, or the error (also for unsupported shapes:
// cudaErrorInvalidValue, see head_dim_supported; and for kTensorCores with fp32).
cudaError_t launch_compacted_attention(AttentionShape const& sh, DType dtype, Pointers const& ptr, void* workspace,
    size_t workspace_size, cudaStream_t stream, Algo algo = Algo::kAuto);

} // namespace cuda
} // namespace earn
