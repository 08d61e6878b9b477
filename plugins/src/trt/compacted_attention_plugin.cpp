// TensorRT IPluginV3 of earn::CompactedAttention: creator, plugin, and the library entry points
// (getCreators / setLoggerFinder for IPluginRegistry::loadLibrary and trtexec --dynamicPlugins).
// UNVERIFIED against a real TensorRT (none installable here): compiled against the 10.16 and 11.1 headers with
// -Werror, and the host test (tests/plugin_host_test.cpp) exercises everything but enqueue without TensorRT.
#include "compacted_attention_plugin.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <sstream>

#include "../cuda/compacted_attention_cuda.h"

#if defined(__GNUC__)
#define EARN_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define EARN_PLUGIN_EXPORT extern "C"
#endif

using namespace nvinfer1;

namespace earn
{
namespace trt
{
namespace
{

std::mutex g_mutex;
ILoggerFinder* g_logger_finder = nullptr;
char g_last_error[1024] = {0};

// Reports a failure to TensorRT's logger (else stderr) and keeps it for last_error(). printf-style into fixed
// buffers: the noexcept methods that call it must not allocate (an allocation failure would terminate).
__attribute__((format(printf, 1, 2))) void report(char const* fmt, ...) noexcept
{
    char msg[sizeof g_last_error];
    int const head = std::snprintf(msg, sizeof msg, "earn::CompactedAttention: ");
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(msg + head, sizeof msg - static_cast<size_t>(head), fmt, args);
    va_end(args);
    ILogger* logger = nullptr;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        std::memcpy(g_last_error, msg, sizeof msg);
        if (g_logger_finder != nullptr)
        {
            logger = g_logger_finder->findLogger();
        }
    }
    if (logger != nullptr)
    {
        logger->log(ILogger::Severity::kERROR, msg);
    }
    else
    {
        std::fprintf(stderr, "%s\n", msg);
    }
}

char const* type_name(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kINT64: return "kINT64";
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kFLOAT64: return "kFLOAT64";
    case PluginFieldType::kCHAR: return "kCHAR";
    default: return "other";
    }
}

bool read_int(PluginField const& f, int32_t& out, std::string& error)
{
    if (f.data == nullptr || f.length != 1)
    {
        error = std::string("field '") + f.name + "' must hold one integer (length " + std::to_string(f.length) + ")";
        return false;
    }
    if (f.type == PluginFieldType::kINT32)
    {
        out = *static_cast<int32_t const*>(f.data);
        return true;
    }
    if (f.type == PluginFieldType::kINT64)
    {
        int64_t const v = *static_cast<int64_t const*>(f.data);
        out = static_cast<int32_t>(v);
        return static_cast<int64_t>(out) == v;
    }
    error = std::string("field '") + f.name + "' must be kINT32 (ONNX INT attribute), got " + type_name(f.type);
    return false;
}

// "[a, b, c]" into a fixed buffer (no allocation: used from noexcept methods).
struct DimsText
{
    char text[160];
    explicit DimsText(Dims const& d) noexcept
    {
        size_t n = 0;
        text[n++] = '[';
        for (int32_t i = 0; i < d.nbDims && i < Dims::MAX_DIMS && n + 24 < sizeof text; ++i)
        {
            n += static_cast<size_t>(std::snprintf(text + n, sizeof text - n, "%s%lld", i ? ", " : "",
                static_cast<long long>(d.d[i])));
        }
        std::snprintf(text + n, sizeof text - n, "]");
    }
};

char const* data_type_name(DataType t) noexcept
{
    switch (t)
    {
    case DataType::kFLOAT: return "fp32";
    case DataType::kHALF: return "fp16";
    case DataType::kBF16: return "bf16";
    case DataType::kINT8: return "int8";
    case DataType::kFP8: return "fp8";
    case DataType::kINT32: return "int32";
    case DataType::kINT64: return "int64";
    case DataType::kBOOL: return "bool";
    default: return "another type";
    }
}

char const* const kInputNames[kNumInputs + 1]
    = {"query", "shared_key", "shared_value", "key_bias", "gen_key", "gen_value", "out"};

} // namespace

