// The C API (include/earn/c_api.h) over earn::Recommender. Every entry point is noexcept and runs its body
// through guarded(), which turns each C++ exception into a status and the thread's last error message, so no
// exception crosses into C, Java or Python callers.
#include "earn/c_api.h"

#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "earn/id_map.hpp"
#include "earn/recommender.hpp"

#ifndef EARN_LIBRARY_VERSION
#define EARN_LIBRARY_VERSION "unknown"
#endif

struct earn_options {
  earn::Options options;
};

struct earn_recommender {
  std::shared_ptr<earn::Recommender> rec;
  std::string manifest_json;
  std::string providers;
};

struct earn_result {
  earn::Result result;
  // earn_recommender_recommend_ids only (empty otherwise): original ids ("" = none), titles, dropped ids per user
  std::vector<std::string> ids;
  std::vector<std::optional<std::string>> titles;
  std::vector<std::vector<std::string>> unknown;
};

namespace {

thread_local std::string t_last_error;

earn_status fail(earn_status status, const std::string& message) noexcept {
  try {
    t_last_error = message;
  } catch (...) {  // no memory for the message: the status still says what happened
  }
  return status;
}

template <typename F>
earn_status guarded(F&& body) noexcept {
  t_last_error.clear();
  try {
    body();
    return EARN_OK;
  } catch (const earn::UnknownItemError& e) {
    return fail(EARN_ERROR_UNKNOWN_ITEM, e.what());
  } catch (const earn::UnknownIdError& e) {
    return fail(EARN_ERROR_UNKNOWN_ITEM, e.what());
  } catch (const earn::IdMapError& e) {  // a corrupt, partial or missing item_ids.json of the engine
    return fail(EARN_ERROR_ENGINE_DIR, e.what());
  } catch (const earn::EngineDirError& e) {
    return fail(EARN_ERROR_ENGINE_DIR, e.what());
  } catch (const earn::InvalidArgument& e) {
    return fail(EARN_ERROR_INVALID_ARGUMENT, e.what());
  } catch (const earn::RuntimeLibraryError& e) {
    return fail(EARN_ERROR_RUNTIME_LIBRARY, e.what());
  } catch (const std::bad_alloc&) {
    return fail(EARN_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return fail(EARN_ERROR_INTERNAL, e.what());
  } catch (...) {
    return fail(EARN_ERROR_INTERNAL, "unknown C++ exception inside libearn");
  }
}

void require(bool ok, const char* what) {
  if (!ok) throw earn::InvalidArgument(what);
}

// The checks of a flat history layout shared by the index and the id entry points (c_api.h).
void check_layout(const char* fn, const void* items, const int64_t* offsets, int64_t num_users,
                  earn_on_unknown on_unknown) {
  const std::string f = fn;
  if (num_users < 0) throw earn::InvalidArgument("num_users must be >= 0, got " + std::to_string(num_users));
  if (!offsets) throw earn::InvalidArgument(f + ": offsets is NULL; pass num_users + 1 offsets");
  if (offsets[0] != 0) throw earn::InvalidArgument("offsets[0] must be 0, got " + std::to_string(offsets[0]));
  for (int64_t u = 0; u < num_users; ++u)
    if (offsets[u + 1] < offsets[u])
      throw earn::InvalidArgument("offsets must be non-decreasing; offsets[" + std::to_string(u + 1) + "] = " +
                                  std::to_string(offsets[u + 1]) + " < offsets[" + std::to_string(u) +
                                  "] = " + std::to_string(offsets[u]));
  if (!items && offsets[num_users] != 0)
    throw earn::InvalidArgument(f + ": items is NULL but the offsets describe a non-empty history");
  if (on_unknown != EARN_UNKNOWN_ERROR && on_unknown != EARN_UNKNOWN_SKIP)
    throw earn::InvalidArgument("on_unknown must be EARN_UNKNOWN_ERROR (0) or EARN_UNKNOWN_SKIP (1), got " +
                                std::to_string(static_cast<int>(on_unknown)));
}

earn::OnUnknown policy(earn_on_unknown on_unknown) {
  return on_unknown == EARN_UNKNOWN_SKIP ? earn::OnUnknown::kSkip : earn::OnUnknown::kError;
}

// The engine's id map, or InvalidArgument naming the engine (Recommender::id_map).
const earn::IdMap& id_map_of(const earn_recommender* recommender, const char* fn) {
  if (!recommender) throw earn::InvalidArgument(std::string(fn) + ": recommender is NULL");
  return recommender->rec->id_map();
}

void check_index(const earn::IdMap& map, int64_t index) {
  if (index < 0 || index >= map.size())
    throw earn::InvalidArgument("catalog index " + std::to_string(index) + " out of range: the catalog has items 0.." +
                                std::to_string(map.size() - 1));
}

}  // namespace

extern "C" {

uint32_t earn_c_api_version(void) { return EARN_C_API_VERSION; }

uint32_t earn_c_api_minor_version(void) { return EARN_C_API_MINOR_VERSION; }

const char* earn_version_string(void) { return EARN_LIBRARY_VERSION; }

const char* earn_last_error_message(void) { return t_last_error.c_str(); }

const char* earn_status_name(earn_status status) {
  switch (status) {
    case EARN_OK: return "EARN_OK";
    case EARN_ERROR_INVALID_ARGUMENT: return "EARN_ERROR_INVALID_ARGUMENT";
    case EARN_ERROR_ENGINE_DIR: return "EARN_ERROR_ENGINE_DIR";
    case EARN_ERROR_UNKNOWN_ITEM: return "EARN_ERROR_UNKNOWN_ITEM";
    case EARN_ERROR_RUNTIME_LIBRARY: return "EARN_ERROR_RUNTIME_LIBRARY";
    case EARN_ERROR_OUT_OF_MEMORY: return "EARN_ERROR_OUT_OF_MEMORY";
    case EARN_ERROR_INTERNAL: return "EARN_ERROR_INTERNAL";
  }
  return "EARN_STATUS_UNKNOWN";
}

// ------------------------------------------------------------------------------------------------ options
earn_status earn_options_create(earn_options** out) {
  return guarded([&] {
    require(out != nullptr, "earn_options_create: out is NULL; pass the address of an earn_options* variable");
    *out = new earn_options();
  });
}

void earn_options_free(earn_options* options) { delete options; }

earn_status earn_options_add_provider(earn_options* options, const char* provider) {
  return guarded([&] {
    require(options && provider, "earn_options_add_provider: options and provider must not be NULL");
    options->options.providers.emplace_back(provider);
  });
}

earn_status earn_options_add_custom_op_library(earn_options* options, const char* path) {
  return guarded([&] {
    require(options && path, "earn_options_add_custom_op_library: options and path must not be NULL");
    options->options.custom_op_libraries.emplace_back(path);
  });
}

earn_status earn_options_set_ort_library(earn_options* options, const char* path) {
  return guarded([&] {
    require(options && path, "earn_options_set_ort_library: options and path must not be NULL");
    options->options.ort_library = path;
  });
}

earn_status earn_options_set_verify(earn_options* options, int verify) {
  return guarded([&] {
    require(options, "earn_options_set_verify: options is NULL");
    options->options.verify = verify != 0;
  });
}

earn_status earn_options_set_batch_size(earn_options* options, int64_t batch_size) {
  return guarded([&] {
    require(options, "earn_options_set_batch_size: options is NULL");
    if (batch_size < 1)
      throw earn::InvalidArgument("batch_size must be >= 1, got " + std::to_string(batch_size));
    options->options.batch_size = batch_size;
  });
}

earn_status earn_options_set_intra_op_threads(earn_options* options, int32_t threads) {
  return guarded([&] {
    require(options, "earn_options_set_intra_op_threads: options is NULL");
    if (threads < 0)
      throw earn::InvalidArgument("intra_op_threads must be >= 0 (0 = ONNX Runtime's default), got " +
                                  std::to_string(threads));
    options->options.intra_op_threads = threads;
  });
}

// ------------------------------------------------------------------------------------------------ recommender
earn_status earn_recommender_load(const char* engine_dir, const earn_options* options, earn_recommender** out) {
  return guarded([&] {
    require(engine_dir && out, "earn_recommender_load: engine_dir and out must not be NULL");
    auto handle = std::make_unique<earn_recommender>();
    handle->rec = earn::Recommender::load(engine_dir, options ? options->options : earn::Options{});
    handle->manifest_json = handle->rec->manifest_json();
    for (const auto& p : handle->rec->providers()) handle->providers += (handle->providers.empty() ? "" : ",") + p;
    *out = handle.release();
  });
}

void earn_recommender_free(earn_recommender* recommender) { delete recommender; }

earn_status earn_recommender_recommend(const earn_recommender* recommender, const int64_t* items,
                                       const int64_t* offsets, int64_t num_users, int64_t top_k, int64_t beam,
                                       earn_on_unknown on_unknown, earn_result** out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_recommend: recommender and out must not be NULL");
    check_layout("earn_recommender_recommend", items, offsets, num_users, on_unknown);
    std::vector<std::vector<int64_t>> histories(static_cast<size_t>(num_users));
    for (int64_t u = 0; u < num_users; ++u) histories[u].assign(items + offsets[u], items + offsets[u + 1]);
    auto result = std::make_unique<earn_result>();
    result->result = recommender->rec->recommend(histories, top_k, beam, policy(on_unknown));
    *out = result.release();
  });
}

