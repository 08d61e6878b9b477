// A small CPU emulation of the CUDA execution model, enough to run plugins/src/cuda/compacted_attention.cu
// unchanged on a machine without a GPU: every block runs its threads as cooperative fibers (ucontext) on one OS
// thread, __syncthreads / __syncwarp are barriers, warp shuffles go through per-warp slots between two barriers,
// and nvcuda::wmma fragments hold whole 16x16 tiles (the API leaves their lane layout unspecified, so any layout
// is a valid one). What this checks: indexing, tiling, masking, split-K partition and merge, and that every
// cross-thread read is preceded by the barrier it needs (a missing __syncwarp shows up as wrong numbers because
// fibers run in order). What it does not check: the GPU memory model, occupancy, or speed. Build it with
// -fno-strict-aliasing: like most CUDA code, the kernels load and store 16-byte vectors (uint4) over half/float
// arrays, an idiom CUDA compilers support and GCC's type-based alias analysis does not.
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "earn/compacted_attention.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__

struct dim3
{
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1)
        : x(x_)
        , y(y_)
        , z(z_)
    {
    }
};

struct uint3
{
    unsigned x, y, z;
};

struct float2
{
    float x, y;
};

struct alignas(16) float4
{
    float x, y, z, w;
};

struct alignas(16) uint4
{
    unsigned x, y, z, w;
};

struct alignas(8) uint2
{
    unsigned x, y;
};

inline float2 make_float2(float x, float y)
{
    return float2{x, y};
}

inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w)
{
    return uint4{x, y, z, w};
}

// --- runtime API ------------------------------------------------------------------------------------------------
typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
constexpr cudaError_t cudaErrorInvalidConfiguration = 9;
constexpr cudaError_t cudaErrorInvalidDevice = 101;
constexpr cudaError_t cudaErrorNotSupported = 801;
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
enum cudaDeviceAttr
{
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
enum cudaFuncAttribute
{
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8
};

namespace earn_emu
{
inline int& sm_count()
{
    static int n = 8; // the emulated device's multiprocessors (the tests vary it to vary the split count)
    return n;
}

inline int& smem_optin()
{
    static int n = 232448; // the emulated device's per-block shared-memory opt-in limit (H100/H200; A10: 101376)
    return n;
}

// What the kernels asked of the runtime (tests check that the launcher caches per device).
struct Counters
{
    int attribute_reads = 0;
    int func_attribute_sets = 0;
    int launches = 0;
};

inline Counters& counters()
{
    static Counters c;
    return c;
}

inline cudaError_t& sticky_error()
{
    static cudaError_t e = 0; // an error "someone else" left: cudaPeekAtLastError must report, not clear it
    return e;
}
} // namespace earn_emu

inline cudaError_t cudaGetDevice(int* d)
{
    *d = 0;
    return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int)
{
    ++earn_emu::counters().attribute_reads;
    *v = attr == cudaDevAttrMaxSharedMemoryPerBlockOptin ? earn_emu::smem_optin() : earn_emu::sm_count();
    return cudaSuccess;
}

template <typename F>
inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int bytes)
{
    ++earn_emu::counters().func_attribute_sets;
    return bytes <= earn_emu::smem_optin() ? cudaSuccess : cudaErrorInvalidValue;
}

inline cudaError_t cudaGetLastError()
{
    cudaError_t const e = earn_emu::sticky_error();
    earn_emu::sticky_error() = cudaSuccess;
    return e;
}

inline cudaError_t cudaPeekAtLastError()
{
    return earn_emu::sticky_error();
}

inline char const* cudaGetErrorString(cudaError_t e)
{
    return e == cudaSuccess ? "no error" : "error";
}

// --- half -------------------------------------------------------------------------------------------------------
struct __half
{
    uint16_t bits;
};

struct __half2
{
    __half x, y;
};

inline float __half2float(__half h)
{
    return earn::half_bits_to_float(h.bits);
}

inline __half __float2half_rn(float f)
{
    return __half{earn::float_to_half_bits(f)};
}

inline float2 __half22float2(__half2 h)
{
    return float2{__half2float(h.x), __half2float(h.y)};
}

inline __half __ushort_as_half(unsigned short bits)
{
    return __half{bits};
}

inline unsigned short __half_as_ushort(__half h)
{
    return h.bits;
}

