// Byte model of earn::CompactedAttention: for the decode shapes of SmolLM2-135M (9:3 heads), Qwen2.5-0.5B (14:2) and
// Llama-3.2-1B (32:8), head_dim 64, 16 users, beam 20, 3 generated tokens per beam, prompt 128 and 1024, on an
// H100-class device (132 SMs, 227 KiB shared memory per block), it prints the bytes a call must move (essential)
// and the bytes it moves per its launch plan, before (the previous planner: partials through the workspace and a
// merge kernel on every call, splits from the SM count, padding loaded) and after (plan_launch), and their ratio.
// `--check`: exit 1 when an "after" ratio of those shapes exceeds 1.1.
//
// The model (global memory, per call):
//   essential = query + output + the unmasked shared K/V rows + key_bias + the beams' generated K/V.
//   moved     = query (again in the merge kernel when there is one) + the shared K/V rows the plan loads (every
//               row of a split from the user's first unmasked key on; the previous planner loaded padding too) +
//               key_bias + generated K/V + output + partials written and read back (fp32 row + max + sum per query
//               and split) when the plan has a merge kernel.
// Re-reads of the same bytes by blocks of one (user, KV head) -- its query tiles and splits, adjacent block indices
// -- are counted once (served by L2 on a GPU); the "L2->SM" column counts every block's loads. This is a model of
// the launch plan, not a measurement: plugins/gpu_check.py measures bandwidth on a GPU.
#include <cstdio>
#include <cstring>
#include <vector>

#include "compacted_attention_cuda.h"

using earn::AttentionShape;
using earn::cuda::DType;

namespace
{

struct Model
{
    char const* name;
    int64_t heads, kv_heads, head_dim;
};

struct Bytes
{
    double essential = 0, moved = 0, l2 = 0;
    int64_t splits = 0;
    bool merge = false;
};

// valid[b]: unmasked shared keys of user b (left padding: the first S - valid[b] columns are masked)
double kv_rows(AttentionShape const& sh, std::vector<int64_t> const& valid)
{
    double rows = 0;
    for (int64_t b = 0; b < sh.batch; ++b)
    {
        rows += static_cast<double>(valid[static_cast<size_t>(b)]);
    }
    return rows;
}

double essential(AttentionShape const& sh, size_t e, std::vector<int64_t> const& valid)
{
    double const q = static_cast<double>(sh.batch * sh.beams * sh.heads * sh.head_dim * static_cast<int64_t>(e));
    double const kv = 2.0 * static_cast<double>(sh.kv_heads * sh.head_dim * static_cast<int64_t>(e)) * kv_rows(sh, valid);
    double const bias = static_cast<double>(sh.batch * sh.shared_len * 4);
    double const gen = 2.0 * static_cast<double>(sh.batch * sh.beams * sh.kv_heads * sh.gen_len * sh.head_dim
                                                 * static_cast<int64_t>(e));
    return 2 * q + kv + bias + gen;
}

// The previous planner (before the byte rule): splits from the SM count with the CUDA-core tile height, key tiles of
// 32, the workspace and the merge kernel on every call, every shared row loaded.
Bytes before(AttentionShape const& sh, DType dt, int sms, std::vector<int64_t> const& valid)
{
    size_t const e = earn::cuda::elem_bytes(dt);
    int64_t const m = sh.beams * sh.group();
    int64_t const blocks = sh.batch * sh.kv_heads * earn::cuda::query_tiles(sh);
    int64_t want = (2 * sms + blocks - 1) / blocks;
    int64_t const most = (sh.shared_len + 63) / 64;
    want = want < most ? want : most;
    want = want < 64 ? want : 64;
    int64_t splits = want < 1 ? 1 : want;
    int64_t split_len = (sh.shared_len + splits - 1) / splits;
    split_len = (split_len + 31) / 32 * 32;
    splits = (sh.shared_len + split_len - 1) / split_len;
    Bytes b;
    b.splits = splits;
    b.merge = true;
    b.essential = essential(sh, e, valid);
    double const q = static_cast<double>(sh.batch * m * sh.head_dim * static_cast<int64_t>(e));
    double const all_rows = 2.0 * static_cast<double>(sh.batch * sh.kv_heads * sh.shared_len * sh.head_dim
                                                      * static_cast<int64_t>(e));
    double const partials = 2.0 * static_cast<double>(sh.batch * sh.kv_heads * m * splits) * (sh.head_dim + 2) * 4;
    b.moved = b.essential - 2.0 * static_cast<double>(sh.kv_heads * sh.head_dim * static_cast<int64_t>(e))
            * kv_rows(sh, valid) + all_rows + q + partials;
    return b;
}

Bytes after(AttentionShape const& sh, DType dt, earn::cuda::DeviceLimits const& dev, std::vector<int64_t> const& valid)
{
    size_t const e = earn::cuda::elem_bytes(dt);
    earn::cuda::LaunchPlan const p = earn::cuda::plan_launch(sh, dt, earn::cuda::Algo::kAuto, dev);
    int64_t const m = sh.beams * sh.group();
    Bytes b;
    b.splits = p.splits;
    b.merge = p.splits > 1;
    b.essential = essential(sh, e, valid);
    double const q = static_cast<double>(sh.batch * m * sh.head_dim * static_cast<int64_t>(e));
    double const partials = b.merge
        ? 2.0 * static_cast<double>(sh.batch * sh.kv_heads * m * p.splits) * (sh.head_dim + 2) * 4
        : 0.0;
    // rows loaded: from each user's first unmasked key on, within each split (left padding: = the unmasked rows)
    b.moved = b.essential + (b.merge ? q : 0.0) + partials;
    // L2 -> SM: each block loads its query tile and its split's K/V rows; each query reads its beam's generated K/V
    double const kv_row_bytes = 2.0 * static_cast<double>(sh.head_dim * static_cast<int64_t>(e));
    b.l2 = b.moved + static_cast<double>(p.q_tiles - 1) * kv_row_bytes * static_cast<double>(sh.kv_heads)
            * kv_rows(sh, valid)
        + static_cast<double>(p.splits - 1) * q
        + static_cast<double>(sh.group() - 1) * 2.0
            * static_cast<double>(sh.batch * sh.beams * sh.kv_heads * sh.gen_len * sh.head_dim * static_cast<int64_t>(e));
    return b;
}

double mb(double x)
{
    return x / 1e6;
}

} // namespace

