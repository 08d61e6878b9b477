/* The C API of an installed libearn, from C.
 *   recommend_c ENGINE_DIR HISTORIES_FILE TOP_K BEAM   top-K per history (as recommend_cpp prints it)
 *   recommend_c --errors ENGINE_DIR CORRUPT_DIR        every error path: one "case status message" line each
 *   recommend_c --threads ENGINE_DIR HISTORIES_FILE N  N threads share one recommender; results vs serial
 * Histories: one per line, item ids separated by spaces. libonnxruntime: $EARN_ORT_LIBRARY or the system's. */
#include <earn/c_api.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t* items;
  int64_t* offsets;
  int64_t users;
} histories;

static int read_histories(const char* path, histories* h) {
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  size_t cap_items = 1024, cap_users = 64;
  h->items = malloc(cap_items * sizeof(int64_t));
  h->offsets = malloc((cap_users + 1) * sizeof(int64_t));
  h->users = 0;
  h->offsets[0] = 0;
  int64_t n = 0;
  char line[65536];
  while (fgets(line, sizeof line, f)) {
    char* p = line;
    char* end;
    for (long long v = strtoll(p, &end, 10); end != p; v = strtoll(p, &end, 10)) {
      if ((size_t)n == cap_items) h->items = realloc(h->items, (cap_items *= 2) * sizeof(int64_t));
      h->items[n++] = v;
      p = end;
    }
    if ((size_t)h->users == cap_users) h->offsets = realloc(h->offsets, ((cap_users *= 2) + 1) * sizeof(int64_t));
    h->offsets[++h->users] = n;
  }
  fclose(f);
  return 1;
}

static int check(earn_status s, const char* what) {
  if (s == EARN_OK) return 1;
  fprintf(stderr, "%s: %s: %s\n", what, earn_status_name(s), earn_last_error_message());
  return 0;
}

static void print_result(const earn_result* r) {
  const int64_t users = earn_result_users(r), k = earn_result_top_k(r);
  const int64_t* items = earn_result_items(r);
  const float* scores = earn_result_scores(r);
  for (int64_t u = 0; u < users; ++u) {
    for (int64_t j = 0; j < k; ++j) printf("%lld ", (long long)items[u * k + j]);
    printf("|");
    for (int64_t j = 0; j < k; ++j) printf(" %.9g", (double)scores[u * k + j]);
    printf("\n");
  }
}

/* ---------------------------------------------------------------------------------------------- errors */
static void report(const char* name, earn_status s) {
  /* one line per case; the message must be non-empty exactly when the call failed */
  printf("%s %s %s\n", name, earn_status_name(s), earn_last_error_message());
}

static int errors(const char* engine_dir, const char* corrupt_dir) {
  earn_recommender* rec = NULL;
  earn_result* res = NULL;
  earn_options* opt = NULL;
  char missing[4096];
  snprintf(missing, sizeof missing, "%s/no-such-engine", engine_dir);
  report("missing_engine", earn_recommender_load(missing, NULL, &rec));
  report("corrupt_engine", earn_recommender_load(corrupt_dir, NULL, &rec));
  report("null_dir", earn_recommender_load(NULL, NULL, &rec));
  report("options_null_out", earn_options_create(NULL));
  if (!check(earn_options_create(&opt), "earn_options_create")) return 1;
  report("bad_batch_size", earn_options_set_batch_size(opt, 0));
  report("bad_threads", earn_options_set_intra_op_threads(opt, -1));
  report("bad_provider_load", earn_options_add_provider(opt, "NoSuchExecutionProvider"));
  report("bad_provider", earn_recommender_load(engine_dir, opt, &rec));
  earn_options_free(opt);
  if (!check(earn_recommender_load(engine_dir, NULL, &rec), "load")) return 1;
  report("ok_load", EARN_OK);
  const int64_t items[] = {1, 999999, 2, 3};
  const int64_t offsets[] = {0, 2, 4};
  report("unknown_items", earn_recommender_recommend(rec, items, offsets, 2, 5, 20, EARN_UNKNOWN_ERROR, &res));
  report("top_k_zero", earn_recommender_recommend(rec, items + 2, offsets, 1, 0, 20, EARN_UNKNOWN_ERROR, &res));
  report("top_k_above_beam",
         earn_recommender_recommend(rec, items + 2, offsets, 1, 30, 20, EARN_UNKNOWN_ERROR, &res));
  const int64_t bad_offsets[] = {0, 3, 1};
  report("bad_offsets", earn_recommender_recommend(rec, items, bad_offsets, 2, 5, 20, EARN_UNKNOWN_ERROR, &res));
  report("null_items", earn_recommender_recommend(rec, NULL, offsets, 2, 5, 20, EARN_UNKNOWN_ERROR, &res));
  report("bad_on_unknown",
         earn_recommender_recommend(rec, items, offsets, 2, 5, 20, (earn_on_unknown)7, &res));
  report("null_recommender", earn_recommender_recommend(NULL, items, offsets, 2, 5, 20, EARN_UNKNOWN_ERROR, &res));
  /* the same unknown ids are dropped and counted with EARN_UNKNOWN_SKIP */
  earn_status s = earn_recommender_recommend(rec, items, offsets, 2, 5, 20, EARN_UNKNOWN_SKIP, &res);
  report("skip_unknown", s);
  if (s == EARN_OK) {
    printf("skipped %lld %lld\n", (long long)earn_result_skipped(res)[0], (long long)earn_result_skipped(res)[1]);
    earn_result_free(res);
  }
  int64_t max_history = 0;
  report("max_history", earn_recommender_max_history(rec, &max_history));
  printf("api %u %u version %s max_history %lld\n", earn_c_api_version(), (unsigned)EARN_C_API_VERSION,
         earn_version_string(), (long long)max_history);
  earn_recommender_free(rec);
  earn_recommender_free(NULL); /* accepted */
  earn_result_free(NULL);
  return 0;
}