// --- execution model --------------------------------------------------------------------------------------------
namespace earn_emu
{

// Fibers start through makecontext/swapcontext and then switch with _setjmp/_longjmp (no signal-mask system call
// per switch: the kernels synchronise hundreds of thousands of times per block).
struct Fiber
{
    ucontext_t ctx{};
    jmp_buf jb{};
    std::unique_ptr<char[]> stack;
    uint3 tid{};
    bool started = false;
    bool done = false;
};

struct Barrier
{
    int arrived = 0;
    unsigned generation = 0;
};

struct BlockState
{
    uint3 block_idx{};
    dim3 block_dim;
    std::vector<Fiber> fibers;
    int current = 0;
    ucontext_t scheduler{};
    jmp_buf scheduler_jb{};
    std::function<void()> body;
    Barrier block_barrier;
    std::vector<Barrier> warp_barriers;
    std::vector<float> shuffle_slots; // [warp][32]
    std::vector<unsigned char> smem;
};

inline BlockState*& state()
{
    static BlockState* s = nullptr;
    return s;
}

inline void yield()
{
    BlockState* s = state();
    if (!_setjmp(s->fibers[s->current].jb))
    {
        _longjmp(s->scheduler_jb, 1);
    }
}

inline void wait(Barrier& b, int count)
{
    unsigned const gen = b.generation;
    if (++b.arrived == count)
    {
        b.arrived = 0;
        ++b.generation;
        return;
    }
    while (b.generation == gen)
    {
        yield();
    }
}

inline void fiber_main()
{
    BlockState* s = state();
    s->body();
    s->fibers[s->current].done = true;
    _longjmp(s->scheduler_jb, 1);
}

inline void* dynamic_smem()
{
    return state()->smem.data();
}

inline uint3 thread_idx()
{
    return state()->fibers[state()->current].tid;
}

inline uint3 block_idx()
{
    return state()->block_idx;
}

inline int warp_of_current()
{
    return static_cast<int>(thread_idx().x / 32);
}

// Runs the block's fibers round-robin until all are done (its own function: only `t` and `finished` live across
// the _setjmp, and they are volatile).
__attribute__((noinline)) inline void schedule(BlockState& s)
{
    unsigned const n = static_cast<unsigned>(s.fibers.size());
    volatile unsigned finished = 0;
    while (finished < n)
    {
        finished = 0;
        for (volatile unsigned t = 0; t < n; t = t + 1)
        {
            if (s.fibers[t].done)
            {
                finished = finished + 1;
                continue;
            }
            s.current = static_cast<int>(t);
            if (!_setjmp(s.scheduler_jb))
            {
                if (!s.fibers[t].started)
                {
                    s.fibers[t].started = true;
                    swapcontext(&s.scheduler, &s.fibers[t].ctx);
                }
                else
                {
                    _longjmp(s.fibers[t].jb, 1);
                }
            }
        }
    }
}

// getcontext returns twice: kept out of launch() so that launch's loop variables are not at risk.
__attribute__((noinline)) inline void init_fiber(Fiber& f, uint3 tid)
{
    constexpr size_t kStack = 256 * 1024;
    f.tid = tid;
    f.stack.reset(new char[kStack]);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
}

// Runs `body` as grid x block threads; blocks one after the other, threads of a block as fibers.
inline void launch(dim3 grid, dim3 block, size_t smem_bytes, std::function<void()> body)
{
    ++counters().launches;
    if (smem_bytes > static_cast<size_t>(smem_optin()))
    {
        sticky_error() = 9; // cudaErrorInvalidConfiguration: more dynamic shared memory than the device has
        return;
    }
    unsigned const n = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
    {
        for (unsigned by = 0; by < grid.y; ++by)
        {
            for (unsigned bx = 0; bx < grid.x; ++bx)
            {
                BlockState s;
                s.block_idx = uint3{bx, by, bz};
                s.block_dim = block;
                s.body = body;
                s.warp_barriers.resize((n + 31) / 32);
                s.shuffle_slots.assign(s.warp_barriers.size() * 32, 0.f);
                // garbage, not zeros: the kernels must initialise what they read
                s.smem.assign(smem_bytes + 128, 0xA5);
                s.fibers.resize(n);
                state() = &s;
                for (unsigned t = 0; t < n; ++t)
                {
                    init_fiber(s.fibers[t], uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)});
                }
                schedule(s);
                state() = nullptr;
            }
        }
    }
}

} // namespace earn_emu

#define threadIdx (earn_emu::thread_idx())
#define blockIdx (earn_emu::block_idx())

inline void __syncthreads()
{
    earn_emu::BlockState* s = earn_emu::state();
    earn_emu::wait(s->block_barrier, static_cast<int>(s->fibers.size()));
}

inline void __syncwarp(unsigned = 0xffffffffu)
{
    earn_emu::wait(earn_emu::state()->warp_barriers[earn_emu::warp_of_current()], 32);
}

