// Runs the CUDA kernels of earn::CompactedAttention (plugins/src/cuda/compacted_attention.cu, compiled as C++ against
// cuda_emu.h) on the CPU and compares them with a double-precision attention over [shared keys ; own generated keys].
// Cases: head_dim 32/64/128, GQA group 1..8 (MHA, SmolLM2 3, Llama 4, Qwen 7, 8), beams 1/20/40, left padding
// and mixed prompt lengths with heavy padding (the padded K/V rows hold NaN: a kernel that reads them fails),
// register-only S = 2; each with the launcher's own plan, one forced split (the direct path: no workspace, no
// merge kernel) and many forced splits (partials + merge), in fp32 on CUDA cores and fp16 on both paths. Then the
// launcher's guards: the tensor-core layout falls back to CUDA cores where the device's shared-memory opt-in
// limit is too small (A10/L4: 101376 bytes), device attributes read once per device, misaligned pointers and
// inconsistent plans refused, an earlier error reported but not cleared. Prints PASS/FAIL lines; exit 0 when all
// pass.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "compacted_attention_cuda.h"
#include "reference.h"

using earn::AttentionShape;
using earn::cuda::Algo;
using earn::cuda::DType;
using earn::cuda::LaunchPlan;

namespace
{

struct Case
{
    char const* name;
    int64_t b, beams, hq, hkv, d, s, t;
    int pad; // 0: none, 1: every other user left-padded, 2: heavy (valid lengths S, 40, 7, S/2 ... per user)
};

enum class Split
{
    kPlanned,
    kOne,
    kMany,
};

int g_failed = 0;

void check(bool ok, char const* what)
{
    g_failed += ok ? 0 : 1;
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what);
}

AttentionShape shape_of(Case const& c)
{
    AttentionShape sh;
    sh.batch = c.b;
    sh.beams = c.beams;
    sh.heads = c.hq;
    sh.kv_heads = c.hkv;
    sh.head_dim = c.d;
    sh.shared_len = c.s;
    sh.gen_len = c.t;
    sh.scale = 1.f / std::sqrt(float(c.d));
    return sh;
}

// Heavy padding: user b keeps the last valid[b % 4] columns; the padded K/V rows become NaN (the reference skips
// masked keys, so only a kernel that loads them sees the NaN).
void pad_heavily(AttentionShape const& sh, earn_test::Inputs& in, bool poison)
{
    int64_t const S = sh.shared_len;
    int64_t const valid[4] = {S, 40 < S ? 40 : S, 7 < S ? 7 : S, S / 2 > 0 ? S / 2 : 1};
    for (int64_t b = 0; b < sh.batch; ++b)
    {
        int64_t const pad = S - valid[b % 4];
        for (int64_t s = 0; s < S; ++s)
        {
            in.bias[b * S + s] = s < pad ? -3.4028234663852886e38f : 0.f;
        }
    }
    if (!poison)
    {
        return;
    }
    for (int64_t b = 0; b < sh.batch; ++b)
    {
        for (int64_t s = 0; s < S && earn::key_masked(in.bias[b * S + s]); ++s) // the padded prefix
        {
            for (int64_t kv = 0; kv < sh.kv_heads; ++kv)
            {
                for (int64_t d = 0; d < sh.head_dim; ++d)
                {
                    in.sk[sh.shared_row(b, kv, s) + d] = NAN;
                    in.sv[sh.shared_row(b, kv, s) + d] = NAN;
                }
            }
        }
    }
}

LaunchPlan forced(AttentionShape const& sh, DType dtype, Algo algo, Split split)
{
    earn::cuda::LaunchPlan p;
    earn::cuda::current_plan(sh, dtype, algo, p);
    if (split == Split::kOne)
    {
        p.split_len = (sh.shared_len + p.key_tile - 1) / p.key_tile * p.key_tile;
        p.split_len = p.split_len < p.key_tile ? p.key_tile : p.split_len;
        p.splits = 1;
    }
    else if (split == Split::kMany)
    {
        p.split_len = p.key_tile; // as many splits as key tiles
        p.splits = sh.shared_len > 0 ? (sh.shared_len + p.split_len - 1) / p.split_len : 1;
    }
    p.workspace = earn::cuda::partials_bytes(sh, p.splits);
    return p;
}

