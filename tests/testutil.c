#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "bwt/fileio.h"
#include "bwt/rng.h"

const char *test_tmpdir(const char *name) {
  static char path[1024];
  const char *root = getenv("BWT_TEST_TMP");
  if (!root || !*root) root = "/tmp/bwt_test";
  mkdir(root, 0755);
  snprintf(path, sizeof path, "%s/%s", root, name);
  char cmd[1100];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fail_msg("cannot clear %s", path);
  if (mkdir(path, 0755) != 0) fail_msg("cannot create %s", path);
  return path;
}

void test_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed) {
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)bwt_rng_uniform(&rng);
}

double test_max_rel_err(const float *a, const float *b, size_t n, double floor) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]) / fmax(fabs((double)b[i]), floor);
    if (!(d <= worst)) worst = d; /* NaN propagates as the worst */
  }
  return worst;
}

int test_count_temporaries(const char *path) {
  char dir[1024], prefix[1024];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
  DIR *d = opendir(dir);
  if (!d) fail_msg("cannot list %s", dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  closedir(d);
  return n;
}

bwt_run_config test_bijection_config(int V, int d_model, int n_heads, int n_layers) {
  bwt_run_config c;
  memset(&c, 0, sizeof c);
  assert_int_equal(bwt_task_config_default(&c.task, "bijection"), BWT_STATUS_OK);
  c.task.V = V;
  c.task.L = V - 1;
  bwt_train_config_default(&c.train);
  bwt_task *task = NULL;
  assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
  bwt_model_config_default(&c.model, BWT_ARCH_TRANSFORMER, task);
  c.model.d_model = d_model, c.model.n_heads = n_heads, c.model.n_layers = n_layers;
  bwt_task_free(task);
  return c;
}

const char *test_shared_path(const char *rel) {
  static char path[4096];
  const char *env = getenv("BWT_SHARED_DIR"), *src = __FILE__, *slash = strrchr(src, '/');
  if (env && *env) snprintf(path, sizeof path, "%s/%s", env, rel);
  else snprintf(path, sizeof path, "%.*s/../../shared/%s", slash ? (int)(slash - src) : 1, slash ? src : ".", rel);
  return path;
}

int test_shared_present(const char *path) {
  if (bwt_path_exists(path)) return 1;
  print_message("  SKIPPED: %s is absent (shared/ beside the checkout, or BWT_SHARED_DIR)\n", path);
  skip();
  return 0;
}

void test_filters_from_env(void) {
  const char *skip = getenv("BWT_TEST_SKIP"), *only = getenv("BWT_TEST_ONLY");
  if (skip && *skip) cmocka_set_skip_filter(skip);
  if (only && *only) cmocka_set_test_filter(only);
}
