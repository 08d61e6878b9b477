// TensorRT IPluginV3 of earn::CompactedAttention (ONNX node earn::CompactedAttention -> this plugin).
//
// The ONNX parser finds the creator by (op type "CompactedAttention", attribute plugin_version "1", attribute
// plugin_namespace "earn") and passes the node's attributes named by getFieldNames() as fields:
// num_heads, num_kv_heads, head_dim (kINT32) and scale (kFLOAT32). getFieldsToSerialize() returns the same four
// fields: they are the whole serialised state, and createPlugin(kRUNTIME) rebuilds the plugin from them.
#pragma once

#include <NvInferRuntime.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "earn/compacted_attention.h"

namespace earn
{
namespace trt
{

struct PluginConfig
{
    int32_t num_heads = 0;
    int32_t num_kv_heads = 0;
    int32_t head_dim = 0;
    float scale = 0.f;
};

// Parses and validates a field collection; on failure returns false and sets `error` (names the field and the fix).
bool parse_fields(nvinfer1::PluginFieldCollection const* fc, PluginConfig& out, std::string& error);

// Message of the last failure reported by a plugin or creator of this library (also sent to TensorRT's logger).
std::string last_error();

class CompactedAttentionPlugin : public nvinfer1::IPluginV3,
                                 public nvinfer1::IPluginV3OneCore,
                                 public nvinfer1::IPluginV3OneBuild,
                                 public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit CompactedAttentionPlugin(PluginConfig const& config);
    ~CompactedAttentionPlugin() override = default;

    PluginConfig const& config() const
    {
        return mConfig;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    // tactics: 1 = CUDA cores, 2 = tensor cores (fp16 only), as earn::cuda::Algo; TensorRT times them
    int32_t getNbTactics() noexcept override;
    int32_t getValidTactics(int32_t* tactics, int32_t nbTactics) noexcept override;
    int32_t setTactic(int32_t tactic) noexcept override;
    // the fields (version, heads, head_dim, scale): TensorRT's timing cache may reuse this plugin's timings
    char const* getTimingCacheID() noexcept override;

    int32_t tactic() const
    {
        return mTactic;
    }

private:
    // Checks the six input shapes against the fields; `what` says where the shapes come from.
    bool checkShapes(nvinfer1::Dims const* dims, int32_t nbInputs, char const* what) const;

    PluginConfig mConfig;
    nvinfer1::DataType mType = nvinfer1::DataType::kFLOAT; // the query's type (configurePlugin)
    int32_t mTactic = 0;                                    // 0: default (fp16 on tensor cores where they fit)
    char mTimingCacheId[160] = {0};
    std::array<nvinfer1::PluginField, 4> mFields{};
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class CompactedAttentionCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    CompactedAttentionCreator();
    ~CompactedAttentionCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// JSON description of the creator (name, version, namespace, fields with types): printed by the host test and
// returned by the library's earnPluginInfo() entry point, so tools compare it with the exported ONNX.
std::string creator_info_json(nvinfer1::IPluginCreatorV3One& creator);

} // namespace trt
} // namespace earn
