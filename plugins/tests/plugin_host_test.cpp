// Host-side test of the TensorRT creator and plugin (no TensorRT library, no GPU): the plugin's C++ is linked
// with a stub of the CUDA launcher and driven through the TensorRT interfaces exactly as the builder and runtime
// drive it. Run by tests/test_plugins.py for every TensorRT header set.
//
//   plugin_host_test                 run the checks; prints PASS/FAIL lines, exit 0 when all pass
//   plugin_host_test --fields-json   print the creator found through getCreators() as JSON
#include <NvInferRuntime.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "../src/trt/compacted_attention_plugin.h"

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators); // the library's entry point

namespace
{

int g_failed = 0;
int g_checks = 0;

void check(bool ok, std::string const& what)
{
    ++g_checks;
    if (!ok)
    {
        ++g_failed;
    }
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
}

bool contains(std::string const& text, char const* needle)
{
    return text.find(needle) != std::string::npos;
}

// --- a small IExprBuilder: constants fold, anything else is a fresh symbol ------------------------------------
class Expr : public IDimensionExpr
{
public:
    class Impl : public apiv::VDimensionExpr
    {
    public:
        Impl(bool constant, int64_t value)
            : mConstant(constant)
            , mValue(value)
        {
        }
        bool isConstant() const override
        {
            return mConstant;
        }
        int64_t getConstantValue() const override
        {
            return mConstant ? mValue : INT64_MIN;
        }
        bool isSizeTensor() const override
        {
            return false;
        }

    private:
        bool mConstant;
        int64_t mValue;
    };

    Expr(bool constant, int64_t value)
        : mOwn(constant, value)
    {
        mImpl = &mOwn;
    }
    ~Expr() noexcept override = default;

private:
    Impl mOwn;
};

class Builder : public IExprBuilder
{
public:
    class Impl : public apiv::VExprBuilder
    {
    public:
        IDimensionExpr const* constant(int64_t value) override
        {
            pool.emplace_back(std::make_unique<Expr>(true, value));
            return pool.back().get();
        }
        IDimensionExpr const* operation(
            DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
        {
            if (a.isConstant() && b.isConstant())
            {
                int64_t const x = a.getConstantValue();
                int64_t const y = b.getConstantValue();
                int64_t v = 0;
                switch (op)
                {
                case DimensionOperation::kSUM: v = x + y; break;
                case DimensionOperation::kPROD: v = x * y; break;
                case DimensionOperation::kMAX: v = x > y ? x : y; break;
                case DimensionOperation::kMIN: v = x < y ? x : y; break;
                case DimensionOperation::kSUB: v = x - y; break;
                default: return symbol();
                }
                return constant(v);
            }
            return symbol();
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return nullptr;
        }
        IDimensionExpr const* symbol()
        {
            pool.emplace_back(std::make_unique<Expr>(false, 0));
            return pool.back().get();
        }
        std::deque<std::unique_ptr<Expr>> pool;
    };

    Builder()
    {
        mImpl = &mOwn;
    }
    ~Builder() noexcept override = default;
    IDimensionExpr const* symbol()
    {
        return mOwn.symbol();
    }

private:
    Impl mOwn;
};

struct Fields
{
    int32_t num_heads = 14;
    int32_t num_kv_heads = 2;
    int32_t head_dim = 64;
    float scale = 0.125f;
    std::vector<PluginField> list;
    PluginFieldCollection fc{};

