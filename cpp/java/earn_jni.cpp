// libearn_jni: the JNI side of the Java binding (package earn). It calls only the C API (earn/c_api.h); a
// failed call becomes an earn.EarnException with the C status and message.
#include <jni.h>

#include <cstring>
#include <string>
#include <vector>

#include "earn/c_api.h"

namespace {

void throw_earn(JNIEnv* env, int code, const char* message) {
  jclass cls = env->FindClass("earn/EarnException");
  if (!cls) return;  // NoClassDefFoundError is pending
  jmethodID ctor = env->GetMethodID(cls, "<init>", "(ILjava/lang/String;)V");
  jstring msg = env->NewStringUTF(message);
  if (!ctor || !msg) return;
  auto* exc = static_cast<jthrowable>(env->NewObject(cls, ctor, static_cast<jint>(code), msg));
  if (exc) env->Throw(exc);
}

// true when the call succeeded; otherwise the Java exception is pending
bool check(JNIEnv* env, earn_status status) {
  if (status == EARN_OK) return true;
  throw_earn(env, status, earn_last_error_message());
  return false;
}

bool utf(JNIEnv* env, jstring s, std::string* out) {
  if (!s) {
    out->clear();
    return true;
  }
  const char* chars = env->GetStringUTFChars(s, nullptr);
  if (!chars) return false;  // OutOfMemoryError pending
  *out = chars;
  env->ReleaseStringUTFChars(s, chars);
  return true;
}

bool utf_array(JNIEnv* env, jobjectArray arr, std::vector<std::string>* out) {
  const jsize n = arr ? env->GetArrayLength(arr) : 0;
  for (jsize i = 0; i < n; ++i) {
    auto s = static_cast<jstring>(env->GetObjectArrayElement(arr, i));
    std::string v;
    if (!utf(env, s, &v)) return false;
    out->push_back(v);
    env->DeleteLocalRef(s);
  }
  return true;
}

struct Options {
  earn_options* p = nullptr;
  ~Options() { earn_options_free(p); }
};

struct ResultHandle {
  earn_result* p = nullptr;
  ~ResultHandle() { earn_result_free(p); }
};

// Strings cross as UTF-8 byte arrays (Java encodes/decodes them): JNI's own string functions use "modified
// UTF-8", which differs from UTF-8 for NUL and characters outside the BMP. NULL -> null.
jbyteArray bytes(JNIEnv* env, const char* text) {
  if (!text) return nullptr;
  const auto n = static_cast<jsize>(std::strlen(text));
  jbyteArray out = env->NewByteArray(n);
  if (out && n) env->SetByteArrayRegion(out, 0, n, reinterpret_cast<const jbyte*>(text));
  return out;
}

// A byte[][] of `n` strings from get(i); nullptr with a pending exception on failure.
template <typename Get>
jobjectArray byte_arrays(JNIEnv* env, jsize n, Get get) {
  jclass cls = env->FindClass("[B");
  if (!cls) return nullptr;
  jobjectArray out = env->NewObjectArray(n, cls, nullptr);
  for (jsize i = 0; out && i < n; ++i) {
    const char* text = get(i);
    if (!text) continue;
    jbyteArray b = bytes(env, text);
    if (!b) return nullptr;
    env->SetObjectArrayElement(out, i, b);
    env->DeleteLocalRef(b);
  }
  return out;
}

}  // namespace

