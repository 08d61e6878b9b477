#include "npy.hpp"

#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "earn/recommender.hpp"

namespace earn {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw EngineDirError(path + ": " + what + "; re-export the engine (`earn-export export CKPT --out DIR`)");
}

template <typename T>
NpyArray<T> read_npy(const std::string& path, const std::string& descr, const char* dtype_name) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open the array file");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, "not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(magic[6]);
  uint32_t header_len = 0;
  if (major == 1) {
    unsigned char b[2];
    if (!f.read(reinterpret_cast<char*>(b), 2)) fail(path, "truncated .npy header");
    header_len = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (!f.read(reinterpret_cast<char*>(b), 4)) fail(path, "truncated .npy header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    fail(path, ".npy version " + std::to_string(major) + " is not supported (1, 2 or 3)");
  }
  std::string header(header_len, '\0');
  if (!f.read(&header[0], header_len)) fail(path, "truncated .npy header");

  static const std::regex descr_re(R"('descr'\s*:\s*'([^']*)')");
  static const std::regex fortran_re(R"('fortran_order'\s*:\s*(True|False))");
  static const std::regex shape_re(R"('shape'\s*:\s*\(([^)]*)\))");
  std::smatch m;
  if (!std::regex_search(header, m, descr_re)) fail(path, "no dtype in the .npy header");
  if (m[1] != descr) fail(path, "dtype " + m[1].str() + " is not " + dtype_name + " ('" + descr + "')");
  if (!std::regex_search(header, m, fortran_re)) fail(path, "no fortran_order in the .npy header");
  if (m[1] != "False") fail(path, "array is in Fortran order (C order expected)");
  if (!std::regex_search(header, m, shape_re)) fail(path, "no shape in the .npy header");

  NpyArray<T> out;
  std::stringstream dims(m[1].str());
  std::string dim;
  int64_t count = 1;
  while (std::getline(dims, dim, ',')) {
    const auto b = dim.find_first_not_of(" \t");
    if (b == std::string::npos) continue;  // trailing comma of a 1-tuple
    const auto e = dim.find_last_not_of(" \t");
    const std::string d = dim.substr(b, e - b + 1);
    if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) fail(path, "bad shape in the .npy header");
    const int64_t n = std::stoll(d);
    out.shape.push_back(n);
    count *= n;
  }
  out.data.resize(static_cast<size_t>(count));
  if (count && !f.read(reinterpret_cast<char*>(out.data.data()), count * static_cast<std::streamsize>(sizeof(T))))
    fail(path, "truncated data (" + std::to_string(count) + " values expected)");
  f.peek();
  if (!f.eof()) fail(path, "extra bytes after the array data");
  return out;
}

}  // namespace

Int64Array read_npy_int64(const std::string& path) { return read_npy<int64_t>(path, "<i8", "int64 little-endian"); }

NpyArray<float> read_npy_float32(const std::string& path) {
  return read_npy<float>(path, "<f4", "float32 little-endian");
}

}  // namespace earn