    PluginFieldCollection const* collection(char const* skip = nullptr)
    {
        list.clear();
        if (!skip || std::strcmp(skip, "num_heads"))
            list.emplace_back("num_heads", &num_heads, PluginFieldType::kINT32, 1);
        if (!skip || std::strcmp(skip, "num_kv_heads"))
            list.emplace_back("num_kv_heads", &num_kv_heads, PluginFieldType::kINT32, 1);
        if (!skip || std::strcmp(skip, "head_dim"))
            list.emplace_back("head_dim", &head_dim, PluginFieldType::kINT32, 1);
        if (!skip || std::strcmp(skip, "scale"))
            list.emplace_back("scale", &scale, PluginFieldType::kFLOAT32, 1);
        fc.nbFields = static_cast<int32_t>(list.size());
        fc.fields = list.data();
        return &fc;
    }
};

IPluginCreatorV3One* find_creator()
{
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    if (n != 1 || creators == nullptr || creators[0] == nullptr)
    {
        return nullptr;
    }
    InterfaceInfo const info = creators[0]->getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return nullptr;
    }
    return static_cast<IPluginCreatorV3One*>(creators[0]);
}

earn::trt::CompactedAttentionPlugin* as_plugin(IPluginV3* p)
{
    return static_cast<earn::trt::CompactedAttentionPlugin*>(p);
}

bool same_config(earn::trt::PluginConfig const& a, earn::trt::PluginConfig const& b)
{
    return a.num_heads == b.num_heads && a.num_kv_heads == b.num_kv_heads && a.head_dim == b.head_dim
        && std::memcmp(&a.scale, &b.scale, sizeof(float)) == 0;
}

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

void test_creator(IPluginCreatorV3One& creator)
{
    check(std::strcmp(creator.getPluginName(), "CompactedAttention") == 0, "creator name is the ONNX op type");
    check(std::strcmp(creator.getPluginVersion(), "1") == 0, "creator version 1");
    check(std::strcmp(creator.getPluginNamespace(), "earn") == 0, "creator namespace earn");
    PluginFieldCollection const* names = creator.getFieldNames();
    check(names != nullptr && names->nbFields == 4, "creator declares four fields");
}

void test_round_trip(IPluginCreatorV3One& creator)
{
    Fields f;
    std::unique_ptr<IPluginV3> built(creator.createPlugin("attn", f.collection(), TensorRTPhase::kBUILD));
    check(built != nullptr, "fields -> plugin (build phase)");
    if (!built)
    {
        return;
    }
    auto* core = static_cast<IPluginV3OneCore*>(built->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = built->getCapabilityInterface(PluginCapabilityType::kBUILD);
    auto* runtime = static_cast<IPluginV3OneRuntime*>(built->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core && build && runtime, "plugin exposes core, build and runtime capabilities");
    check(core && std::strcmp(core->getPluginName(), creator.getPluginName()) == 0
            && std::strcmp(core->getPluginVersion(), creator.getPluginVersion()) == 0
            && std::strcmp(core->getPluginNamespace(), creator.getPluginNamespace()) == 0,
        "plugin name/version/namespace equal the creator's");
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    check(ser != nullptr && ser->nbFields == 4, "getFieldsToSerialize returns four fields");
    PluginFieldCollection const* names = creator.getFieldNames();
    bool same_names = ser && names && ser->nbFields == names->nbFields;
    for (int32_t i = 0; same_names && i < ser->nbFields; ++i)
    {
        same_names = std::strcmp(ser->fields[i].name, names->fields[i].name) == 0
            && ser->fields[i].type == names->fields[i].type;
    }
    check(same_names, "serialised fields are the creator's fields (names and types)");
    std::unique_ptr<IPluginV3> again(creator.createPlugin("attn", ser, TensorRTPhase::kRUNTIME));
    check(again != nullptr && same_config(as_plugin(again.get())->config(), as_plugin(built.get())->config()),
        "plugin -> getFieldsToSerialize -> plugin (runtime phase) gives the same configuration");
    earn::trt::PluginConfig const& c = as_plugin(again.get())->config();
    check(c.num_heads == 14 && c.num_kv_heads == 2 && c.head_dim == 64 && c.scale == 0.125f,
        "round-tripped values equal the fields given");
    std::unique_ptr<IPluginV3> cloned(built->clone());
    check(cloned && same_config(as_plugin(cloned.get())->config(), as_plugin(built.get())->config()),
        "clone keeps the configuration");
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    check(attached && same_config(as_plugin(attached.get())->config(), as_plugin(built.get())->config()),
        "attachToContext returns a configured copy");
}

void test_output_shapes(IPluginCreatorV3One& creator)
{
    Fields f;
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("attn", f.collection(), TensorRTPhase::kBUILD));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    Builder eb;
    IDimensionExpr const* B = eb.symbol();
    IDimensionExpr const* beam = eb.symbol();
    IDimensionExpr const* S = eb.symbol();
    IDimensionExpr const* T = eb.symbol();
    auto c = [&eb](int64_t v) { return eb.constant(v); };
    auto exprs = [](std::initializer_list<IDimensionExpr const*> v) {
        DimsExprs d{};
        d.nbDims = static_cast<int32_t>(v.size());
        int32_t i = 0;
        for (auto* e : v)
        {
            d.d[i++] = e;
        }
        return d;
    };
    DimsExprs in[6] = {exprs({B, beam, c(14), c(64)}), exprs({B, c(2), S, c(64)}), exprs({B, c(2), S, c(64)}),
        exprs({B, S}), exprs({B, beam, c(2), T, c(64)}), exprs({B, beam, c(2), T, c(64)})};
    DimsExprs out[1];
    int32_t rc = build->getOutputShapes(in, 6, nullptr, 0, out, 1, eb);
    check(rc == 0 && out[0].nbDims == 4, "output is rank 4");
    check(rc == 0 && out[0].d[0] == B && out[0].d[1] == beam, "output [B, beam] are the query's dynamic dims");
    check(rc == 0 && out[0].d[2]->isConstant() && out[0].d[2]->getConstantValue() == 14 && out[0].d[3]->isConstant()
            && out[0].d[3]->getConstantValue() == 64,
        "output [num_heads, head_dim] are constants from the fields");

    DimsExprs bad_heads[6] = {exprs({B, beam, c(7), c(64)}), in[1], in[2], in[3], in[4], in[5]};
    rc = build->getOutputShapes(bad_heads, 6, nullptr, 0, out, 1, eb);
    check(rc != 0 && contains(earn::trt::last_error(), "num_heads=14"), "query heads != num_heads is refused");
    DimsExprs bad_kv[6] = {in[0], exprs({B, c(4), S, c(64)}), in[2], in[3], in[4], in[5]};
    rc = build->getOutputShapes(bad_kv, 6, nullptr, 0, out, 1, eb);
    check(rc != 0 && contains(earn::trt::last_error(), "num_kv_heads=2"), "shared_key heads != num_kv_heads is refused");
    DimsExprs bad_rank[6] = {in[0], in[1], in[2], exprs({B, S, c(1)}), in[4], in[5]};
    rc = build->getOutputShapes(bad_rank, 6, nullptr, 0, out, 1, eb);
    check(rc != 0 && contains(earn::trt::last_error(), "key_bias must have rank 2"), "a wrong rank is refused");
    rc = build->getOutputShapes(in, 5, nullptr, 0, out, 1, eb);
    check(rc != 0, "five inputs are refused");

    DataType types_in[6] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kHALF,
        DataType::kHALF};
    DataType type_out = DataType::kFLOAT;
    check(build->getOutputDataTypes(&type_out, 1, types_in, 6) == 0 && type_out == DataType::kHALF,
        "output type is the query's type");
    DataType bf16_in[6] = {DataType::kBF16, DataType::kBF16, DataType::kBF16, DataType::kFLOAT, DataType::kBF16,
        DataType::kBF16};
    check(build->getOutputDataTypes(&type_out, 1, bf16_in, 6) != 0 && contains(earn::trt::last_error(), "query is bf16")
            && contains(earn::trt::last_error(), "fp32 or fp16"),
        "bf16 inputs are refused by name in getOutputDataTypes");
    types_in[3] = DataType::kHALF;
    check(build->getOutputDataTypes(&type_out, 1, types_in, 6) != 0
            && contains(earn::trt::last_error(), "key_bias is fp16 but must be fp32"),
        "an fp16 key_bias is refused by name");
}