// ------------------------------------------------------------------------------------------------ original ids
earn_status earn_recommender_has_id_map(const earn_recommender* recommender, int* out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_has_id_map: recommender and out must not be NULL");
    *out = recommender->rec->has_id_map() ? 1 : 0;
  });
}

earn_status earn_recommender_lookup_id(const earn_recommender* recommender, const char* id, int64_t* out) {
  return guarded([&] {
    require(id && out, "earn_recommender_lookup_id: id and out must not be NULL");
    const auto n = id_map_of(recommender, "earn_recommender_lookup_id").lookup(id);
    *out = n ? *n : -1;
  });
}

earn_status earn_recommender_original_id(const earn_recommender* recommender, int64_t index, const char** out) {
  return guarded([&] {
    require(out != nullptr, "earn_recommender_original_id: out must not be NULL");
    const earn::IdMap& map = id_map_of(recommender, "earn_recommender_original_id");
    check_index(map, index);
    *out = map.original(index).c_str();
  });
}

earn_status earn_recommender_title(const earn_recommender* recommender, int64_t index, const char** out) {
  return guarded([&] {
    require(out != nullptr, "earn_recommender_title: out must not be NULL");
    const earn::IdMap& map = id_map_of(recommender, "earn_recommender_title");
    check_index(map, index);
    const std::string* t = map.title(index);
    *out = t ? t->c_str() : nullptr;
  });
}

