// The CPU kernel compiled with -mavx2 -mfma -mf16c (chosen at run time when the CPU has them).
#define EARN_CPU_ISA avx2
#include "cpu_kernel.h"