// Tactics (CUDA cores / tensor cores, TensorRT times them), the timing-cache ID, and the tactic surviving clone.
void test_tactics(IPluginCreatorV3One& creator)
{
    Fields f;
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("attn", f.collection(), TensorRTPhase::kBUILD));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    auto configure = [&](DataType t) {
        Dims const d[6] = {dims({2, 20, 14, 64}), dims({2, 2, 100, 64}), dims({2, 2, 100, 64}), dims({2, 100}),
            dims({2, 20, 2, 3, 64}), dims({2, 20, 2, 3, 64})};
        DynamicPluginTensorDesc in[6]{};
        DynamicPluginTensorDesc out{};
        for (int32_t i = 0; i < 6; ++i)
        {
            in[i].desc.dims = in[i].min = in[i].opt = in[i].max = d[i];
            in[i].desc.type = i == 3 ? DataType::kFLOAT : t;
        }
        out.desc.dims = d[0];
        out.desc.type = t;
        return build->configurePlugin(in, 6, &out, 1);
    };
    int32_t tactics[2] = {0, 0};
    check(configure(DataType::kHALF) == 0 && build->getNbTactics() == 2 && build->getValidTactics(tactics, 2) == 0
            && tactics[0] == 1 && tactics[1] == 2,
        "fp16: two tactics, 1 (CUDA cores) and 2 (tensor cores)");
    check(configure(DataType::kFLOAT) == 0 && build->getNbTactics() == 1 && build->getValidTactics(tactics, 1) == 0
            && tactics[0] == 1,
        "fp32: one tactic, CUDA cores");
    check(build->getValidTactics(tactics, 0) != 0, "getValidTactics refuses a buffer too small");
    check(runtime->setTactic(2) == 0 && runtime->setTactic(0) == 0 && runtime->setTactic(7) != 0
            && contains(earn::trt::last_error(), "unknown tactic 7"),
        "setTactic takes 0, 1, 2 and refuses others");
    runtime->setTactic(2);
    std::unique_ptr<IPluginV3> cloned(plugin->clone());
    check(cloned && as_plugin(cloned.get())->tactic() == 2, "clone keeps the tactic");
    char const* id = build->getTimingCacheID();
    Fields other;
    other.num_heads = 28;
    std::unique_ptr<IPluginV3> p2(creator.createPlugin("attn", other.collection(), TensorRTPhase::kBUILD));
    auto* build2 = static_cast<IPluginV3OneBuild*>(p2->getCapabilityInterface(PluginCapabilityType::kBUILD));
    check(id != nullptr && contains(id, "h14") && contains(id, "kv2") && contains(id, "d64") && build2 != nullptr
            && std::strcmp(id, build2->getTimingCacheID()) != 0,
        std::string("getTimingCacheID names the fields (timing cache on): ") + (id ? id : "null"));
    PluginFieldCollection const* a = runtime->getFieldsToSerialize();
    PluginFieldCollection const* b = runtime->getFieldsToSerialize();
    check(a == b && a->fields == b->fields && a->nbFields == 4, "getFieldsToSerialize reuses its storage (no allocation)");
}