void run(Case const& c, DType dtype, Algo algo, Split split, std::mt19937& rng)
{
    AttentionShape const sh = shape_of(c);
    bool const f16 = dtype == DType::kFloat16;
    earn_test::Inputs in = earn_test::random_inputs(sh, f16, c.pad == 1, rng);
    if (c.pad == 2)
    {
        pad_heavily(sh, in, true);
    }
    std::vector<uint16_t> qh, skh, svh, gkh, gvh, outh;
    std::vector<float> out(in.q.size(), NAN);
    earn::cuda::Pointers p{};
    if (f16)
    {
        qh = earn_test::to_half(in.q);
        skh = earn_test::to_half(in.sk);
        svh = earn_test::to_half(in.sv);
        gkh = earn_test::to_half(in.gk);
        gvh = earn_test::to_half(in.gv);
        outh.assign(in.q.size(), 0x7e00); // NaN until written
        p = {qh.data(), skh.data(), svh.data(), in.bias.data(), gkh.data(), gvh.data(), outh.data()};
    }
    else
    {
        p = {in.q.data(), in.sk.data(), in.sv.data(), in.bias.data(), in.gk.data(), in.gv.data(), out.data()};
    }
    LaunchPlan const plan = forced(sh, dtype, algo, split);
    // the workspace getWorkspaceSize reserves covers every plan the launcher makes; forced plans get their own
    std::vector<unsigned char> ws(split == Split::kPlanned ? earn::cuda::workspace_bytes(sh) : plan.workspace + 256);
    bool const ws_ok = split != Split::kPlanned || plan.workspace + 256 <= ws.size() || plan.splits == 1;
    int const launches_before = earn_emu::counters().launches;
    cudaError_t const err = split == Split::kPlanned
        ? earn::cuda::launch_compacted_attention(sh, dtype, p, ws.empty() ? nullptr : ws.data(), ws.size(), nullptr, algo)
        : earn::cuda::launch_planned(sh, dtype, p, plan, ws.data(), ws.size(), nullptr);
    int const launches = earn_emu::counters().launches - launches_before;
    if (f16)
    {
        for (size_t i = 0; i < out.size(); ++i)
        {
            out[i] = earn::half_bits_to_float(outh[i]);
        }
    }
    double err_max = 0, ref_max = 0;
    earn_test::compare(out, earn_test::reference(sh, in.q, in.sk, in.sv, in.bias, in.gk, in.gv), err_max, ref_max);
    // fp32: fp32 accumulation vs double; fp16: output rounding (and P rounded to fp16 on tensor cores)
    double const tol = f16 ? 5e-3 * (ref_max > 1 ? ref_max : 1) : 2e-5;
    bool const kernels_ok = launches == (plan.splits == 1 ? 1 : 2); // one split: no merge kernel
    bool const ok = err == cudaSuccess && err_max <= tol && kernels_ok && ws_ok;
    g_failed += ok ? 0 : 1;
    char const* how = split == Split::kPlanned ? "planned" : (split == Split::kOne ? "one-split" : "many-splits");
    std::printf("%s %-38s %s %-12s %-11s splits=%-3lld kernels=%d max|err| %.2e (tol %.1e)%s\n", ok ? "PASS" : "FAIL",
        c.name, f16 ? "fp16" : "fp32", plan.path == Algo::kTensorCores ? "tensor-cores" : "cuda-cores", how,
        static_cast<long long>(plan.splits), launches, err_max, tol, err == cudaSuccess ? "" : " launch error");
}

// Shared-memory bank model (32 banks of 4 bytes): a warp access of `width` bytes per lane is served in phases of
// 128 / width lanes; within a phase, distinct 4-byte words in one bank serialise (the same word is a broadcast).
// Returns the worst n-way conflict of the access whose byte address for lane l is addr(l).
template <typename F>
int bank_conflict_ways(int width, F addr)
{
    int worst = 1;
    int const phase = width >= 4 ? 128 / width : 32;
    for (int p0 = 0; p0 < 32; p0 += phase)
    {
        for (int bank = 0; bank < 32; ++bank)
        {
            std::vector<long> words;
            for (int l = p0; l < p0 + phase; ++l)
            {
                for (int b = 0; b < (width >= 4 ? width : 1); b += 4)
                {
                    long const word = (addr(l) + b) / 4;
                    if (word % 32 == bank && std::find(words.begin(), words.end(), word) == words.end())
                    {
                        words.push_back(word);
                    }
                }
            }
            worst = static_cast<int>(words.size()) > worst ? static_cast<int>(words.size()) : worst;
        }
    }
    return worst;
}

