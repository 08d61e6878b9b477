/* libearn C API: top-K recommendation from an earn-export engine directory, for callers that cannot use C++
 * (C, the JNI binding in cpp/java, Python ctypes, Go cgo, Rust FFI, ...). A thin layer over earn::Recommender
 * (earn/recommender.hpp, the primary API): same engine checks, same results, same messages.
 *
 * Conventions
 * - Every function that can fail returns an earn_status (EARN_OK = 0). On failure, earn_last_error_message()
 *   returns the message of that failure (what went wrong and how to fix it), on the calling thread, until the
 *   next status-returning call on that thread; a successful one leaves it "". No C++ exception crosses and
 *   no call aborts the process on bad input: every bad argument, engine directory or item id is a status.
 * - Handles are opaque. Whatever earn_*_create / earn_recommender_load / earn_recommender_recommend hand out
 *   belongs to the caller and is released with its earn_*_free function (NULL is accepted and ignored).
 *   Out-parameters are written only on success.
 * - Strings are NUL-terminated UTF-8. Returned `const char*` point into the handle they came from and live as
 *   long as it does.
 *
 * Thread safety
 * - earn_recommender_recommend(_ids) and the earn_recommender_* getters may be called concurrently from any
 *   number of threads on the same recommender (the ONNX Runtime sessions are shared; each call takes its own
 *   buffers).
 * - earn_recommender_free must not run concurrently with any other call on that recommender.
 * - An earn_options or earn_result is not synchronised: use it from one thread at a time (reading a result
 *   from several threads is fine). Distinct handles are independent.
 * - earn_last_error_message is per thread.
 *
 * ABI: EARN_C_API_VERSION is the version of this header; earn_c_api_version() that of the library loaded at
 * run time. Functions are only ever added within one version; a removal or signature change raises it (and
 * the soname of libearn.so). Check `earn_c_api_version() == EARN_C_API_VERSION` at start-up. Each addition
 * raises EARN_C_API_MINOR_VERSION (earn_c_api_minor_version() at run time): a caller that uses functions of
 * minor m checks `earn_c_api_minor_version() >= m` (minor 1: the original-id functions, marked below).
 *
 * ONNX Runtime is dlopen()ed at the first load, from earn_options_set_ort_library, else $EARN_ORT_LIBRARY,
 * else the library found when libearn was configured, else "libonnxruntime.so.1" on the loader's path. */
#ifndef EARN_C_API_H
#define EARN_C_API_H

#include <stddef.h>
#include <stdint.h>

#include "earn/visibility.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EARN_C_API_VERSION 1
#define EARN_C_API_MINOR_VERSION 1

typedef enum earn_status {
  EARN_OK = 0,
  EARN_ERROR_INVALID_ARGUMENT = 1, /* NULL handle/pointer, top_k/beam/offsets/batch size out of range, ... */
  EARN_ERROR_ENGINE_DIR = 2,       /* missing directory or files, sha256 mismatch, corrupt file, old format */
  EARN_ERROR_UNKNOWN_ITEM = 3,     /* history item ids the catalog does not know (EARN_UNKNOWN_ERROR) */
  EARN_ERROR_RUNTIME_LIBRARY = 4,  /* libonnxruntime cannot be loaded or is too old */
  EARN_ERROR_OUT_OF_MEMORY = 5,
  EARN_ERROR_INTERNAL = 6          /* anything else (e.g. an ONNX Runtime failure while running a graph) */
} earn_status;

typedef enum earn_on_unknown {
  EARN_UNKNOWN_ERROR = 0, /* unknown history item ids fail the call with EARN_ERROR_UNKNOWN_ITEM (naming them) */
  EARN_UNKNOWN_SKIP = 1   /* they are dropped and counted in earn_result_skipped (original ids: also named in
                             earn_result_unknown_id) */
} earn_on_unknown;

typedef struct earn_options earn_options;         /* how to load: providers, ONNX Runtime library, ... */
typedef struct earn_recommender earn_recommender; /* a loaded engine: two ONNX Runtime sessions + the trie */
typedef struct earn_result earn_result; /* the top-K of one earn_recommender_recommend(_ids) call */