void test_formats(IPluginCreatorV3One& creator)
{
    Fields f;
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("attn", f.collection(), TensorRTPhase::kBUILD));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto combo = [&](DataType t, DataType bias, int32_t pos_override = -1, DataType other = DataType::kFLOAT,
                     TensorFormat fmt = TensorFormat::kLINEAR) {
        DynamicPluginTensorDesc io[7]{};
        for (int32_t i = 0; i < 7; ++i)
        {
            io[i].desc.type = i == 3 ? bias : t;
            io[i].desc.format = TensorFormat::kLINEAR;
        }
        if (pos_override >= 0)
        {
            io[pos_override].desc.type = other;
            io[pos_override].desc.format = fmt;
        }
        bool all = true;
        for (int32_t pos = 0; pos < 7; ++pos)
        {
            all = all && build->supportsFormatCombination(pos, io, 6, 1);
        }
        return all;
    };
    check(combo(DataType::kFLOAT, DataType::kFLOAT), "fp32 I/O with an fp32 bias is supported");
    check(combo(DataType::kHALF, DataType::kFLOAT), "fp16 I/O with an fp32 bias is supported");
    check(!combo(DataType::kHALF, DataType::kHALF), "an fp16 bias is refused");
    check(!combo(DataType::kHALF, DataType::kFLOAT, 1, DataType::kFLOAT), "fp32 keys with an fp16 query are refused");
    check(!combo(DataType::kHALF, DataType::kFLOAT, 6, DataType::kFLOAT), "an fp32 output for an fp16 query is refused");
    check(!combo(DataType::kINT8, DataType::kFLOAT), "int8 I/O is refused");
    check(!combo(DataType::kBF16, DataType::kFLOAT), "bf16 I/O is refused");
    check(!combo(DataType::kHALF, DataType::kFLOAT, 2, DataType::kHALF, TensorFormat::kCHW2),
        "a non-linear format is refused");
    DynamicPluginTensorDesc io[7]{};
    check(!build->supportsFormatCombination(7, io, 6, 1), "an out-of-range position is refused");
}