std::string last_error()
{
    std::lock_guard<std::mutex> lock(g_mutex);
    return std::string(g_last_error);
}

bool parse_fields(PluginFieldCollection const* fc, PluginConfig& out, std::string& error)
{
    PluginConfig c;
    bool seen[4] = {false, false, false, false};
    if (fc == nullptr)
    {
        error = "no fields given; the node needs num_heads, num_kv_heads, head_dim and scale";
        return false;
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
        {
            error = "a field has no name";
            return false;
        }
        std::string const name = f.name;
        if (name == "num_heads" || name == "num_kv_heads" || name == "head_dim")
        {
            int32_t v = 0;
            if (!read_int(f, v, error))
            {
                return false;
            }
            int const k = name == "num_heads" ? 0 : (name == "num_kv_heads" ? 1 : 2);
            (k == 0 ? c.num_heads : (k == 1 ? c.num_kv_heads : c.head_dim)) = v;
            seen[k] = true;
        }
        else if (name == "scale")
        {
            if (f.data == nullptr || f.length != 1
                || (f.type != PluginFieldType::kFLOAT32 && f.type != PluginFieldType::kFLOAT64))
            {
                error = std::string("field 'scale' must hold one kFLOAT32 (ONNX FLOAT attribute), got ")
                    + type_name(f.type) + " x " + std::to_string(f.length);
                return false;
            }
            c.scale = f.type == PluginFieldType::kFLOAT32 ? *static_cast<float const*>(f.data)
                                                          : static_cast<float>(*static_cast<double const*>(f.data));
            seen[3] = true;
        }
        else
        {
            error = "unknown field '" + name + "' (fields: num_heads, num_kv_heads, head_dim, scale)";
            return false;
        }
    }
    char const* names[4] = {"num_heads", "num_kv_heads", "head_dim", "scale"};
    for (int k = 0; k < 4; ++k)
    {
        if (!seen[k])
        {
            error = std::string("field '") + names[k] + "' is missing; re-export the graph with earn-export export "
                "--attention plugin (it writes all four attributes)";
            return false;
        }
    }
    if (c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0)
    {
        error = "num_heads, num_kv_heads and head_dim must be positive, got " + std::to_string(c.num_heads) + ", "
            + std::to_string(c.num_kv_heads) + ", " + std::to_string(c.head_dim);
        return false;
    }
    if (c.num_heads % c.num_kv_heads != 0)
    {
        error = "num_heads " + std::to_string(c.num_heads) + " is not a multiple of num_kv_heads "
            + std::to_string(c.num_kv_heads);
        return false;
    }
    if (!cuda::head_dim_supported(c.head_dim))
    {
        error = "head_dim " + std::to_string(c.head_dim) + " is not supported by the CUDA kernel (32, 64 or 128); "
            "run this model on ONNX Runtime (earn-export export --attention plugin works there for any head_dim) "
            "or export with --attention onnx";
        return false;
    }
    if (!(c.scale > 0.f) || !std::isfinite(c.scale))
    {
        error = "scale must be a positive finite float, got " + std::to_string(c.scale);
        return false;
    }
    out = c;
    return true;
}

// ------------------------------------------------------------------------------------------------ plugin
CompactedAttentionPlugin::CompactedAttentionPlugin(PluginConfig const& config)
    : mConfig(config)
{
    // the creation state that decides the kernels: what TensorRT's timing cache may key on (besides shapes/formats)
    std::snprintf(mTimingCacheId, sizeof mTimingCacheId, "earn::CompactedAttention/v%s/h%d/kv%d/d%d/s%.9g",
        kPluginVersion, static_cast<int>(config.num_heads), static_cast<int>(config.num_kv_heads),
        static_cast<int>(config.head_dim), static_cast<double>(config.scale));
}