extern "C" {

JNIEXPORT jlong JNICALL Java_earn_Recommender_nativeLoad(JNIEnv* env, jclass, jstring engine_dir,
                                                         jobjectArray providers, jobjectArray custom_op_libraries,
                                                         jstring ort_library, jboolean verify, jlong batch_size,
                                                         jint intra_op_threads) {
  std::string dir, ort;
  std::vector<std::string> provs, libs;
  if (!utf(env, engine_dir, &dir) || !utf(env, ort_library, &ort) || !utf_array(env, providers, &provs) ||
      !utf_array(env, custom_op_libraries, &libs))
    return 0;
  Options o;
  if (!check(env, earn_options_create(&o.p))) return 0;
  for (const auto& p : provs)
    if (!check(env, earn_options_add_provider(o.p, p.c_str()))) return 0;
  for (const auto& l : libs)
    if (!check(env, earn_options_add_custom_op_library(o.p, l.c_str()))) return 0;
  if (!ort.empty() && !check(env, earn_options_set_ort_library(o.p, ort.c_str()))) return 0;
  if (!check(env, earn_options_set_verify(o.p, verify ? 1 : 0)) ||
      !check(env, earn_options_set_batch_size(o.p, batch_size)) ||
      !check(env, earn_options_set_intra_op_threads(o.p, intra_op_threads)))
    return 0;
  earn_recommender* rec = nullptr;
  if (!check(env, earn_recommender_load(dir.c_str(), o.p, &rec))) return 0;
  return reinterpret_cast<jlong>(rec);
}

JNIEXPORT jobject JNICALL Java_earn_Recommender_nativeRecommend(JNIEnv* env, jclass, jlong ptr, jlongArray items,
                                                                jlongArray offsets, jint top_k, jint beam,
                                                                jboolean skip_unknown) {
  const jsize n_items = env->GetArrayLength(items), n_off = env->GetArrayLength(offsets);
  std::vector<int64_t> flat(static_cast<size_t>(n_items)), off(static_cast<size_t>(n_off));
  if (n_items) env->GetLongArrayRegion(items, 0, n_items, reinterpret_cast<jlong*>(flat.data()));
  if (n_off) env->GetLongArrayRegion(offsets, 0, n_off, reinterpret_cast<jlong*>(off.data()));
  earn_result* res = nullptr;
  if (!check(env, earn_recommender_recommend(reinterpret_cast<const earn_recommender*>(ptr), flat.data(),
                                             off.data(), n_off - 1, top_k, beam,
                                             skip_unknown ? EARN_UNKNOWN_SKIP : EARN_UNKNOWN_ERROR, &res)))
    return nullptr;
  const jsize users = static_cast<jsize>(earn_result_users(res)), k = static_cast<jsize>(earn_result_top_k(res));
  jlongArray j_items = env->NewLongArray(users * k);
  jfloatArray j_scores = env->NewFloatArray(users * k);
  jlongArray j_skipped = env->NewLongArray(users);
  jlongArray j_truncated = env->NewLongArray(users);
  jobject out = nullptr;
  if (j_items && j_scores && j_skipped && j_truncated) {
    env->SetLongArrayRegion(j_items, 0, users * k, reinterpret_cast<const jlong*>(earn_result_items(res)));
    env->SetFloatArrayRegion(j_scores, 0, users * k, earn_result_scores(res));
    env->SetLongArrayRegion(j_skipped, 0, users, reinterpret_cast<const jlong*>(earn_result_skipped(res)));
    env->SetLongArrayRegion(j_truncated, 0, users, reinterpret_cast<const jlong*>(earn_result_truncated(res)));
    jclass cls = env->FindClass("earn/Result");
    jmethodID ctor = cls ? env->GetMethodID(cls, "<init>", "(II[J[F[J[J)V") : nullptr;
    if (ctor) out = env->NewObject(cls, ctor, users, k, j_items, j_scores, j_skipped, j_truncated);
  }
  earn_result_free(res);
  return out;
}

JNIEXPORT jobject JNICALL Java_earn_Recommender_nativeRecommendIds(JNIEnv* env, jclass, jlong ptr,
                                                                   jobjectArray items, jlongArray offsets,
                                                                   jint top_k, jint beam, jboolean skip_unknown) {
  const jsize n_items = env->GetArrayLength(items), n_off = env->GetArrayLength(offsets);
  std::vector<std::string> ids(static_cast<size_t>(n_items));
  for (jsize i = 0; i < n_items; ++i) {
    auto b = static_cast<jbyteArray>(env->GetObjectArrayElement(items, i));
    const jsize n = b ? env->GetArrayLength(b) : 0;
    ids[i].resize(static_cast<size_t>(n));
    if (n) env->GetByteArrayRegion(b, 0, n, reinterpret_cast<jbyte*>(&ids[i][0]));
    if (b) env->DeleteLocalRef(b);
  }
  std::vector<const char*> ptrs(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) ptrs[i] = ids[i].c_str();
  std::vector<int64_t> off(static_cast<size_t>(n_off));
  if (n_off) env->GetLongArrayRegion(offsets, 0, n_off, reinterpret_cast<jlong*>(off.data()));
  ResultHandle res;
  if (!check(env, earn_recommender_recommend_ids(reinterpret_cast<const earn_recommender*>(ptr), ptrs.data(),
                                                 off.data(), n_off - 1, top_k, beam,
                                                 skip_unknown ? EARN_UNKNOWN_SKIP : EARN_UNKNOWN_ERROR, &res.p)))
    return nullptr;
  const jsize users = static_cast<jsize>(earn_result_users(res.p)), k = static_cast<jsize>(earn_result_top_k(res.p));
  std::vector<jlong> unknown_off(static_cast<size_t>(users) + 1, 0);
  for (jsize u = 0; u < users; ++u) unknown_off[u + 1] = unknown_off[u] + earn_result_unknown_count(res.p, u);
  std::vector<const char*> unknown;
  for (jsize u = 0; u < users; ++u)
    for (int64_t j = 0; j < earn_result_unknown_count(res.p, u); ++j)
      unknown.push_back(earn_result_unknown_id(res.p, u, j));
  jobjectArray j_ids = byte_arrays(env, users * k, [&](jsize i) { return earn_result_id(res.p, i); });
  if (!j_ids) return nullptr;
  jobjectArray j_titles = byte_arrays(env, users * k, [&](jsize i) { return earn_result_title(res.p, i); });
  if (!j_titles) return nullptr;
  jobjectArray j_unknown = byte_arrays(env, static_cast<jsize>(unknown.size()), [&](jsize i) { return unknown[i]; });
  if (!j_unknown) return nullptr;
  jlongArray j_index = env->NewLongArray(users * k);
  jfloatArray j_scores = env->NewFloatArray(users * k);
  jlongArray j_skipped = env->NewLongArray(users);
  jlongArray j_truncated = env->NewLongArray(users);
  jlongArray j_unknown_off = env->NewLongArray(users + 1);
  if (!j_index || !j_scores || !j_skipped || !j_truncated || !j_unknown_off) return nullptr;
  env->SetLongArrayRegion(j_index, 0, users * k, reinterpret_cast<const jlong*>(earn_result_items(res.p)));
  env->SetFloatArrayRegion(j_scores, 0, users * k, earn_result_scores(res.p));
  env->SetLongArrayRegion(j_skipped, 0, users, reinterpret_cast<const jlong*>(earn_result_skipped(res.p)));
  env->SetLongArrayRegion(j_truncated, 0, users, reinterpret_cast<const jlong*>(earn_result_truncated(res.p)));
  env->SetLongArrayRegion(j_unknown_off, 0, users + 1, unknown_off.data());
  jclass cls = env->FindClass("earn/IdResult");
  jmethodID ctor = cls ? env->GetMethodID(cls, "<init>", "(II[[B[[B[J[F[J[J[[B[J)V") : nullptr;
  if (!ctor) return nullptr;
  return env->NewObject(cls, ctor, users, k, j_ids, j_titles, j_index, j_scores, j_skipped, j_truncated, j_unknown,
                        j_unknown_off);
}

JNIEXPORT jboolean JNICALL Java_earn_Recommender_nativeHasIdMap(JNIEnv* env, jclass, jlong ptr) {
  int v = 0;
  if (!check(env, earn_recommender_has_id_map(reinterpret_cast<const earn_recommender*>(ptr), &v))) return JNI_FALSE;
  return v ? JNI_TRUE : JNI_FALSE;
}

JNIEXPORT jbyteArray JNICALL Java_earn_Recommender_nativeOriginalId(JNIEnv* env, jclass, jlong ptr, jlong index) {
  const char* v = nullptr;
  if (!check(env, earn_recommender_original_id(reinterpret_cast<const earn_recommender*>(ptr), index, &v)))
    return nullptr;
  return bytes(env, v);
}

JNIEXPORT jbyteArray JNICALL Java_earn_Recommender_nativeTitle(JNIEnv* env, jclass, jlong ptr, jlong index) {
  const char* v = nullptr;
  if (!check(env, earn_recommender_title(reinterpret_cast<const earn_recommender*>(ptr), index, &v))) return nullptr;
  return bytes(env, v);
}

JNIEXPORT jlong JNICALL Java_earn_Recommender_nativeMaxHistory(JNIEnv* env, jclass, jlong ptr) {
  int64_t v = 0;
  if (!check(env, earn_recommender_max_history(reinterpret_cast<const earn_recommender*>(ptr), &v))) return 0;
  return v;
}

JNIEXPORT void JNICALL Java_earn_Recommender_nativeFree(JNIEnv*, jclass, jlong ptr) {
  earn_recommender_free(reinterpret_cast<earn_recommender*>(ptr));
}

JNIEXPORT jint JNICALL Java_earn_Recommender_nativeCApiVersion(JNIEnv*, jclass) {
  return static_cast<jint>(earn_c_api_version());
}

JNIEXPORT jint JNICALL Java_earn_Recommender_nativeCApiMinorVersion(JNIEnv*, jclass) {
  return static_cast<jint>(earn_c_api_minor_version());
}

JNIEXPORT jstring JNICALL Java_earn_Recommender_nativeVersionString(JNIEnv* env, jclass) {
  return env->NewStringUTF(earn_version_string());
}

}  // extern "C"