void test_wrong_fields(IPluginCreatorV3One& creator)
{
    struct Case
    {
        char const* what;
        char const* expect;
        void (*edit)(Fields&);
        char const* skip;
    };
    Case const cases[] = {
        {"missing scale", "'scale' is missing", [](Fields&) {}, "scale"},
        {"missing num_heads", "'num_heads' is missing", [](Fields&) {}, "num_heads"},
        {"num_heads not a multiple of num_kv_heads", "not a multiple", [](Fields& f) { f.num_kv_heads = 4; }, nullptr},
        {"zero head_dim", "must be positive", [](Fields& f) { f.head_dim = 0; }, nullptr},
        {"head_dim the kernel lacks", "not supported by the CUDA kernel", [](Fields& f) { f.head_dim = 80; }, nullptr},
        {"negative scale", "scale must be a positive", [](Fields& f) { f.scale = -0.125f; }, nullptr},
    };
    for (Case const& k : cases)
    {
        Fields f;
        k.edit(f);
        std::unique_ptr<IPluginV3> p(creator.createPlugin("attn", f.collection(k.skip), TensorRTPhase::kBUILD));
        check(p == nullptr && contains(earn::trt::last_error(), k.expect),
            std::string("refused with a clear message: ") + k.what + " (" + earn::trt::last_error() + ")");
    }
    Fields f;
    PluginFieldCollection const* fc = f.collection();
    std::vector<PluginField> typed(fc->fields, fc->fields + fc->nbFields);
    float as_float = 14.f;
    typed[0] = PluginField("num_heads", &as_float, PluginFieldType::kFLOAT32, 1);
    PluginFieldCollection wrong_type{static_cast<int32_t>(typed.size()), typed.data()};
    std::unique_ptr<IPluginV3> p(creator.createPlugin("attn", &wrong_type, TensorRTPhase::kBUILD));
    check(p == nullptr && contains(earn::trt::last_error(), "must be kINT32"), "a float num_heads is refused");
    int32_t extra = 1;
    typed = std::vector<PluginField>(fc->fields, fc->fields + fc->nbFields);
    typed.emplace_back("window", &extra, PluginFieldType::kINT32, 1);
    PluginFieldCollection unknown{static_cast<int32_t>(typed.size()), typed.data()};
    p.reset(creator.createPlugin("attn", &unknown, TensorRTPhase::kBUILD));
    check(p == nullptr && contains(earn::trt::last_error(), "unknown field 'window'"), "an unknown field is refused");
    check(creator.createPlugin("attn", nullptr, TensorRTPhase::kBUILD) == nullptr, "no field collection is refused");
}

