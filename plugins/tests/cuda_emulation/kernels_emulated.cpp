// The CUDA kernels and launcher, compiled as C++ against the emulation (the stand-in headers in this folder come
// first on the include path).
#include "../../src/cuda/compacted_attention.cu"
