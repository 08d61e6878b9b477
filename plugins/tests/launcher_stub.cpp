// Stands in for the CUDA launcher in the host test: the test never enqueues (no GPU), so reaching this is a bug.
#include "../src/cuda/compacted_attention_cuda.h"

namespace earn
{
namespace cuda
{
cudaError_t launch_compacted_attention(AttentionShape const&, DType, Pointers const&, void*, size_t, cudaStream_t, Algo)
{
    return cudaErrorNotSupported;
}
} // namespace cuda
} // namespace earn