IPluginCapability* CompactedAttentionPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* CompactedAttentionPlugin::clone() noexcept
{
    try
    {
        auto* p = new CompactedAttentionPlugin(mConfig);
        p->mType = mType;
        p->mTactic = mTactic;
        return p;
    }
    catch (std::exception const& e)
    {
        report("clone failed: %s", e.what());
        return nullptr;
    }
}

char const* CompactedAttentionPlugin::getPluginName() const noexcept
{
    return kOpName;
}

char const* CompactedAttentionPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* CompactedAttentionPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t CompactedAttentionPlugin::getNbOutputs() const noexcept
{
    return kNumOutputs;
}

int32_t CompactedAttentionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kNumInputs || nbOutputs != kNumOutputs)
    {
        report("expects 6 inputs and 1 output, got %d and %d", nbInputs, nbOutputs);
        return -1;
    }
    DataType const t = inputTypes[kQuery];
    if (t != DataType::kFLOAT && t != DataType::kHALF)
    {
        report("query is %s; the plugin runs fp32 or fp16 (fp32 accumulation): export the graph in fp32 or with "
               "--fp16, and build without bf16/int8/fp8 for this layer", data_type_name(t));
        return -1;
    }
    for (int32_t i = 1; i < kNumInputs; ++i)
    {
        DataType const want = i == kKeyBias ? DataType::kFLOAT : t;
        if (inputTypes[i] != want)
        {
            report("%s is %s but must be %s (key_bias fp32; keys and values in the query's type)", kInputNames[i],
                data_type_name(inputTypes[i]), data_type_name(want));
            return -1;
        }
    }
    outputTypes[0] = t;
    return 0;
}

int32_t CompactedAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kNumInputs || nbOutputs != kNumOutputs)
    {
        report("expects 6 inputs and 1 output, got %d and %d", nbInputs, nbOutputs);
        return -1;
    }
    int32_t const ranks[kNumInputs] = {4, 4, 4, 2, 5, 5};
    for (int32_t i = 0; i < kNumInputs; ++i)
    {
        if (inputs[i].nbDims != ranks[i])
        {
            report("%s must have rank %d, got %d", kInputNames[i], ranks[i], inputs[i].nbDims);
            return -1;
        }
    }
    auto known_mismatch = [](IDimensionExpr const* e, int64_t want) {
        return e->isConstant() && e->getConstantValue() != want;
    };
    if (known_mismatch(inputs[kQuery].d[2], mConfig.num_heads) || known_mismatch(inputs[kQuery].d[3], mConfig.head_dim))
    {
        report("query must be [B, beam, num_heads=%d, head_dim=%d]", mConfig.num_heads, mConfig.head_dim);
        return -1;
    }
    if (known_mismatch(inputs[kSharedKey].d[1], mConfig.num_kv_heads)
        || known_mismatch(inputs[kSharedKey].d[3], mConfig.head_dim))
    {
        report("shared_key must be [B, num_kv_heads=%d, S, head_dim=%d]", mConfig.num_kv_heads, mConfig.head_dim);
        return -1;
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[kQuery].d[0];
    outputs[0].d[1] = inputs[kQuery].d[1];
    outputs[0].d[2] = exprBuilder.constant(mConfig.num_heads);
    outputs[0].d[3] = exprBuilder.constant(mConfig.head_dim);
    return 0;
}

bool CompactedAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNumInputs || nbOutputs != kNumOutputs || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == kKeyBias)
    {
        return d.type == DataType::kFLOAT; // the additive mask stays fp32 in fp16 graphs
    }
    if (pos == kQuery)
    {
        return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    }
    return d.type == inOut[kQuery].desc.type; // keys, values and the output share the query's type
}