earn_status earn_recommender_recommend_ids(const earn_recommender* recommender, const char* const* items,
                                           const int64_t* offsets, int64_t num_users, int64_t top_k, int64_t beam,
                                           earn_on_unknown on_unknown, earn_result** out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_recommend_ids: recommender and out must not be NULL");
    check_layout("earn_recommender_recommend_ids", items, offsets, num_users, on_unknown);
    std::vector<std::vector<std::string>> histories(static_cast<size_t>(num_users));
    for (int64_t u = 0; u < num_users; ++u)
      for (int64_t i = offsets[u]; i < offsets[u + 1]; ++i) {
        if (!items[i])
          throw earn::InvalidArgument("earn_recommender_recommend_ids: items[" + std::to_string(i) + "] (user " +
                                      std::to_string(u) + ") is NULL; pass an id string");
        histories[u].emplace_back(items[i]);
      }
    earn::IdResult r = recommender->rec->recommend_ids(histories, top_k, beam, policy(on_unknown));
    auto result = std::make_unique<earn_result>();
    result->result.users = r.users;
    result->result.top_k = r.top_k;
    result->result.items = std::move(r.index);
    result->result.scores = std::move(r.scores);
    result->result.skipped = std::move(r.skipped);
    result->result.truncated = std::move(r.truncated);
    result->ids = std::move(r.items);
    result->titles = std::move(r.titles);
    result->unknown.resize(static_cast<size_t>(num_users));
    for (auto& [u, ids] : r.unknown) result->unknown[static_cast<size_t>(u)] = std::move(ids);
    *out = result.release();
  });
}

