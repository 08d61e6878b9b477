#include "ort_runtime.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "earn/recommender.hpp"

namespace earn {
namespace {

std::mutex g_mutex;
void* g_handle = nullptr;
std::string g_path;

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) ? std::string(buf) : p;
}

// libonnxruntime.so.* inside `dir` (a wheel's onnxruntime/capi holds libonnxruntime.so.1.X.Y, no symlinks)
std::vector<std::string> libraries_in(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* ent = ::readdir(d)) {
      const std::string name = ent->d_name;
      if (name.rfind("libonnxruntime.so", 0) == 0) out.push_back(dir + "/" + name);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  std::reverse(out.begin(), out.end());  // the most specific version first
  return out;
}

std::vector<std::string> default_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("EARN_ORT_LIBRARY")) {
    if (*env) c.emplace_back(env);
  }
#ifdef EARN_PYTHON_SITE
  // an executable installed into a virtual environment's bin/: the onnxruntime wheel of that environment
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    std::string dir(exe, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    for (const auto& lib : libraries_in(dir + "/../" EARN_PYTHON_SITE "/onnxruntime/capi")) c.push_back(lib);
  }
#endif
#ifdef EARN_DEFAULT_ORT_LIBRARY
  c.emplace_back(EARN_DEFAULT_ORT_LIBRARY);  // the library found when libearn was configured
#endif
  c.emplace_back("libonnxruntime.so.1");
  c.emplace_back("libonnxruntime.so");
  return c;
}

}  // namespace

std::string load_onnxruntime(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_handle) {
    if (!path.empty() && real_path(path) != real_path(g_path))
      throw RuntimeLibraryError("ONNX Runtime is already loaded from " + g_path + "; cannot switch to " + path +
                                " in the same process");
    return g_path;
  }
  const std::vector<std::string> candidates = path.empty() ? default_candidates() : std::vector<std::string>{path};
  std::string errors;
  for (const auto& c : candidates) {
    void* h = ::dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = ::dlerror();
      errors += "\n  " + c + ": " + (e ? e : "not loadable");
      continue;
    }
    using GetApiBase = const OrtApiBase* (*)();
    auto get = reinterpret_cast<GetApiBase>(::dlsym(h, "OrtGetApiBase"));
    if (!get) {
      errors += "\n  " + c + ": no OrtGetApiBase symbol (not an ONNX Runtime library)";
      ::dlclose(h);
      continue;
    }
    const OrtApiBase* base = get();
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (!api) {
      errors += "\n  " + c + ": ONNX Runtime " + base->GetVersionString() + " is older than the headers libearn "
                "was built with (C API version " + std::to_string(ORT_API_VERSION) + "); install a newer onnxruntime";
      ::dlclose(h);
      continue;
    }
    Ort::InitApi(api);
    g_handle = h;
    g_path = c;
    return g_path;
  }
  throw RuntimeLibraryError("cannot load the ONNX Runtime library; tried:" + errors +
                            "\ninstall the onnxruntime wheel (`pip install onnxruntime`) or give the library's path "
                            "(EARN_ORT_LIBRARY=/path/libonnxruntime.so.1.x, earn-recommend --ort-library)");
}

std::vector<std::string> available_providers() {
  load_onnxruntime();
  return Ort::GetAvailableProviders();
}

Ort::Env& ort_env() {
  load_onnxruntime();
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "earn");
  return env;
}

}  // namespace earn