bool CompactedAttentionPlugin::checkShapes(Dims const* dims, int32_t nbInputs, char const* what) const
{
    if (nbInputs != kNumInputs)
    {
        report("%s: expects 6 inputs, got %d", what, nbInputs);
        return false;
    }
    Dims const& q = dims[kQuery];
    Dims const& sk = dims[kSharedKey];
    Dims const& sv = dims[kSharedValue];
    Dims const& kb = dims[kKeyBias];
    Dims const& gk = dims[kGenKey];
    Dims const& gv = dims[kGenValue];
    auto same = [](int64_t a, int64_t b) { return a < 0 || b < 0 || a == b; }; // -1: not known yet
    bool ok = q.nbDims == 4 && sk.nbDims == 4 && sv.nbDims == 4 && kb.nbDims == 2 && gk.nbDims == 5 && gv.nbDims == 5;
    ok = ok && same(q.d[2], mConfig.num_heads) && same(q.d[3], mConfig.head_dim);
    ok = ok && same(sk.d[0], q.d[0]) && same(sk.d[1], mConfig.num_kv_heads) && same(sk.d[3], mConfig.head_dim);
    for (int32_t i = 0; ok && i < 4; ++i)
    {
        ok = same(sv.d[i], sk.d[i]);
    }
    ok = ok && same(kb.d[0], q.d[0]) && same(kb.d[1], sk.d[2]);
    ok = ok && same(gk.d[0], q.d[0]) && same(gk.d[1], q.d[1]) && same(gk.d[2], mConfig.num_kv_heads)
        && same(gk.d[4], mConfig.head_dim);
    for (int32_t i = 0; ok && i < 5; ++i)
    {
        ok = same(gv.d[i], gk.d[i]);
    }
    if (!ok)
    {
        report("%s: inconsistent shapes query %s, shared_key %s, shared_value %s, key_bias %s, gen_key %s, "
               "gen_value %s for num_heads=%d, num_kv_heads=%d, head_dim=%d (contract: docs/CONTRACTS.md)",
            what, DimsText(q).text, DimsText(sk).text, DimsText(sv).text, DimsText(kb).text, DimsText(gk).text,
            DimsText(gv).text, mConfig.num_heads, mConfig.num_kv_heads, mConfig.head_dim);
        return false;
    }
    if (gk.d[3] == 0)
    {
        report("%s: gen_key must hold at least the current token (T >= 1)", what);
        return false;
    }
    return true;
}

int32_t CompactedAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbOutputs != kNumOutputs || nbInputs != kNumInputs)
    {
        report("configurePlugin: expects 6 inputs and 1 output, got %d and %d", nbInputs, nbOutputs);
        return -1;
    }
    Dims dims[kNumInputs];
    for (int32_t i = 0; i < kNumInputs; ++i)
    {
        dims[i] = in[i].desc.dims;
    }
    mType = in[kQuery].desc.type; // decides the tactics (tensor cores for fp16 only)
    return checkShapes(dims, nbInputs, "configurePlugin") ? 0 : -1;
}

int32_t CompactedAttentionPlugin::getNbTactics() noexcept
{
    return mType == DataType::kHALF ? 2 : 1;
}

int32_t CompactedAttentionPlugin::getValidTactics(int32_t* tactics, int32_t nbTactics) noexcept
{
    // TensorRT times each and keeps the faster: CUDA cores (fp32 math) or tensor cores (WMMA, fp16 only)
    int32_t const n = getNbTactics();
    if (tactics == nullptr || nbTactics < n)
    {
        report("getValidTactics: room for %d tactics, %d needed", nbTactics, n);
        return -1;
    }
    tactics[0] = static_cast<int32_t>(cuda::Algo::kCudaCores);
    if (n == 2)
    {
        tactics[1] = static_cast<int32_t>(cuda::Algo::kTensorCores);
    }
    return 0;
}

char const* CompactedAttentionPlugin::getTimingCacheID() noexcept
{
    return mTimingCacheId;
}

