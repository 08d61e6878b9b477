// The CPU kernel compiled with AVX-512 (16-float vectors; chosen at run time when the CPU has AVX-512F).
#define EARN_CPU_ISA avx512
#define EARN_CPU_LANES 16
#include "cpu_kernel.h"