// The tensor-core softmax's accesses to S (float, row stride kSLd) and P (half, row stride kSLd): lane l serves row
// l / 2; before, lane pair h = l % 2 walked 32 consecutive columns (one float / half per step); now it takes
// chunks of 4 columns at 8c + 4h (one float4 / 4 halves per step). The worst step over all c.
void softmax_layout()
{
    int const ld = earn::cuda::TcLayout::kSLd;
    int old_s = 1, old_p = 1, new_s = 1, new_p = 1;
    for (int c = 0; c < 32; ++c)
    {
        auto col_old = [&](int l) { return (l / 2) * ld + (l % 2) * 32 + c; };
        old_s = std::max(old_s, bank_conflict_ways(4, [&](int l) { return 4L * col_old(l); }));
        old_p = std::max(old_p, bank_conflict_ways(2, [&](int l) { return 2L * col_old(l); }));
    }
    for (int c = 0; c < 8; ++c)
    {
        auto col_new = [&](int l) { return (l / 2) * ld + 8 * c + (l % 2) * 4; };
        new_s = std::max(new_s, bank_conflict_ways(16, [&](int l) { return 4L * col_new(l); }));
        new_p = std::max(new_p, bank_conflict_ways(8, [&](int l) { return 2L * col_new(l); }));
    }
    std::printf("     softmax S/P bank conflicts (row stride %d): before S %d-way, P %d-way; now S %d-way, P %d-way\n", ld,
        old_s, old_p, new_s, new_p);
    check(old_s == 8 && old_p == 4 && new_s == 1 && new_p == 1,
        "tensor-core softmax layout is bank-conflict free (the previous walk: 8-way on S, 4-way on P)");
}

void guards(std::mt19937& rng)
{
    Case const c{"guard 4:2 d128 beam3 S70 pad", 2, 3, 4, 2, 128, 70, 2, 2};
    AttentionShape const sh = shape_of(c);
    // A10/L4-like device: the fp16 tensor-core layout at head_dim 128 does not fit 101376 bytes
    earn_emu::smem_optin() = 101376;
    earn::cuda::forget_device_limits();
    LaunchPlan plan;
    earn::cuda::current_plan(sh, DType::kFloat16, Algo::kTensorCores, plan);
    check(plan.path == Algo::kCudaCores && plan.tc_fell_back && earn::cuda::TcLayout(128).total > 101376,
        "tensor cores at head_dim 128 fall back to CUDA cores under a 101376-byte opt-in limit");
    earn::cuda::current_plan(shape_of(Case{"", 2, 3, 4, 2, 64, 70, 2, 0}), DType::kFloat16, Algo::kAuto, plan);
    check(plan.path == Algo::kTensorCores, "tensor cores at head_dim 64 still fit 101376 bytes");
    run(c, DType::kFloat16, Algo::kTensorCores, Split::kPlanned, rng); // runs (on CUDA cores) = reference
    earn_emu::smem_optin() = 232448;
    earn::cuda::forget_device_limits();

    // device attributes and kernel attributes: once per device, not per call
    auto const before = earn_emu::counters();
    for (int i = 0; i < 3; ++i)
    {
        run(c, DType::kFloat16, Algo::kAuto, Split::kPlanned, rng);
    }
    auto const after = earn_emu::counters();
    check(after.attribute_reads - before.attribute_reads == 2
            && after.func_attribute_sets - before.func_attribute_sets <= 9,
        "device attributes read once per device (2 reads, <= 9 kernel opt-ins for 3 calls)");

    // refusals: fp32 on tensor cores, head_dim 80, a misaligned pointer, an inconsistent plan
    earn::cuda::Pointers p{};
    AttentionShape small = shape_of(Case{"", 1, 1, 2, 1, 64, 4, 1, 0});
    bool const refused_tc
        = earn::cuda::launch_compacted_attention(small, DType::kFloat32, p, nullptr, 0, nullptr, Algo::kTensorCores)
        == cudaErrorInvalidValue;
    AttentionShape d80 = small;
    d80.head_dim = 80;
    bool const refused_dim
        = earn::cuda::launch_compacted_attention(d80, DType::kFloat16, p, nullptr, 0, nullptr) == cudaErrorInvalidValue;
    check(refused_tc && refused_dim, "refusals (fp32 on tensor cores, head_dim 80)");
    std::vector<float> buf(4096, 0.f);
    earn::cuda::Pointers aligned{buf.data(), buf.data(), buf.data(), buf.data(), buf.data(), buf.data(), buf.data()};
    earn::cuda::Pointers odd = aligned;
    odd.gen_value = reinterpret_cast<unsigned char const*>(buf.data()) + 2; // a view with an odd storage offset
    check(earn::cuda::misaligned_pointer(aligned) == -1 && earn::cuda::misaligned_pointer(odd) == 5
            && earn::cuda::launch_compacted_attention(small, DType::kFloat16, odd, nullptr, 0, nullptr)
                == cudaErrorInvalidValue,
        "a misaligned pointer is refused and named (gen_value = 5) before any load");
    LaunchPlan bad;
    earn::cuda::current_plan(small, DType::kFloat32, Algo::kAuto, bad);
    bad.split_len = 3;
    LaunchPlan small_smem;
    earn::cuda::current_plan(small, DType::kFloat32, Algo::kAuto, small_smem);
    small_smem.smem /= 2;
    check(earn::cuda::launch_planned(small, DType::kFloat32, aligned, bad, nullptr, 0, nullptr) == cudaErrorInvalidValue
            && earn::cuda::launch_planned(small, DType::kFloat32, aligned, small_smem, nullptr, 0, nullptr)
                == cudaErrorInvalidValue,
        "an inconsistent plan is refused (split length, shared memory)");

    // an error someone else left is reported (peek), not cleared
    earn_emu::sticky_error() = 700;
    cudaError_t const seen = earn::cuda::launch_compacted_attention(small, DType::kFloat32, aligned, nullptr, 0, nullptr);
    check(seen == 700 && earn_emu::sticky_error() == 700, "an earlier error is reported and left in place (peek)");
    earn_emu::sticky_error() = cudaSuccess;

    // the launcher's own plans need no workspace with one split, and getWorkspaceSize's bound covers every plan
    bool bound_ok = true;
    for (int64_t beams : {1, 5, 20, 40})
    {
        for (int64_t s : {2, 64, 300, 1024, 4096, 20000})
        {
            for (int sms : {1, 8, 132})
            {
                for (DType dt : {DType::kFloat32, DType::kFloat16})
                {
                    AttentionShape x = shape_of(Case{"", 3, beams, 14, 2, 64, s, 3, 0});
                    earn::cuda::DeviceLimits dev{sms, 232448};
                    LaunchPlan const pl = earn::cuda::plan_launch(x, dt, Algo::kAuto, dev);
                    AttentionShape mx = x;
                    mx.beams = 40;
                    bound_ok = bound_ok && pl.workspace <= earn::cuda::workspace_bytes(mx)
                        && (pl.splits > 1 || pl.workspace == 0) && pl.workspace <= earn::cuda::workspace_bytes(x, dt);
                }
            }
        }
    }
    check(bound_ok, "workspace_bytes bounds every plan (smaller beams, both dtypes, 1..132 SMs)");
}

} // namespace

