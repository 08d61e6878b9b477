// ONNX Runtime, loaded at run time: the C++ API is compiled with ORT_API_MANUAL_INIT and pointed at the
// OrtApi of the libonnxruntime that load_onnxruntime() dlopen()s, so the library libearn runs with is always
// the one its caller chose (the Python package passes the one inside the installed onnxruntime wheel).
#pragma once

#include <onnxruntime_cxx_api.h>

#include <string>

namespace earn {

/// The process-wide Ort::Env (created on first use, after load_onnxruntime).
Ort::Env& ort_env();

}  // namespace earn