/* ------------------------------------------------------------------------------------------ library */
/* The C API version of the loaded library (compare with EARN_C_API_VERSION). Never fails. */
EARN_API uint32_t earn_c_api_version(void);
/* The minor version of the loaded library's C API: functions added within EARN_C_API_VERSION. Never fails. [1] */
EARN_API uint32_t earn_c_api_minor_version(void);
/* The libearn release, e.g. "0.1.0". Never fails. */
EARN_API const char* earn_version_string(void);
/* The message of the last failed earn_* call on this thread ("" if the last call succeeded). Never NULL. */
EARN_API const char* earn_last_error_message(void);
/* A short name of a status ("EARN_ERROR_ENGINE_DIR"). Never NULL. */
EARN_API const char* earn_status_name(earn_status status);

/* ------------------------------------------------------------------------------------------ options */
/* Defaults: providers = GPU ones the ONNX Runtime library has, then CPU; verify = 1 (re-hash every engine file);
 * batch_size = 64 users per graph call; intra_op_threads = 0 (ONNX Runtime's choice). */
EARN_API earn_status earn_options_create(earn_options** out);
EARN_API void earn_options_free(earn_options* options);
/* Execution providers in order of preference (call once per provider), e.g. "CPUExecutionProvider". */
EARN_API earn_status earn_options_add_provider(earn_options* options, const char* provider);
/* A custom-op library (engines exported with --attention plugin need libearn_ort_ops.so). */
EARN_API earn_status earn_options_add_custom_op_library(earn_options* options, const char* path);
/* The libonnxruntime to dlopen (see the top of this file). A process loads one: asking later for another path
 * fails with EARN_ERROR_RUNTIME_LIBRARY. */
EARN_API earn_status earn_options_set_ort_library(earn_options* options, const char* path);
EARN_API earn_status earn_options_set_verify(earn_options* options, int verify);
EARN_API earn_status earn_options_set_batch_size(earn_options* options, int64_t batch_size);
EARN_API earn_status earn_options_set_intra_op_threads(earn_options* options, int32_t threads);

/* ------------------------------------------------------------------------------------------ recommender */
/* Open an engine directory (options may be NULL: the defaults). The options are copied: free them any time. */
EARN_API earn_status earn_recommender_load(const char* engine_dir, const earn_options* options,
                                           earn_recommender** out);
EARN_API void earn_recommender_free(earn_recommender* recommender);

/* Top-`top_k` items for `num_users` histories given as one flat array of item ids (each history oldest
 * first) and `num_users + 1` offsets: user u's history is items[offsets[u] .. offsets[u+1]), offsets[0] = 0,
 * non-decreasing (an empty history is allowed). `items` may be NULL when offsets[num_users] == 0. Needs
 * 1 <= top_k <= beam. Rules as the Python Recommender: histories longer than max_history keep their most recent
 * items (counted in earn_result_truncated); users go through the graphs in batches of the options' batch size. */
EARN_API earn_status earn_recommender_recommend(const earn_recommender* recommender, const int64_t* items,
                                                const int64_t* offsets, int64_t num_users, int64_t top_k,
                                                int64_t beam, earn_on_unknown on_unknown, earn_result** out);

EARN_API earn_status earn_recommender_max_history(const earn_recommender* recommender, int64_t* out);
EARN_API earn_status earn_recommender_id_length(const earn_recommender* recommender, int64_t* out);
EARN_API earn_status earn_recommender_batch_size(const earn_recommender* recommender, int64_t* out);
/* *out = 1 if the catalog has `item`, else 0. */
EARN_API earn_status earn_recommender_is_known(const earn_recommender* recommender, int64_t item, int* out);
/* manifest.json as read (JSON text); valid until the recommender is freed. */
EARN_API earn_status earn_recommender_manifest_json(const earn_recommender* recommender, const char** out);
/* The execution providers the sessions run on, comma-separated, in order; valid until the recommender is freed. */
EARN_API earn_status earn_recommender_providers(const earn_recommender* recommender, const char** out);