int32_t CompactedAttentionPlugin::setTactic(int32_t tactic) noexcept
{
    if (tactic != 0 && tactic != static_cast<int32_t>(cuda::Algo::kCudaCores)
        && tactic != static_cast<int32_t>(cuda::Algo::kTensorCores))
    {
        report("setTactic: unknown tactic %d (0 default, 1 CUDA cores, 2 tensor cores)", tactic);
        return -1;
    }
    mTactic = tactic;
    return 0;
}

size_t CompactedAttentionPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const* /*outputs*/,
    int32_t /*nbOutputs*/) const noexcept
{
    if (nbInputs != kNumInputs)
    {
        return 0;
    }
    AttentionShape sh;
    sh.batch = inputs[kQuery].max.d[0];
    sh.beams = inputs[kQuery].max.d[1];
    sh.heads = mConfig.num_heads;
    sh.kv_heads = mConfig.num_kv_heads;
    sh.head_dim = mConfig.head_dim;
    sh.shared_len = inputs[kSharedKey].max.d[2];
    sh.gen_len = inputs[kGenKey].max.d[3];
    // any runtime shape within the profile, any device (0 when no plan of these shapes splits the shared keys)
    return cuda::workspace_bytes(sh, inputs[kQuery].desc.type == DataType::kHALF ? cuda::DType::kFloat16
                                                                                 : cuda::DType::kFloat32);
}

int32_t CompactedAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t /*nbOutputs*/) noexcept
{
    if (nbInputs != kNumInputs)
    {
        report("onShapeChange: expects 6 inputs, got %d", nbInputs);
        return -1;
    }
    Dims dims[kNumInputs];
    for (int32_t i = 0; i < kNumInputs; ++i)
    {
        dims[i] = in[i].dims;
    }
    return checkShapes(dims, nbInputs, "onShapeChange") ? 0 : -1;
}

int32_t CompactedAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    AttentionShape sh;
    sh.batch = inputDesc[kQuery].dims.d[0];
    sh.beams = inputDesc[kQuery].dims.d[1];
    sh.heads = mConfig.num_heads;
    sh.kv_heads = mConfig.num_kv_heads;
    sh.head_dim = mConfig.head_dim;
    sh.shared_len = inputDesc[kSharedKey].dims.d[2];
    sh.gen_len = inputDesc[kGenKey].dims.d[3];
    sh.scale = mConfig.scale;
    cuda::Pointers p{inputs[kQuery], inputs[kSharedKey], inputs[kSharedValue],
        static_cast<float const*>(inputs[kKeyBias]), inputs[kGenKey], inputs[kGenValue], outputs[0]};
    cuda::DType const dtype = inputDesc[kQuery].type == DataType::kHALF ? cuda::DType::kFloat16 : cuda::DType::kFloat32;
    int const misaligned = cuda::misaligned_pointer(p);
    if (misaligned >= 0)
    {
        report("enqueue: %s is not %d-byte aligned (the kernels load 16-byte vectors); pass buffers from TensorRT's "
               "allocator or cudaMalloc", kInputNames[misaligned], misaligned == kKeyBias ? 4 : 16);
        return -1;
    }
    cuda::Algo const algo = mTactic == static_cast<int32_t>(cuda::Algo::kTensorCores) && dtype == cuda::DType::kFloat16
        ? cuda::Algo::kTensorCores
        : (mTactic == static_cast<int32_t>(cuda::Algo::kCudaCores) ? cuda::Algo::kCudaCores : cuda::Algo::kAuto);
    // the workspace TensorRT allocated is getWorkspaceSize at the profile's max shapes >= this shape's bound
    cudaError_t const err
        = cuda::launch_compacted_attention(sh, dtype, p, workspace, cuda::workspace_bytes(sh, dtype), stream, algo);
    if (err != cudaSuccess)
    {
        report("enqueue: CUDA launch failed (cudaError_t %d%s)", static_cast<int>(err),
            err == cudaErrorInvalidConfiguration ? ": the kernel's shared memory exceeds this device's opt-in limit"
                                                 : "");
        return -1;
    }
    return 0;
}

