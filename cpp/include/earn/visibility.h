/* EARN_API: marks what libearn.so exports (the C API's earn_* functions and the C++ API of namespace earn).
 * libearn is compiled with hidden visibility and a linker version script (src/libearn.map), so everything else
 * (ONNX Runtime wrappers, nlohmann-json, standard-library instantiations) stays private to the library and
 * cannot clash with a consumer's own copies. */
#ifndef EARN_VISIBILITY_H
#define EARN_VISIBILITY_H

#if defined(__GNUC__) || defined(__clang__)
#define EARN_API __attribute__((visibility("default")))
#define EARN_HIDDEN __attribute__((visibility("hidden")))
#else
#define EARN_API
#define EARN_HIDDEN
#endif

#endif /* EARN_VISIBILITY_H */
