// The CPU kernel compiled for the compiler's baseline instruction set (any x86-64 / aarch64 CPU).
#define EARN_CPU_ISA generic
#include "cpu_kernel.h"