IPluginV3* CompactedAttentionPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* CompactedAttentionPlugin::getFieldsToSerialize() noexcept
{
    // a fixed array: nothing here allocates
    mFields[0] = PluginField("num_heads", &mConfig.num_heads, PluginFieldType::kINT32, 1);
    mFields[1] = PluginField("num_kv_heads", &mConfig.num_kv_heads, PluginFieldType::kINT32, 1);
    mFields[2] = PluginField("head_dim", &mConfig.head_dim, PluginFieldType::kINT32, 1);
    mFields[3] = PluginField("scale", &mConfig.scale, PluginFieldType::kFLOAT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ----------------------------------------------------------------------------------------------- creator
CompactedAttentionCreator::CompactedAttentionCreator()
{
    mFieldNames.emplace_back("num_heads", nullptr, PluginFieldType::kINT32, 1);
    mFieldNames.emplace_back("num_kv_heads", nullptr, PluginFieldType::kINT32, 1);
    mFieldNames.emplace_back("head_dim", nullptr, PluginFieldType::kINT32, 1);
    mFieldNames.emplace_back("scale", nullptr, PluginFieldType::kFLOAT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

IPluginV3* CompactedAttentionCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        PluginConfig config;
        std::string error;
        if (!parse_fields(fc, config, error))
        {
            report("createPlugin: %s", error.c_str());
            return nullptr;
        }
        return new CompactedAttentionPlugin(config);
    }
    catch (std::exception const& e)
    {
        report("createPlugin failed: %s", e.what());
        return nullptr;
    }
}

PluginFieldCollection const* CompactedAttentionCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* CompactedAttentionCreator::getPluginName() const noexcept
{
    return kOpName;
}

char const* CompactedAttentionCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* CompactedAttentionCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

std::string creator_info_json(IPluginCreatorV3One& creator)
{
    std::ostringstream os;
    os << "{\"name\": \"" << creator.getPluginName() << "\", \"version\": \"" << creator.getPluginVersion()
       << "\", \"namespace\": \"" << creator.getPluginNamespace() << "\", \"fields\": [";
    PluginFieldCollection const* fc = creator.getFieldNames();
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        os << (i ? ", " : "") << "{\"name\": \"" << fc->fields[i].name << "\", \"type\": \""
           << type_name(fc->fields[i].type) << "\"}";
    }
    os << "], \"tensorrt_headers\": \"" << NV_TENSORRT_MAJOR << "." << NV_TENSORRT_MINOR << "\"";
#if defined(CUDART_VERSION) && defined(EARN_CUDART_LINKAGE)
    // the CUDA runtime the library was built with and how it is linked (static: no libcudart.so.N needed at load)
    os << ", \"cuda_runtime\": \"" << CUDART_VERSION / 1000 << "." << (CUDART_VERSION % 1000) / 10
       << "\", \"cuda_runtime_linkage\": \"" << EARN_CUDART_LINKAGE << "\"";
#endif
    os << "}";
    return os.str();
}

} // namespace trt
} // namespace earn

// ------------------------------------------------------------------------------------ library entry points
namespace
{
earn::trt::CompactedAttentionCreator g_creator;
IPluginCreatorInterface* g_creators[] = {&g_creator};
} // namespace

EARN_PLUGIN_EXPORT void setLoggerFinder(ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(earn::trt::g_mutex);
    earn::trt::g_logger_finder = finder;
}

EARN_PLUGIN_EXPORT IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = 1;
    return g_creators;
}

// The creator's name, version, namespace and fields as JSON (read by earn-export build and the tests).
EARN_PLUGIN_EXPORT char const* earnPluginInfo()
{
    static std::string const info = earn::trt::creator_info_json(g_creator);
    return info.c_str();
}