int main()
{
    std::mt19937 rng(1234);
    Case const cases[] = {
        {"qwen 14:2 (G7) d64 beam20 S130 pad", 2, 20, 14, 2, 64, 130, 3, 1},
        {"llama 32:8 (G4) d64 beam4 S77", 1, 4, 32, 8, 64, 77, 2, 0},
        {"smollm2 9:3 (G3) d64 beam20 S64", 1, 20, 9, 3, 64, 64, 1, 0},
        {"registers only S=2 (G7) beam20", 2, 20, 14, 2, 64, 2, 1, 0},
        {"MHA 4:4 (G1) d128 beam3 S100 pad", 2, 3, 4, 4, 128, 100, 2, 1},
        {"GQA 8:1 (G8) d32 beam40 S65", 1, 40, 8, 1, 32, 65, 3, 0},
        {"GQA 4:2 (G2) d128 beam20 S96", 1, 20, 4, 2, 128, 96, 2, 0},
        {"mixed prompts heavy pad 14:2 d64 beam2 S512", 4, 2, 14, 2, 64, 512, 2, 2},
        {"mixed prompts heavy pad 8:8 d32 beam1 S300", 4, 1, 8, 8, 32, 300, 1, 2},
        {"beam 1, 1 token, S=1", 2, 1, 4, 1, 64, 1, 1, 0},
    };
    earn_emu::sm_count() = 64;
    for (Case const& c : cases)
    {
        for (Split split : {Split::kPlanned, Split::kOne, Split::kMany})
        {
            run(c, DType::kFloat32, Algo::kAuto, split, rng);
            run(c, DType::kFloat16, Algo::kCudaCores, split, rng);
            run(c, DType::kFloat16, Algo::kTensorCores, split, rng);
        }
    }
    guards(rng);
    softmax_layout();
    std::printf("%d failed\n", g_failed);
    return g_failed == 0 ? 0 : 1;
}