earn_status earn_recommender_max_history(const earn_recommender* recommender, int64_t* out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_max_history: recommender and out must not be NULL");
    *out = recommender->rec->max_history();
  });
}

earn_status earn_recommender_id_length(const earn_recommender* recommender, int64_t* out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_id_length: recommender and out must not be NULL");
    *out = recommender->rec->id_length();
  });
}

earn_status earn_recommender_batch_size(const earn_recommender* recommender, int64_t* out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_batch_size: recommender and out must not be NULL");
    *out = recommender->rec->batch_size();
  });
}

earn_status earn_recommender_is_known(const earn_recommender* recommender, int64_t item, int* out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_is_known: recommender and out must not be NULL");
    *out = recommender->rec->is_known(item) ? 1 : 0;
  });
}

earn_status earn_recommender_manifest_json(const earn_recommender* recommender, const char** out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_manifest_json: recommender and out must not be NULL");
    *out = recommender->manifest_json.c_str();
  });
}

earn_status earn_recommender_providers(const earn_recommender* recommender, const char** out) {
  return guarded([&] {
    require(recommender && out, "earn_recommender_providers: recommender and out must not be NULL");
    *out = recommender->providers.c_str();
  });
}

// ------------------------------------------------------------------------------------------------ result
int64_t earn_result_users(const earn_result* result) { return result ? result->result.users : 0; }
int64_t earn_result_top_k(const earn_result* result) { return result ? result->result.top_k : 0; }
const int64_t* earn_result_items(const earn_result* result) { return result ? result->result.items.data() : nullptr; }
const float* earn_result_scores(const earn_result* result) { return result ? result->result.scores.data() : nullptr; }
const int64_t* earn_result_skipped(const earn_result* result) {
  return result ? result->result.skipped.data() : nullptr;
}
const int64_t* earn_result_truncated(const earn_result* result) {
  return result ? result->result.truncated.data() : nullptr;
}
const char* earn_result_id(const earn_result* result, int64_t i) {
  if (!result || i < 0 || i >= static_cast<int64_t>(result->ids.size())) return nullptr;
  const std::string& id = result->ids[static_cast<size_t>(i)];
  return id.empty() ? nullptr : id.c_str();
}
const char* earn_result_title(const earn_result* result, int64_t i) {
  if (!result || i < 0 || i >= static_cast<int64_t>(result->titles.size())) return nullptr;
  const auto& t = result->titles[static_cast<size_t>(i)];
  return t ? t->c_str() : nullptr;
}
int64_t earn_result_unknown_count(const earn_result* result, int64_t user) {
  if (!result || user < 0 || user >= static_cast<int64_t>(result->unknown.size())) return 0;
  return static_cast<int64_t>(result->unknown[static_cast<size_t>(user)].size());
}
const char* earn_result_unknown_id(const earn_result* result, int64_t user, int64_t j) {
  if (j < 0 || j >= earn_result_unknown_count(result, user)) return nullptr;
  return result->unknown[static_cast<size_t>(user)][static_cast<size_t>(j)].c_str();
}
void earn_result_free(earn_result* result) { delete result; }

}  // extern "C"