int main(int argc, char** argv)
{
    bool const check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
    Model const models[] = {{"SmolLM2-135M 9:3", 9, 3, 64}, {"Qwen2.5-0.5B 14:2", 14, 2, 64},
        {"Llama-3.2-1B 32:8", 32, 8, 64}};
    earn::cuda::DeviceLimits const h100{132, 232448};
    int const users = 16, beam = 20, gen = 3;
    double worst_before = 0, worst_after = 0;
    std::printf("| model (heads) | prompt | dtype, path | essential MB | before: splits, moved MB, ratio | "
                "after: splits, moved MB, ratio | after: L2->SM MB |\n|---|---|---|---|---|---|---|\n");
    for (Model const& md : models)
    {
        for (int64_t prompt : {128, 1024})
        {
            for (DType dt : {DType::kFloat16, DType::kFloat32})
            {
                AttentionShape sh;
                sh.batch = users;
                sh.beams = beam;
                sh.heads = md.heads;
                sh.kv_heads = md.kv_heads;
                sh.head_dim = md.head_dim;
                sh.shared_len = prompt;
                sh.gen_len = gen;
                std::vector<int64_t> const valid(static_cast<size_t>(users), prompt);
                Bytes const b0 = before(sh, dt, h100.sm_count, valid);
                Bytes const b1 = after(sh, dt, h100, valid);
                earn::cuda::LaunchPlan const p = earn::cuda::plan_launch(sh, dt, earn::cuda::Algo::kAuto, h100);
                double const r0 = b0.moved / b0.essential, r1 = b1.moved / b1.essential;
                worst_before = r0 > worst_before ? r0 : worst_before;
                worst_after = r1 > worst_after ? r1 : worst_after;
                std::printf("| %s | %lld | %s, %s | %.3f | %lld, %.3f, **%.2f** | %lld, %.3f, **%.2f** | %.3f |\n",
                    md.name, static_cast<long long>(prompt), dt == DType::kFloat16 ? "fp16" : "fp32",
                    p.path == earn::cuda::Algo::kTensorCores ? "tensor cores" : "CUDA cores", mb(b0.essential),
                    static_cast<long long>(b0.splits), mb(b0.moved), r0, static_cast<long long>(b1.splits),
                    mb(b1.moved), r1, mb(b1.l2));
            }
        }
    }
    // left padding: 16 users in a 512-column batch, prompts of 40 .. 512 tokens (Qwen shape, fp16)
    {
        AttentionShape sh;
        sh.batch = users;
        sh.beams = beam;
        sh.heads = 14;
        sh.kv_heads = 2;
        sh.head_dim = 64;
        sh.shared_len = 512;
        sh.gen_len = gen;
        std::vector<int64_t> valid;
        for (int b = 0; b < users; ++b)
        {
            valid.push_back(40 + (472 * b) / (users - 1));
        }
        Bytes const b0 = before(sh, DType::kFloat16, h100.sm_count, valid);
        Bytes const b1 = after(sh, DType::kFloat16, h100, valid);
        std::printf("| Qwen2.5-0.5B 14:2, mixed prompts 40..512 in 512 columns | 512 | fp16, tensor cores | %.3f | "
                    "%lld, %.3f, **%.2f** | %lld, %.3f, **%.2f** | %.3f |\n",
            mb(b0.essential), static_cast<long long>(b0.splits), mb(b0.moved), b0.moved / b0.essential,
            static_cast<long long>(b1.splits), mb(b1.moved), b1.moved / b1.essential, mb(b1.l2));
    }
    std::printf("\nworst ratio (the six model x prompt shapes, both dtypes): before %.2f, after %.2f (target <= 1.1)\n",
        worst_before, worst_after);
    return check && worst_after > 1.1 ? 1 : 0;
}