/* ---------------------------------------------------------------------------------------------- threads */
typedef struct {
  const earn_recommender* rec;
  const histories* h;
  const earn_result* want;
  int calls, mismatches, failures;
} job;

static void* worker(void* arg) {
  job* j = arg;
  for (int c = 0; c < j->calls; ++c) {
    earn_result* r = NULL;
    if (earn_recommender_recommend(j->rec, j->h->items, j->h->offsets, j->h->users, 10, 20, EARN_UNKNOWN_ERROR,
                                   &r) != EARN_OK) {
      j->failures++;
      continue;
    }
    const size_t n = (size_t)(earn_result_users(r) * earn_result_top_k(r));
    if (memcmp(earn_result_items(r), earn_result_items(j->want), n * sizeof(int64_t)) ||
        memcmp(earn_result_scores(r), earn_result_scores(j->want), n * sizeof(float)))
      j->mismatches++;
    earn_result_free(r);
  }
  return NULL;
}

static int threads(const char* engine_dir, const char* histories_file, int n_threads) {
  histories h;
  earn_recommender* rec = NULL;
  earn_result* want = NULL;
  if (!read_histories(histories_file, &h)) return 2;
  if (!check(earn_recommender_load(engine_dir, NULL, &rec), "load")) return 1;
  if (!check(earn_recommender_recommend(rec, h.items, h.offsets, h.users, 10, 20, EARN_UNKNOWN_ERROR, &want),
             "recommend"))
    return 1;
  pthread_t tid[64];
  job jobs[64];
  if (n_threads > 64) n_threads = 64;
  for (int t = 0; t < n_threads; ++t) {
    jobs[t] = (job){rec, &h, want, 5, 0, 0};
    pthread_create(&tid[t], NULL, worker, &jobs[t]);
  }
  int mismatches = 0, failures = 0, calls = 0;
  for (int t = 0; t < n_threads; ++t) {
    pthread_join(tid[t], NULL);
    mismatches += jobs[t].mismatches;
    failures += jobs[t].failures;
    calls += jobs[t].calls;
  }
  printf("threads %d calls %d mismatches %d failures %d\n", n_threads, calls, mismatches, failures);
  earn_result_free(want);
  earn_recommender_free(rec);
  free(h.items);
  free(h.offsets);
  return mismatches || failures;
}

int main(int argc, char** argv) {
  if (earn_c_api_version() != EARN_C_API_VERSION) {
    fprintf(stderr, "libearn C API %u, this program was built for %u\n", earn_c_api_version(), EARN_C_API_VERSION);
    return 3;
  }
  if (argc == 4 && !strcmp(argv[1], "--errors")) return errors(argv[2], argv[3]);
  if (argc == 5 && !strcmp(argv[1], "--threads")) return threads(argv[2], argv[3], atoi(argv[4]));
  if (argc != 5) {
    fprintf(stderr, "usage: recommend_c ENGINE_DIR HISTORIES_FILE TOP_K BEAM | --errors ENGINE_DIR CORRUPT_DIR | "
                    "--threads ENGINE_DIR HISTORIES_FILE N\n");
    return 2;
  }
  histories h;
  if (!read_histories(argv[2], &h)) {
    fprintf(stderr, "cannot read %s\n", argv[2]);
    return 2;
  }
  earn_recommender* rec = NULL;
  earn_result* res = NULL;
  if (!check(earn_recommender_load(argv[1], NULL, &rec), "load")) return 1;
  if (!check(earn_recommender_recommend(rec, h.items, h.offsets, h.users, atoll(argv[3]), atoll(argv[4]),
                                        EARN_UNKNOWN_ERROR, &res),
             "recommend"))
    return 1;
  print_result(res);
  earn_result_free(res);
  earn_recommender_free(rec);
  free(h.items);
  free(h.offsets);
  return 0;
}