inline float earn_emu_shuffle(float v, int src_lane)
{
    earn_emu::BlockState* s = earn_emu::state();
    int const w = earn_emu::warp_of_current();
    int const lane = static_cast<int>(earn_emu::thread_idx().x % 32);
    s->shuffle_slots[w * 32 + lane] = v;
    __syncwarp();
    float const out = s->shuffle_slots[w * 32 + (src_lane & 31)];
    __syncwarp(); // nobody overwrites a slot before every lane has read
    return out;
}

// Fibers of a block run one at a time: a read-modify-write is atomic.
inline int atomicMin(int* address, int v)
{
    int const old = *address;
    *address = v < old ? v : old;
    return old;
}

inline float __shfl_xor_sync(unsigned, float v, int lane_mask)
{
    return earn_emu_shuffle(v, static_cast<int>(earn_emu::thread_idx().x % 32) ^ lane_mask);
}

inline float __shfl_sync(unsigned, float v, int src_lane)
{
    return earn_emu_shuffle(v, src_lane);
}

#define EARN_DYNAMIC_SMEM(type, name)                                                                                 \
    type* name = reinterpret_cast<type*>(                                                                              \
        (reinterpret_cast<uintptr_t>(earn_emu::dynamic_smem()) + 127) / 128 * 128)
#define EARN_LAUNCH(kernel, grid, block, smem, stream, ...)                                                           \
    ((void) (stream), earn_emu::launch(dim3(grid), dim3(block), (smem), [&] { kernel(__VA_ARGS__); }))

// --- nvcuda::wmma (16x16x16) ------------------------------------------------------------------------------------
namespace nvcuda
{
namespace wmma
{
struct matrix_a
{
};
struct matrix_b
{
};
struct accumulator
{
};
struct row_major
{
};
struct col_major
{
};
enum layout_t
{
    mem_row_major,
    mem_col_major
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment
{
    static_assert(M == 16 && N == 16 && K == 16, "the emulation knows 16x16x16 only");
    float v[16 * 16]; // element (r, c) at v[r * 16 + c]
};

template <typename Use, typename T, typename Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, float x)
{
    for (float& e : f.v)
    {
        e = x;
    }
}

inline void check_aligned(void const* p, unsigned ldm, unsigned multiple)
{
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % multiple != 0)
    {
        std::abort(); // the real WMMA needs 256-bit aligned pointers and ldm a multiple of 16 bytes
    }
}

template <typename Use, typename Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, __half, Layout>& f, __half const* p, unsigned ldm)
{
    check_aligned(p, ldm, 8);
    for (int r = 0; r < 16; ++r)
    {
        for (int c = 0; c < 16; ++c)
        {
            __half const h = std::is_same<Layout, row_major>::value ? p[r * ldm + c] : p[c * ldm + r];
            f.v[r * 16 + c] = __half2float(h);
        }
    }
}

inline void load_matrix_sync(
    fragment<accumulator, 16, 16, 16, float>& f, float const* p, unsigned ldm, layout_t layout)
{
    check_aligned(p, ldm, 4);
    for (int r = 0; r < 16; ++r)
    {
        for (int c = 0; c < 16; ++c)
        {
            f.v[r * 16 + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
        }
    }
}

template <typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, fragment<matrix_a, 16, 16, 16, __half, LA> const& a,
    fragment<matrix_b, 16, 16, 16, __half, LB> const& b, fragment<accumulator, 16, 16, 16, float> const& c)
{
    float out[16 * 16];
    for (int r = 0; r < 16; ++r)
    {
        for (int n = 0; n < 16; ++n)
        {
            float acc = c.v[r * 16 + n];
            for (int k = 0; k < 16; ++k)
            {
                acc += a.v[r * 16 + k] * b.v[k * 16 + n];
            }
            out[r * 16 + n] = acc;
        }
    }
    std::memcpy(d.v, out, sizeof out);
}

// A warp-collective store: each lane writes its own rows (lane r writes row r), as the lanes of a real warp write
// their parts; other lanes see them only after a __syncwarp, as on the GPU.
inline void store_matrix_sync(
    float* p, fragment<accumulator, 16, 16, 16, float> const& f, unsigned ldm, layout_t layout)
{
    check_aligned(p, ldm, 4);
    int const lane = static_cast<int>(earn_emu::thread_idx().x % 32);
    if (lane >= 16)
    {
        return;
    }
    for (int c = 0; c < 16; ++c)
    {
        (layout == mem_row_major ? p[lane * ldm + c] : p[c * ldm + lane]) = f.v[lane * 16 + c];
    }
}

} // namespace wmma
} // namespace nvcuda
