// The TensorRT plugin's enqueue, end to end on the CPU: the plugin (src/trt) is linked with the CUDA kernels compiled
// against the emulation, and driven as TensorRT drives it -- creator fields -> plugin, configurePlugin and
// getWorkspaceSize at the profile's max shapes, onShapeChange + enqueue at smaller runtime shapes -- with fp32 and
// fp16 I/O, then again through a plugin rebuilt from getFieldsToSerialize (what a deserialised plan runs).
// Checks that the plugin maps TensorRT's tensor descriptions onto the kernels' contract correctly (shapes, dtype,
// workspace), against the double-precision reference. No TensorRT library, no GPU.
#include <NvInferRuntime.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../../src/trt/compacted_attention_plugin.h"
#include "reference.h"

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace
{

int g_failed = 0;

Dims dims(std::initializer_list<int64_t> v)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    int32_t i = 0;
    for (int64_t x : v)
    {
        d.d[i++] = x;
    }
    return d;
}

struct Shape
{
    int64_t b, beams, s, t;
};

void run(IPluginV3* plugin, char const* what, earn::trt::PluginConfig const& cfg, Shape rt, bool f16, std::mt19937& rng,
    int32_t tactic = 0)
{
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    int64_t const H = cfg.num_heads, K = cfg.num_kv_heads, D = cfg.head_dim;
    DataType const t = f16 ? DataType::kHALF : DataType::kFLOAT;

    // build time: the profile's max shapes (64 users, 40 beams, 1024 prompt rows, 3 generated tokens)
    Dims const max_dims[6] = {dims({64, 40, H, D}), dims({64, K, 1024, D}), dims({64, K, 1024, D}), dims({64, 1024}),
        dims({64, 40, K, 3, D}), dims({64, 40, K, 3, D})};
    DynamicPluginTensorDesc in_dyn[6]{};
    DynamicPluginTensorDesc out_dyn{};
    for (int32_t i = 0; i < 6; ++i)
    {
        in_dyn[i].desc.dims = max_dims[i];
        in_dyn[i].desc.type = i == earn::kKeyBias ? DataType::kFLOAT : t;
        in_dyn[i].desc.format = TensorFormat::kLINEAR;
        in_dyn[i].min = in_dyn[i].opt = in_dyn[i].max = max_dims[i];
    }
    out_dyn.desc.dims = max_dims[0];
    out_dyn.desc.type = t;
    bool ok = build->configurePlugin(in_dyn, 6, &out_dyn, 1) == 0;
    size_t const ws_size = build->getWorkspaceSize(in_dyn, 6, &out_dyn, 1);

    // run time: smaller shapes
    earn::AttentionShape sh;
    sh.batch = rt.b;
    sh.beams = rt.beams;
    sh.heads = H;
    sh.kv_heads = K;
    sh.head_dim = D;
    sh.shared_len = rt.s;
    sh.gen_len = rt.t;
    sh.scale = cfg.scale;
    earn_test::Inputs in = earn_test::random_inputs(sh, f16, true, rng);
    Dims const rt_dims[6] = {dims({rt.b, rt.beams, H, D}), dims({rt.b, K, rt.s, D}), dims({rt.b, K, rt.s, D}),
        dims({rt.b, rt.s}), dims({rt.b, rt.beams, K, rt.t, D}), dims({rt.b, rt.beams, K, rt.t, D})};
    PluginTensorDesc in_desc[6]{};
    PluginTensorDesc out_desc{};
    for (int32_t i = 0; i < 6; ++i)
    {
        in_desc[i] = in_dyn[i].desc;
        in_desc[i].dims = rt_dims[i];
    }
    out_desc.dims = rt_dims[0];
    out_desc.type = t;
    ok = ok && runtime->onShapeChange(in_desc, 6, &out_desc, 1) == 0;
    ok = ok && runtime->setTactic(tactic) == 0; // what TensorRT chose when it timed the tactics (0: default)

    std::vector<uint16_t> qh, skh, svh, gkh, gvh, outh;
    std::vector<float> out(in.q.size(), NAN);
    void const* inputs[6];
    void* outputs[1];
    if (f16)
    {
        qh = earn_test::to_half(in.q);
        skh = earn_test::to_half(in.sk);
        svh = earn_test::to_half(in.sv);
        gkh = earn_test::to_half(in.gk);
        gvh = earn_test::to_half(in.gv);
        outh.assign(in.q.size(), 0x7e00);
        void const* p[6] = {qh.data(), skh.data(), svh.data(), in.bias.data(), gkh.data(), gvh.data()};
        std::copy(p, p + 6, inputs);
        outputs[0] = outh.data();
    }
    else
    {
        void const* p[6] = {in.q.data(), in.sk.data(), in.sv.data(), in.bias.data(), in.gk.data(), in.gv.data()};
        std::copy(p, p + 6, inputs);
        outputs[0] = out.data();
    }
    std::vector<unsigned char> workspace(ws_size);
    ok = ok && runtime->enqueue(in_desc, &out_desc, inputs, outputs, workspace.data(), nullptr) == 0;
    if (f16)
    {
        for (size_t i = 0; i < out.size(); ++i)
        {
            out[i] = earn::half_bits_to_float(outh[i]);
        }
    }
    double err_max = 0, ref_max = 0;
    earn_test::compare(out, earn_test::reference(sh, in.q, in.sk, in.sv, in.bias, in.gk, in.gv), err_max, ref_max);
    double const tol = f16 ? 5e-3 * (ref_max > 1 ? ref_max : 1) : 2e-5;
    ok = ok && err_max <= tol;
    g_failed += ok ? 0 : 1;
    std::printf("%s enqueue %-28s %s tactic %d B=%lld beam=%lld S=%lld T=%lld: max|err| %.2e (tol %.1e), workspace %zu "
                "bytes\n",
        ok ? "PASS" : "FAIL", what, f16 ? "fp16" : "fp32", tactic, static_cast<long long>(rt.b),
        static_cast<long long>(rt.beams), static_cast<long long>(rt.s), static_cast<long long>(rt.t), err_max, tol,
        ws_size);
}

} // namespace

