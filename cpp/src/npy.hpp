// A strict reader of the int64 .npy arrays an engine holds (trie.*.npy, prompt_items.*.npy).
//
// Why not a general .npy library: the engine format pins one dtype ('<i8'), C order and version 1-3 headers;
// anything else is refused with the file name and the fix (re-export), rather than converted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace earn {

template <typename T>
struct NpyArray {
  std::vector<int64_t> shape;  // empty = 0-d
  std::vector<T> data;
  int64_t size() const { return static_cast<int64_t>(data.size()); }
};
using Int64Array = NpyArray<int64_t>;

/// Read `path` ('<i8'); throws EngineDirError naming the file and what is wrong with it.
Int64Array read_npy_int64(const std::string& path);
/// Read `path` ('<f4'); used by the C++ tests' recorded searches.
NpyArray<float> read_npy_float32(const std::string& path);

}  // namespace earn