/* ------------------------------------------------------------------------------------------ original ids [1] */
/* An engine trained on the user's own log carries an item id map (item_ids.json: the catalog's original item ids,
 * e.g. "sku-528" or "1013", and titles; docs/own-ids.md). These functions speak those ids. Ids are NUL-terminated
 * UTF-8 strings, looked up by their spelling in the map (an int map's ids in decimal, "1013"; surrounding
 * whitespace ignored). On an engine
 * without a map every function below except earn_recommender_has_id_map fails with EARN_ERROR_INVALID_ARGUMENT
 * ("engine DIR has no item id map ..."): use the catalog-index functions above. */

/* *out = 1 if the engine has an item id map, else 0. */
EARN_API earn_status earn_recommender_has_id_map(const earn_recommender* recommender, int* out);
/* *out = the catalog index of original id `id`, or -1 when the catalog has no such item. */
EARN_API earn_status earn_recommender_lookup_id(const earn_recommender* recommender, const char* id, int64_t* out);
/* *out = the original id of catalog index `index` (0 <= index < catalog size); valid until the recommender is
 * freed. */
EARN_API earn_status earn_recommender_original_id(const earn_recommender* recommender, int64_t index,
                                                  const char** out);
/* *out = the title of catalog index `index`, or NULL when the log gave none; valid until the recommender is freed. */
EARN_API earn_status earn_recommender_title(const earn_recommender* recommender, int64_t index, const char** out);

/* earn_recommender_recommend in original ids: `items` is one flat array of offsets[num_users] id strings (user
 * u's history, oldest first, is items[offsets[u] .. offsets[u+1])), rules as earn_recommender_recommend. Unknown
 * ids fail with EARN_ERROR_UNKNOWN_ITEM naming them as given (['sku-nope']), or with EARN_UNKNOWN_SKIP are
 * dropped, counted in earn_result_skipped and named by earn_result_unknown_id. The result has the catalog
 * indices in earn_result_items and the original ids and titles in earn_result_id / earn_result_title. */
EARN_API earn_status earn_recommender_recommend_ids(const earn_recommender* recommender, const char* const* items,
                                                    const int64_t* offsets, int64_t num_users, int64_t top_k,
                                                    int64_t beam, earn_on_unknown on_unknown, earn_result** out);

/* ------------------------------------------------------------------------------------------ result */
/* Arrays of the result, row-major, valid until earn_result_free: items and scores are [users * top_k], best
 * first (item -1 with score -inf where fewer than top_k valid items were found); skipped and truncated are
 * [users]. Scores are sums of token log-probabilities. The getters return 0 / NULL for a NULL result. */
EARN_API int64_t earn_result_users(const earn_result* result);
EARN_API int64_t earn_result_top_k(const earn_result* result);
EARN_API const int64_t* earn_result_items(const earn_result* result);
EARN_API const float* earn_result_scores(const earn_result* result);
EARN_API const int64_t* earn_result_skipped(const earn_result* result);
EARN_API const int64_t* earn_result_truncated(const earn_result* result);
/* Results of earn_recommender_recommend_ids [1]: the original id at position i (0 <= i < users * top_k, as
 * earn_result_items) and its title; NULL where the item is -1, the item has no title, i is out of range, or the
 * result came from earn_recommender_recommend (catalog indices: earn_recommender_original_id translates). */
EARN_API const char* earn_result_id(const earn_result* result, int64_t i);
EARN_API const char* earn_result_title(const earn_result* result, int64_t i);
/* The original ids dropped from user `user`'s history under EARN_UNKNOWN_SKIP, as given: count and the j-th
 * (0 for a result of earn_recommender_recommend or a user out of range; NULL when j is out of range). */
EARN_API int64_t earn_result_unknown_count(const earn_result* result, int64_t user);
EARN_API const char* earn_result_unknown_id(const earn_result* result, int64_t user, int64_t j);
EARN_API void earn_result_free(earn_result* result);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EARN_C_API_H */