void test_shapes_at_runtime(IPluginCreatorV3One& creator)
{
    Fields f;
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("attn", f.collection(), TensorRTPhase::kBUILD));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    auto descs = [](Dims const (&d)[6], DataType t) {
        std::vector<PluginTensorDesc> v(6);
        for (int32_t i = 0; i < 6; ++i)
        {
            v[i].dims = d[i];
            v[i].type = i == 3 ? DataType::kFLOAT : t;
            v[i].format = TensorFormat::kLINEAR;
        }
        return v;
    };
    Dims const good[6] = {dims({4, 20, 14, 64}), dims({4, 2, 130, 64}), dims({4, 2, 130, 64}), dims({4, 130}),
        dims({4, 20, 2, 3, 64}), dims({4, 20, 2, 3, 64})};
    PluginTensorDesc out{};
    out.dims = dims({4, 20, 14, 64});
    auto in = descs(good, DataType::kHALF);
    check(runtime->onShapeChange(in.data(), 6, &out, 1) == 0, "consistent runtime shapes are accepted");
    Dims const bad_gen[6] = {good[0], good[1], good[2], good[3], dims({4, 20, 3, 3, 64}), dims({4, 20, 3, 3, 64})};
    in = descs(bad_gen, DataType::kHALF);
    check(runtime->onShapeChange(in.data(), 6, &out, 1) != 0 && contains(earn::trt::last_error(), "inconsistent"),
        "gen_key with the wrong KV heads is refused");
    Dims const no_token[6] = {good[0], good[1], good[2], good[3], dims({4, 20, 2, 0, 64}), dims({4, 20, 2, 0, 64})};
    in = descs(no_token, DataType::kHALF);
    check(runtime->onShapeChange(in.data(), 6, &out, 1) != 0 && contains(earn::trt::last_error(), "T >= 1"),
        "gen_key without the current token is refused");
    Dims const bad_bias[6] = {good[0], good[1], good[2], dims({4, 129}), good[4], good[5]};
    in = descs(bad_bias, DataType::kHALF);
    check(runtime->onShapeChange(in.data(), 6, &out, 1) != 0, "key_bias shorter than the shared keys is refused");

    DynamicPluginTensorDesc dyn[6]{};
    DynamicPluginTensorDesc dyn_out{};
    for (int32_t i = 0; i < 6; ++i)
    {
        dyn[i].desc.dims = good[i];
        dyn[i].min = good[i];
        dyn[i].opt = good[i];
        dyn[i].max = good[i];
    }
    dyn[0].desc.dims.d[0] = -1; // dynamic batch at build time
    dyn[0].max.d[0] = 64;
    dyn[0].max.d[1] = 40;
    dyn[1].max.d[2] = 1024;
    check(build->configurePlugin(dyn, 6, &dyn_out, 1) == 0, "configurePlugin accepts dynamic dims");
    size_t const ws = build->getWorkspaceSize(dyn, 6, &dyn_out, 1);
    // splits are planned from bytes: the partials of a split cost <= 1/20 of the K/V it reads, so per (user, KV head)
    // queries x splits <= S * D * elem / (20 * 4 * (D + 2)) = 1024 * 64 * 4 / (80 * 66) = 49 rows of (64 + 2) floats
    // (fp32, the larger; any beam <= 40, any device), not 40 beams x 7 queries x 16 splits
    size_t const expect = size_t{64} * 2 * 49 * 66 * sizeof(float);
    check(ws >= expect && ws < expect + 4096, "workspace covers the split-K partials at the profile's max shapes");
    dyn[0].max.d[1] = 1; // beam 1: a single query per KV head could split, still within the same bound
    check(build->getWorkspaceSize(dyn, 6, &dyn_out, 1) <= ws, "a smaller beam needs no more workspace");
}

} // namespace

int main(int argc, char** argv)
{
    IPluginCreatorV3One* creator = find_creator();
    if (argc > 1 && std::strcmp(argv[1], "--fields-json") == 0)
    {
        if (creator == nullptr)
        {
            std::fprintf(stderr, "getCreators() did not return one IPluginCreatorV3One\n");
            return 2;
        }
        std::printf("%s\n", earn::trt::creator_info_json(*creator).c_str());
        return 0;
    }
    check(creator != nullptr, "getCreators() returns one IPluginCreatorV3One");
    if (creator == nullptr)
    {
        return 1;
    }
    test_creator(*creator);
    test_round_trip(*creator);
    test_output_shapes(*creator);
    test_formats(*creator);
    test_tactics(*creator);
    test_wrong_fields(*creator);
    test_shapes_at_runtime(*creator);
    std::printf("%d checks, %d failed (TensorRT headers %d.%d)\n", g_checks, g_failed, NV_TENSORRT_MAJOR,
        NV_TENSORRT_MINOR);
    return g_failed == 0 ? 0 : 1;
}