int main()
{
    int32_t n = 0;
    auto* creator = static_cast<IPluginCreatorV3One*>(getCreators(n)[0]);
    std::mt19937 rng(7);
    struct Model
    {
        char const* name;
        int32_t heads, kv, dim;
    };
    for (Model const& m : {Model{"qwen2.5-0.5b heads 14:2 d64", 14, 2, 64}, Model{"mha heads 4:4 d128", 4, 4, 128}})
    {
        int32_t heads = m.heads, kv = m.kv, dim = m.dim;
        float scale = 1.f / std::sqrt(static_cast<float>(dim));
        std::vector<PluginField> f{PluginField("num_heads", &heads, PluginFieldType::kINT32, 1),
            PluginField("num_kv_heads", &kv, PluginFieldType::kINT32, 1),
            PluginField("head_dim", &dim, PluginFieldType::kINT32, 1),
            PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1)};
        PluginFieldCollection fc{static_cast<int32_t>(f.size()), f.data()};
        std::unique_ptr<IPluginV3> built(creator->createPlugin("attn", &fc, TensorRTPhase::kBUILD));
        earn::trt::PluginConfig const cfg = static_cast<earn::trt::CompactedAttentionPlugin*>(built.get())->config();
        auto* rt = static_cast<IPluginV3OneRuntime*>(built->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        std::unique_ptr<IPluginV3> restored(
            creator->createPlugin("attn", rt->getFieldsToSerialize(), TensorRTPhase::kRUNTIME));
        for (bool f16 : {false, true})
        {
            run(built.get(), m.name, cfg, Shape{3, 20, 130, 3}, f16, rng);
            run(restored.get(), m.name, cfg, Shape{2, 5, 33, 1}, f16, rng);
            run(restored.get(), m.name, cfg, Shape{2, 3, 700, 2}, f16, rng, 1); // CUDA cores, long prompt: splits
            if (f16)
            {
                run(restored.get(), m.name, cfg, Shape{2, 3, 700, 2}, f16, rng, 2); // tensor cores
            }
        }
    }
    std::printf("%d failed\n", g_failed);
    return g_failed == 0 ? 0 : 1;
}
