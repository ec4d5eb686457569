/* Fault loops through the library API (src/core/fault.h): every write, fsync and rename of a small
 * training run fails in turn, and every allocation of creating a model, creating a trainer and
 * taking a step, saving and loading a checkpoint, a short run with checkpoints and a final
 * evaluation, and resuming a run. Each failure must be a clean non-OK status with a one-line
 * message (out of memory for an allocation), never a success with a wrong result; an I/O failure
 * must keep the last good checkpoint, leave no temporary file, and let a resume reach exactly the
 * weights and files of a run that never failed. Under ASan + LeakSanitizer (.ci/run) a leak on any
 * of these paths fails the test: the test itself frees everything it creates on every path.
 * Each loop goes through all its points and then fails listing how many failed (the first few are
 * shown; BWT_FAULTS_SHOW=N shows N). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/train.h"
#include "core/fault.h"
#include "testutil.h"

/* A check at one fault point: on failure it reports (the first few of a test) and makes the point's
 * function return 1; the loop goes on with the next point and the test fails at its end, listing
 * how many points failed. */
static int shown, show_max = 12;
static void point_failed(const char *cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void point_failed(const char *cond, const char *fmt, ...) {
  if (shown++ >= show_max) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  print_message("  FAIL: %s\n    (%s)\n", buf, cond);
}
#define CHECK(cond, ...)                   \
  do {                                     \
    if (!(cond)) {                         \
      point_failed(#cond, __VA_ARGS__);    \
      return 1;                            \
    }                                      \
  } while (0)
#define TRY(call)           \
  do {                      \
    if ((call) != 0) return 1; \
  } while (0)

/* The end of a loop: fails the test if any point failed. */
static void loop_end(const char *what, long failed, long points) {
  if (failed) fail_msg("%s: %ld of %ld fault points failed (the first ones are shown above)", what, failed, points);
}

static void disarm(void) { bwt_fault_arm(BWT_FAULT_ALLOC, 0); }

static void clear_error(void) { bwt_fail(BWT_STATUS_OK, "%s", ""); }

/* A bijection run (V 5, L 4) with a small transformer and one thread, so the n-th operation is
 * always the same one. */
static bwt_run_config tiny_config(int d_model, int steps, int ckpt_every, int log_every) {
  bwt_run_config c = test_bijection_config(5, d_model, 2, 1);
  c.train.steps = steps;
  c.train.batch = 4;
  c.train.warmup = 2;
  c.train.lr = 3e-3;
  c.train.eval_seqs = 8;
  c.train.eval_every = 0;
  c.train.ckpt_every = ckpt_every;
  c.train.log_every = log_every;
  c.train.threads = 1;
  return c;
}

/* noinline: gcc 12 otherwise mistakes the returned heap pointer for one to the local `data`. */
__attribute__((noinline)) static char *read_all(const char *path, size_t *n) {
  char *data = NULL;
  bwt_status s = bwt_read_file(path, &data, n);
  if (s != BWT_STATUS_OK) print_message("  cannot read %s: %s\n", path, bwt_last_error());
  return data;
}

static void path_in(char *buf, size_t n, const char *dir, const char *file) { snprintf(buf, n, "%s/%s", dir, file); }

static void clear_dir(const char *dir);

/* A fresh directory for a fault loop: under /dev/shm where there is one, since the loops write
 * thousands of small runs and every checkpoint is fsynced (seconds on a tmpfs, minutes on a busy
 * disk; the faults are injected before the system calls, so the same paths are taken either way);
 * else test_tmpdir's. Removed at the end (fault_tmpdirs_remove). */
static char shm_root[256];

/* Removes the directories of earlier runs that did not finish (killed), whose process is gone. */
static void remove_stale_shm_dirs(void) {
  DIR *d = opendir("/dev/shm");
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    long pid = 0;
    char cmd[300];
    if (sscanf(e->d_name, "bwt_test_faults.%ld", &pid) != 1 || pid <= 0) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    snprintf(cmd, sizeof cmd, "rm -rf '/dev/shm/%s'", e->d_name);
    if (system(cmd) != 0) fprintf(stderr, "test_faults: cannot remove /dev/shm/%s\n", e->d_name);
  }
  closedir(d);
}

static void fault_tmpdir(char *buf, size_t n, const char *name) {
  if (!*shm_root && access("/dev/shm", W_OK) == 0) {
    remove_stale_shm_dirs();
    snprintf(shm_root, sizeof shm_root, "/dev/shm/bwt_test_faults.%ld", (long)getpid());
    if (mkdir(shm_root, 0755) != 0 && errno != EEXIST) snprintf(shm_root, sizeof shm_root, "-");
  }
  if (*shm_root && *shm_root != '-') {
    snprintf(buf, n, "%s/%s", shm_root, name);
    assert_int_equal(bwt_mkdir_p(buf), BWT_STATUS_OK);
    clear_dir(buf);
  } else {
    snprintf(buf, n, "%s", test_tmpdir(name));
  }
}

static void fault_tmpdirs_remove(void) {
  if (!*shm_root || *shm_root == '-') return;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", shm_root);
  if (system(cmd) != 0) fprintf(stderr, "test_faults: cannot remove %s\n", shm_root);
}

/* The metrics log without its wall-time fields (step is always the first key, so each removed
 * field follows a comma). In place. */
static void strip_times(char *text) {
  static const char *const keys[] = {",\"elapsed_s\":", ",\"train_s\":", ",\"tokens_per_s\":"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
    for (char *p; (p = strstr(text, keys[k]));) {
      char *end = p + strlen(keys[k]);
      while (*end && *end != ',' && *end != '}') end++;
      memmove(p, end, strlen(end) + 1);
    }
}

/* The files a finished run leaves, to compare runs by (metrics.jsonl without wall times). */
typedef struct {
  char *data[5];
  size_t n[5];
} run_files;
static const char *const run_file_names[5] = {"checkpoint.safetensors", "eval.json", "positions.csv", "config.json", "metrics.jsonl"};

static int run_files_read(run_files *f, const char *dir) {
  char path[1200];
  int ok = 1;
  for (int i = 0; i < 5; i++) {
    path_in(path, sizeof path, dir, run_file_names[i]);
    f->data[i] = read_all(path, &f->n[i]);
    ok &= f->data[i] != NULL;
  }
  if (f->data[4]) {
    strip_times(f->data[4]);
    f->n[4] = strlen(f->data[4]);
  }
  return ok;
}

/* Prints the first line where two texts differ (for a failure's message). */
static void show_difference(const char *what, const char *a, size_t na, const char *b, size_t nb) {
  if (shown >= show_max) return; /* only for the failures that are shown */
  size_t i = 0, line = 1, start = 0;
  while (i < na && i < nb && a[i] == b[i]) {
    if (a[i] == '\n') line++, start = i + 1;
    i++;
  }
  if (memchr(a, '\0', na) || memchr(b, '\0', nb)) {
    print_message("  %s: first difference at byte %zu (sizes %zu and %zu)\n", what, i, na, nb);
    return;
  }
  const char *ea = memchr(a + start, '\n', na - start), *eb = memchr(b + start, '\n', nb - start);
  int la = (int)((ea ? (size_t)(ea - a) : na) - start), lb = (int)((eb ? (size_t)(eb - b) : nb) - start);
  print_message("  %s line %zu, want:\n    %.*s\n  got:\n    %.*s\n", what, line, la > 400 ? 400 : la, a + start,
                lb > 400 ? 400 : lb, b + start);
}

/* Whether two runs' files are the same; shows the first difference if not. */
static int run_files_same(const run_files *want, const run_files *got, int *which) {
  for (int i = 0; i < 5; i++)
    if (got->n[i] != want->n[i] || memcmp(got->data[i], want->data[i], got->n[i]) != 0) {
      show_difference(run_file_names[i], want->data[i], want->n[i], got->data[i], got->n[i]);
      *which = i;
      return 0;
    }
  return 1;
}

static void run_files_free(run_files *f) {
  for (int i = 0; i < 5; i++) free(f->data[i]);
}

/* Temporary files ("*.tmp.*") in dir. */
static int count_temporaries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) fail_msg("cannot list %s", dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

/* Empties a run directory (it holds files only). */
static void clear_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) fail_msg("cannot list %s", dir);
  char path[1200];
  for (struct dirent *e; (e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    path_in(path, sizeof path, dir, e->d_name);
    if (unlink(path) != 0) fail_msg("cannot remove %s: %s", path, strerror(errno));
  }
  closedir(d);
}

/* The weights and moments after each step of a run, by stepping a trainer directly (no files):
 * what a checkpoint of step s must hold. */
typedef struct {
  int steps;
  size_t P;
  float **params, **m, **v; /* [0..steps] */
} step_states;

static void step_states_make(step_states *st, const bwt_run_config *c) {
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, c), BWT_STATUS_OK);
  st->steps = c->train.steps;
  st->P = tr->model->n_params;
  st->params = calloc(st->steps + 1, sizeof(float *));
  st->m = calloc(st->steps + 1, sizeof(float *));
  st->v = calloc(st->steps + 1, sizeof(float *));
  assert_non_null(st->params);
  for (int s = 0;; s++) {
    size_t bytes = sizeof(float) * st->P;
    st->params[s] = malloc(bytes), st->m[s] = malloc(bytes), st->v[s] = malloc(bytes);
    assert_true(st->params[s] && st->m[s] && st->v[s]);
    memcpy(st->params[s], tr->model->params, bytes);
    memcpy(st->m[s], tr->adam_m, bytes);
    memcpy(st->v[s], tr->adam_v, bytes);
    if (s == st->steps) break;
    double loss, norm, lr;
    assert_int_equal(bwt_trainer_step(tr, &loss, &norm, &lr), BWT_STATUS_OK);
  }
  bwt_trainer_free(tr);
}

static void step_states_free(step_states *st) {
  for (int s = 0; s <= st->steps; s++) free(st->params[s]), free(st->m[s]), free(st->v[s]);
  free(st->params), free(st->m), free(st->v);
}

/* The checkpoint at path loads, holds step `step`, and the weights and moments of that step. */
static int check_checkpoint(const char *path, const step_states *st, int step, const char *ctx) {
  bwt_run_config cfg;
  bwt_model *m = NULL;
  float *am = NULL, *av = NULL;
  int got = -1;
  bwt_status s = bwt_checkpoint_load(path, &cfg, &m, &am, &av, &got);
  char msg[512];
  snprintf(msg, sizeof msg, "%s", bwt_last_error());
  size_t bytes = sizeof(float) * st->P, P = m ? m->n_params : 0;
  int same = s == BWT_STATUS_OK && got >= 0 && got <= st->steps && P == st->P && memcmp(m->params, st->params[got], bytes) == 0 &&
             memcmp(am, st->m[got], bytes) == 0 && memcmp(av, st->v[got], bytes) == 0;
  bwt_model_free(m);
  free(am);
  free(av);
  CHECK(s == BWT_STATUS_OK, "%s: the checkpoint left behind does not load: %s", ctx, msg);
  CHECK(got == step, "%s: the checkpoint left behind is of step %d, want %d (the last one written before the fault)", ctx, got, step);
  CHECK(P == st->P, "%s: the checkpoint has %zu parameters, want %zu", ctx, P, st->P);
  CHECK(same, "%s: the checkpoint of step %d does not hold that step's weights and moments", ctx, step);
  return 0;
}

/* The message of a failure: one line, and (for I/O) naming a file of dir and the reason. */
static int check_message(const char *msg, const char *dir, const char *reason, const char *ctx) {
  CHECK(*msg, "%s: failed without a message", ctx);
  CHECK(!strchr(msg, '\n'), "%s: the message is not one line: '%s'", ctx, msg);
  if (dir) CHECK(strstr(msg, dir), "%s: the message does not name the file in %s: '%s'", ctx, dir, msg);
  if (reason) CHECK(strstr(msg, reason), "%s: the message does not give the reason '%s': '%s'", ctx, reason, msg);
  return 0;
}

/* Finishes the run in dir unarmed (a resume, or where no checkpoint survived a fresh start in the
 * same directory, as the same command would) and compares its files with a run that never failed. */
static int finish_and_compare(const bwt_run_config *c, const char *dir, const run_files *want, const char *ctx) {
  char path[1200];
  path_in(path, sizeof path, dir, "checkpoint.safetensors");
  bwt_trainer *tr = NULL;
  bwt_status s;
  if (bwt_path_exists(path)) {
    s = bwt_trainer_resume(&tr, dir);
    CHECK(s == BWT_STATUS_OK, "%s: the resume fails: %s", ctx, bwt_last_error());
  } else {
    s = bwt_trainer_resume(&tr, dir);
    int refused = s != BWT_STATUS_OK && !tr && strstr(bwt_last_error(), "holds no checkpoint");
    bwt_trainer_free(tr);
    tr = NULL;
    CHECK(refused, "%s: a resume without a checkpoint: status %s, '%s' (want 'holds no checkpoint')", ctx,
          bwt_status_name(s), bwt_last_error());
    CHECK(bwt_trainer_create(&tr, c) == BWT_STATUS_OK, "%s: %s", ctx, bwt_last_error());
  }
  s = bwt_train_run(tr, dir, NULL, NULL);
  int step = tr->step;
  bwt_trainer_free(tr);
  CHECK(s == BWT_STATUS_OK, "%s: the resumed run fails: %s", ctx, bwt_last_error());
  CHECK(step == c->train.steps, "%s: the resumed run stopped at step %d", ctx, step);
  run_files got;
  int which = 0, read = run_files_read(&got, dir), same = read && run_files_same(want, &got, &which);
  run_files_free(&got);
  CHECK(read, "%s: the resumed run is missing files", ctx);
  CHECK(same, "%s: after the resume %s differs from an unfaulted run's%s", ctx, run_file_names[which],
        which == 4 ? " (wall times aside)" : "");
  CHECK(count_temporaries(dir) == 0, "%s: temporary files left after the resumed run", ctx);
  return 0;
}

/* I/O faults: for each of write, fsync and rename, every operation of the run fails in turn. The
 * checkpoint on disk afterwards must be the last one whose rename completed: the renames are failed
 * first, and each one's message says which file it replaces, which tells for every count of
 * completed renames which checkpoint step is on disk. */
typedef struct {
  bwt_run_config cfg;
  step_states st;
  run_files want; /* of the unfaulted run */
  long count[BWT_FAULT_KINDS];
  int *rename_ckpt, *rename_step; /* rename n: whether it replaces the checkpoint; the run's step then */
  char (*rename_file)[64];        /* rename n: the file it replaces, from its message */
  char dir[1024], ckpt[1200];
  int not_io, no_ckpt;
} io_loop;

static const char *const kind_names[] = {"alloc", "write", "fsync", "rename"};

static int io_point(io_loop *L, bwt_fault_kind kind, long n) {
  char ctx[128], msg[512], reason[128];
  snprintf(ctx, sizeof ctx, "%s fault %ld of %ld", kind_names[kind], n, L->count[kind]);
  snprintf(reason, sizeof reason, "%s", strerror(kind == BWT_FAULT_WRITE ? ENOSPC : EIO)); /* what fileio.c injects */
  clear_dir(L->dir);
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &L->cfg), BWT_STATUS_OK);
  clear_error();
  bwt_fault_arm(kind, n);
  bwt_status s = bwt_train_run(tr, L->dir, NULL, NULL);
  int fired = bwt_fault_fired();
  long renames = bwt_fault_count(BWT_FAULT_RENAME);
  disarm();
  snprintf(msg, sizeof msg, "%s", bwt_last_error());
  int at_step = tr->step;
  bwt_trainer_free(tr);
  if (kind == BWT_FAULT_RENAME) {
    L->rename_ckpt[n] = strstr(msg, "checkpoint.safetensors") != NULL;
    L->rename_step[n] = at_step;
    const char *f = strstr(msg, L->dir);
    snprintf(L->rename_file[n], sizeof L->rename_file[n], "%s", f ? f + strlen(L->dir) + 1 : "?");
    L->rename_file[n][strcspn(L->rename_file[n], ": ")] = '\0';
  }
  CHECK(fired, "%s: the fault did not fire (the count of an unfaulted run was %ld)", ctx, L->count[kind]);
  CHECK(s != BWT_STATUS_OK, "%s: the run succeeded although a %s failed", ctx, kind_names[kind]);
  if (s != BWT_STATUS_IO) {
    L->not_io++;
    print_message("  note: %s: status %s: %s\n", ctx, bwt_status_name(s), msg);
  }
  TRY(check_message(msg, L->dir, reason, ctx));
  CHECK(count_temporaries(L->dir) == 0, "%s: a temporary file was left behind", ctx);
  long done = kind == BWT_FAULT_RENAME ? n - 1 : renames; /* renames that completed */
  int want_step = -1;
  for (long i = 1; i <= done && i <= L->count[BWT_FAULT_RENAME]; i++)
    if (L->rename_ckpt[i]) want_step = L->rename_step[i];
  if (want_step < 0) {
    CHECK(!bwt_path_exists(L->ckpt), "%s: a checkpoint exists though no checkpoint rename completed", ctx);
    L->no_ckpt++;
  } else {
    CHECK(bwt_path_exists(L->ckpt), "%s: the checkpoint of step %d is gone", ctx, want_step);
    TRY(check_checkpoint(L->ckpt, &L->st, want_step, ctx));
  }
  return finish_and_compare(&L->cfg, L->dir, &L->want, ctx);
}

static void test_io_faults(void **state) {
  (void)state;
  shown = 0;
  io_loop L;
  memset(&L, 0, sizeof L);
  /* d 32: 154 kB with the moments, three writes of 64 KiB; checkpoints at 2, 4 and 6 (and again at
   * the end), an evaluation logged at step 4. */
  L.cfg = tiny_config(32, 6, 2, 2);
  L.cfg.train.eval_every = 4;
  step_states_make(&L.st, &L.cfg);
  char ref[1024];
  fault_tmpdir(ref, sizeof ref, "io_ref");
  fault_tmpdir(L.dir, sizeof L.dir, "io");
  path_in(L.ckpt, sizeof L.ckpt, L.dir, "checkpoint.safetensors");

  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &L.cfg), BWT_STATUS_OK);
  bwt_fault_arm(BWT_FAULT_WRITE, 0); /* counts only */
  assert_int_equal(bwt_train_run(tr, ref, NULL, NULL), BWT_STATUS_OK);
  for (int k = 0; k < BWT_FAULT_KINDS; k++) L.count[k] = bwt_fault_count((bwt_fault_kind)k);
  bwt_trainer_free(tr);
  assert_true(run_files_read(&L.want, ref));
  assert_true(L.count[BWT_FAULT_WRITE] > 0 && L.count[BWT_FAULT_FSYNC] > 0 && L.count[BWT_FAULT_RENAME] > 0);
  L.rename_ckpt = calloc(L.count[BWT_FAULT_RENAME] + 1, sizeof(int));
  L.rename_step = calloc(L.count[BWT_FAULT_RENAME] + 1, sizeof(int));
  L.rename_file = calloc(L.count[BWT_FAULT_RENAME] + 1, sizeof *L.rename_file);
  assert_true(L.rename_ckpt && L.rename_step && L.rename_file);

  static const bwt_fault_kind kinds[] = {BWT_FAULT_RENAME, BWT_FAULT_WRITE, BWT_FAULT_FSYNC};
  long points = 0, failed = 0;
  for (size_t ki = 0; ki < sizeof kinds / sizeof *kinds; ki++)
    for (long n = 1; n <= L.count[kinds[ki]]; n++) failed += io_point(&L, kinds[ki], n), points++;
  print_message("  I/O fault points: %ld writes, %ld fsyncs, %ld renames (%d of the %ld before any checkpoint existed); "
                "%d failed with another status than BWT_STATUS_IO\n",
                L.count[BWT_FAULT_WRITE], L.count[BWT_FAULT_FSYNC], L.count[BWT_FAULT_RENAME], L.no_ckpt, points, L.not_io);
  char order[1024] = "";
  for (long n = 1; n <= L.count[BWT_FAULT_RENAME]; n++) {
    size_t len = strlen(order);
    if (L.rename_ckpt[n]) snprintf(order + len, sizeof order - len, " %s@%d", L.rename_file[n], L.rename_step[n]);
    else snprintf(order + len, sizeof order - len, " %s", L.rename_file[n]);
  }
  print_message("  (a %zu-byte checkpoint; the renames in order:%s)\n", L.want.n[0], order);
  free(L.rename_ckpt);
  free(L.rename_step);
  free(L.rename_file);
  run_files_free(&L.want);
  step_states_free(&L.st);
  loop_end("I/O faults", failed, points);
}

/* The bookkeeping of one allocation loop. */
typedef struct {
  const char *phase;
  long points, failed, nomem, other, recovered;
} alloc_loop;

/* A failure at allocation n: BWT_STATUS_NOMEM with a one-line message saying so. An allocation that
 * fails is always known to the library (bwt_malloc and the cJSON hooks record it), so no other
 * status is right: "not a JSON object" or "bad file format" would blame a good file. */
static int check_alloc_failure(alloc_loop *l, long n, bwt_status s) {
  char ctx[128];
  snprintf(ctx, sizeof ctx, "%s: allocation %ld", l->phase, n);
  CHECK(s != BWT_STATUS_OK, "%s", ctx);
  TRY(check_message(bwt_last_error(), NULL, NULL, ctx));
  if (s == BWT_STATUS_NOMEM) l->nomem++;
  else l->other++;
  CHECK(s == BWT_STATUS_NOMEM && strstr(bwt_last_error(), "out of memory"),
        "%s failed, the call reports status '%s': '%s' (want out of memory)", ctx, bwt_status_name(s), bwt_last_error());
  return 0;
}

static void alloc_loop_end(const alloc_loop *l) {
  print_message("  allocation fault points, %s: %ld (%ld reported out of memory, %ld another status, %ld survived with the right result)\n",
                l->phase, l->points, l->nomem, l->other, l->recovered);
  loop_end(l->phase, l->failed, l->points);
}

/* (a) bwt_model_create. */
static int model_point(alloc_loop *l, long n, const bwt_model_config *cfg, const bwt_model *ref) {
  bwt_model *m = NULL;
  clear_error();
  bwt_fault_arm(BWT_FAULT_ALLOC, n);
  bwt_status s = bwt_model_create(&m, cfg, 7);
  int fired = bwt_fault_fired();
  disarm();
  if (s == BWT_STATUS_OK) {
    int same = m->n_params == ref->n_params && memcmp(m->params, ref->params, sizeof(float) * ref->n_params) == 0;
    bwt_model_free(m);
    CHECK(fired, "%s: allocation %ld did not happen", l->phase, n);
    CHECK(same, "%s: allocation %ld failed, the call succeeded with other weights", l->phase, n);
    l->recovered++;
    return 0;
  }
  CHECK(!m, "%s: allocation %ld: a failed create returned a model", l->phase, n);
  CHECK(fired, "%s: allocation %ld did not happen, the call failed: %s", l->phase, n, bwt_last_error());
  return check_alloc_failure(l, n, s);
}

static void test_alloc_model_create(void **state) {
  (void)state;
  shown = 0;
  bwt_run_config c = tiny_config(16, 2, 0, 1);
  bwt_model *ref = NULL;
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_model_create(&ref, &c.model, 7), BWT_STATUS_OK);
  long count = bwt_fault_count(BWT_FAULT_ALLOC);
  assert_true(count > 0);
  alloc_loop l = {"bwt_model_create", 0, 0, 0, 0, 0};
  for (long n = 1; n <= count; n++) l.failed += model_point(&l, n, &c.model, ref), l.points++;
  bwt_model_free(ref);
  alloc_loop_end(&l);
}

/* (b) bwt_trainer_create + one bwt_trainer_step. */
static int step_point(alloc_loop *l, long n, const bwt_run_config *c, const bwt_trainer *ref, double ref_loss) {
  bwt_trainer *tr = NULL;
  double loss = 0, norm, lr;
  clear_error();
  bwt_fault_arm(BWT_FAULT_ALLOC, n);
  bwt_status s = bwt_trainer_create(&tr, c);
  int created = s == BWT_STATUS_OK, leaked = s != BWT_STATUS_OK && tr;
  if (created) s = bwt_trainer_step(tr, &loss, &norm, &lr);
  int fired = bwt_fault_fired();
  disarm();
  int same = s == BWT_STATUS_OK && loss == ref_loss && tr->step == 1 &&
             memcmp(tr->model->params, ref->model->params, sizeof(float) * ref->model->n_params) == 0;
  if (created) bwt_trainer_free(tr);
  CHECK(!leaked, "%s: allocation %ld: a failed create returned a trainer", l->phase, n);
  CHECK(fired, "%s: allocation %ld did not happen", l->phase, n);
  if (s == BWT_STATUS_OK) {
    CHECK(same, "%s: allocation %ld failed, the step succeeded with another result", l->phase, n);
    l->recovered++;
    return 0;
  }
  return check_alloc_failure(l, n, s);
}

static void test_alloc_trainer_step(void **state) {
  (void)state;
  shown = 0;
  bwt_run_config c = tiny_config(16, 3, 0, 1);
  bwt_trainer *ref = NULL;
  double ref_loss, norm, lr;
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_trainer_create(&ref, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_trainer_step(ref, &ref_loss, &norm, &lr), BWT_STATUS_OK);
  long count = bwt_fault_count(BWT_FAULT_ALLOC);
  alloc_loop l = {"bwt_trainer_create + bwt_trainer_step", 0, 0, 0, 0, 0};
  for (long n = 1; n <= count; n++) l.failed += step_point(&l, n, &c, ref, ref_loss), l.points++;
  bwt_trainer_free(ref);
  alloc_loop_end(&l);
}

/* (c) bwt_checkpoint_save over an older checkpoint, which a failure must leave as it was, with no
 * temporary file; then bwt_checkpoint_load of the new one, with the moments. */
typedef struct {
  const bwt_trainer *tr; /* at step 1: what is saved and must be loaded */
  char dir[1024], path[1200], fresh[1200];
  char *old, *new; /* the bytes of the step-0 checkpoint at path, and of the step-1 one */
  size_t n_old, n_new;
} ckpt_case;

static int save_point(alloc_loop *l, long n, const ckpt_case *k) {
  const bwt_trainer *tr = k->tr;
  clear_error();
  bwt_fault_arm(BWT_FAULT_ALLOC, n);
  bwt_status s = bwt_checkpoint_save(k->path, &tr->cfg, tr->model, tr->adam_m, tr->adam_v, tr->step);
  int fired = bwt_fault_fired();
  disarm();
  char msg[512];
  snprintf(msg, sizeof msg, "%s", bwt_last_error());
  size_t len = 0;
  char *now = read_all(k->path, &len);
  int is_new = now && len == k->n_new && memcmp(now, k->new, len) == 0;
  int is_old = now && len == k->n_old && memcmp(now, k->old, len) == 0;
  free(now);
  if (s == BWT_STATUS_OK) assert_int_equal(bwt_write_file_atomic(k->path, k->old, k->n_old), BWT_STATUS_OK);
  CHECK(count_temporaries(k->dir) == 0, "%s: allocation %ld: a temporary file was left behind", l->phase, n);
  CHECK(fired, "%s: allocation %ld did not happen", l->phase, n);
  if (s == BWT_STATUS_OK) {
    CHECK(is_new, "%s: allocation %ld failed, the save succeeded with other bytes", l->phase, n);
    l->recovered++;
    return 0;
  }
  CHECK(is_old, "%s: allocation %ld: the failed save did not leave the old checkpoint as it was", l->phase, n);
  bwt_fail(s, "%s", msg);
  return check_alloc_failure(l, n, s);
}

static int load_point(alloc_loop *l, long n, const ckpt_case *k) {
  const bwt_trainer *tr = k->tr;
  bwt_run_config cfg;
  bwt_model *m = NULL;
  float *am = NULL, *av = NULL;
  int step = -1;
  clear_error();
  bwt_fault_arm(BWT_FAULT_ALLOC, n);
  bwt_status s = bwt_checkpoint_load(k->fresh, &cfg, &m, &am, &av, &step);
  int fired = bwt_fault_fired();
  disarm();
  size_t bytes = sizeof(float) * tr->model->n_params;
  if (s == BWT_STATUS_OK) {
    int same = step == 1 && m->n_params == tr->model->n_params && memcmp(m->params, tr->model->params, bytes) == 0 &&
               memcmp(am, tr->adam_m, bytes) == 0 && memcmp(av, tr->adam_v, bytes) == 0;
    bwt_model_free(m);
    free(am);
    free(av);
    CHECK(fired, "%s: allocation %ld did not happen", l->phase, n);
    CHECK(same, "%s: allocation %ld failed, the load succeeded with other contents", l->phase, n);
    l->recovered++;
    return 0;
  }
  int returned = m || am || av;
  bwt_model_free(m);
  free(am);
  free(av);
  CHECK(!returned, "%s: allocation %ld: a failed load returned a model or moments", l->phase, n);
  CHECK(fired, "%s: allocation %ld did not happen, the load failed: %s", l->phase, n, bwt_last_error());
  return check_alloc_failure(l, n, s);
}

static void test_alloc_checkpoint(void **state) {
  (void)state;
  shown = 0;
  bwt_run_config c = tiny_config(16, 3, 0, 1);
  ckpt_case k;
  fault_tmpdir(k.dir, sizeof k.dir, "alloc_ckpt");
  path_in(k.path, sizeof k.path, k.dir, "checkpoint.safetensors");
  path_in(k.fresh, sizeof k.fresh, k.dir, "new.safetensors");
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_checkpoint_save(k.path, &tr->cfg, tr->model, tr->adam_m, tr->adam_v, tr->step), BWT_STATUS_OK);
  k.old = read_all(k.path, &k.n_old);
  double loss, norm, lr;
  assert_int_equal(bwt_trainer_step(tr, &loss, &norm, &lr), BWT_STATUS_OK);
  k.tr = tr;
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_checkpoint_save(k.fresh, &tr->cfg, tr->model, tr->adam_m, tr->adam_v, tr->step), BWT_STATUS_OK);
  long count = bwt_fault_count(BWT_FAULT_ALLOC);
  k.new = read_all(k.fresh, &k.n_new);
  assert_true(k.old && k.new);
  alloc_loop l = {"bwt_checkpoint_save", 0, 0, 0, 0, 0};
  for (long n = 1; n <= count; n++) l.failed += save_point(&l, n, &k), l.points++;

  bwt_run_config cfg;
  bwt_model *m = NULL;
  float *am = NULL, *av = NULL;
  int step = -1;
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_checkpoint_load(k.fresh, &cfg, &m, &am, &av, &step), BWT_STATUS_OK);
  count = bwt_fault_count(BWT_FAULT_ALLOC);
  bwt_model_free(m);
  free(am);
  free(av);
  alloc_loop ll = {"bwt_checkpoint_load", 0, 0, 0, 0, 0};
  for (long n = 1; n <= count; n++) ll.failed += load_point(&ll, n, &k), ll.points++;
  free(k.old);
  free(k.new);
  bwt_trainer_free(tr);
  print_message("  allocation fault points, bwt_checkpoint_save: %ld (%ld reported out of memory, %ld another status, %ld survived with the right result)\n",
                l.points, l.nomem, l.other, l.recovered);
  alloc_loop_end(&ll);
  loop_end(l.phase, l.failed, l.points);
}

/* (d) bwt_trainer_create + bwt_train_run: checkpoints, log lines, the final evaluation and its
 * files. A failed run leaves no temporary file, and any checkpoint it leaves loads and holds the
 * weights of its step. */
typedef struct {
  bwt_run_config cfg;
  step_states st;
  run_files want;
  char dir[1024], ckpt[1200];
  int left_ckpt;
  int wrong[5]; /* points where the run succeeded with this file wrong */
} run_case;

static int run_point(alloc_loop *l, long n, run_case *k) {
  char ctx[128];
  snprintf(ctx, sizeof ctx, "%s: allocation %ld", l->phase, n);
  clear_dir(k->dir);
  clear_error();
  bwt_trainer *tr = NULL;
  bwt_fault_arm(BWT_FAULT_ALLOC, n);
  bwt_status s = bwt_trainer_create(&tr, &k->cfg);
  int created = s == BWT_STATUS_OK, leaked = s != BWT_STATUS_OK && tr;
  if (created) s = bwt_train_run(tr, k->dir, NULL, NULL);
  int fired = bwt_fault_fired();
  disarm();
  char msg[512];
  snprintf(msg, sizeof msg, "%s", bwt_last_error());
  int step = created ? tr->step : 0;
  if (created) bwt_trainer_free(tr);
  CHECK(!leaked, "%s: a failed create returned a trainer", ctx);
  CHECK(fired, "%s did not happen", ctx);
  if (s == BWT_STATUS_OK) {
    CHECK(step == k->cfg.train.steps, "%s failed, the run succeeded at step %d", ctx, step);
    run_files got;
    int which = 0, read = run_files_read(&got, k->dir), same = read && run_files_same(&k->want, &got, &which);
    run_files_free(&got);
    CHECK(read, "%s failed, the run succeeded but left files missing", ctx);
    if (!same) k->wrong[which]++;
    CHECK(same, "%s failed, the run succeeded but its %s differs from an unfaulted run's", ctx, run_file_names[which]);
    l->recovered++;
    return 0;
  }
  CHECK(count_temporaries(k->dir) == 0, "%s: a temporary file was left behind", ctx);
  if (bwt_path_exists(k->ckpt)) {
    bwt_run_config cfg;
    bwt_model *m = NULL;
    float *am = NULL, *av = NULL;
    int at = -1;
    bwt_status ls = bwt_checkpoint_load(k->ckpt, &cfg, &m, &am, &av, &at);
    bwt_model_free(m);
    free(am);
    free(av);
    CHECK(ls == BWT_STATUS_OK, "%s: the checkpoint left behind does not load: %s", ctx, bwt_last_error());
    CHECK(at >= 0 && at <= step, "%s: the checkpoint left behind is of step %d, the run was at step %d", ctx, at, step);
    TRY(check_checkpoint(k->ckpt, &k->st, at, ctx));
    k->left_ckpt++;
  }
  bwt_fail(s, "%s", msg);
  return check_alloc_failure(l, n, s);
}

static void test_alloc_train_run(void **state) {
  (void)state;
  shown = 0;
  run_case k;
  memset(&k, 0, sizeof k);
  k.cfg = tiny_config(16, 4, 2, 2);
  step_states_make(&k.st, &k.cfg);
  char ref[1024];
  fault_tmpdir(ref, sizeof ref, "alloc_run_ref");
  fault_tmpdir(k.dir, sizeof k.dir, "alloc_run");
  path_in(k.ckpt, sizeof k.ckpt, k.dir, "checkpoint.safetensors");
  bwt_trainer *tr = NULL;
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_trainer_create(&tr, &k.cfg), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, ref, NULL, NULL), BWT_STATUS_OK);
  long count = bwt_fault_count(BWT_FAULT_ALLOC);
  bwt_trainer_free(tr);
  assert_true(run_files_read(&k.want, ref));
  alloc_loop l = {"bwt_trainer_create + bwt_train_run", 0, 0, 0, 0, 0};
  for (long n = 1; n <= count; n++) l.failed += run_point(&l, n, &k), l.points++;
  print_message("  (%d of the failed runs left a checkpoint behind, each of them good)\n", k.left_ckpt);
  for (int i = 0; i < 5; i++)
    if (k.wrong[i]) print_message("  %d allocation failures went unreported, with a wrong %s\n", k.wrong[i], run_file_names[i]);
  run_files_free(&k.want);
  step_states_free(&k.st);
  alloc_loop_end(&l);
}

/* (e) bwt_trainer_resume of a run stopped at step 2: the checkpoint is read and the metrics log
 * repaired (each line parsed). A failure must leave the log as it was (a line that could not be
 * parsed for want of memory is not a damaged line to drop), and a success must restore step 2's
 * state with nothing dropped. */
typedef struct {
  step_states st;
  char dir[1024], log_path[1200];
  char *log; /* the log as the stopped run left it */
  size_t n_log;
} resume_case;

static int resume_point(alloc_loop *l, long n, const resume_case *k) {
  char ctx[128];
  snprintf(ctx, sizeof ctx, "%s: allocation %ld", l->phase, n);
  assert_int_equal(bwt_write_file_atomic(k->log_path, k->log, k->n_log), BWT_STATUS_OK);
  bwt_trainer *tr = NULL;
  clear_error();
  bwt_fault_arm(BWT_FAULT_ALLOC, n);
  bwt_status s = bwt_trainer_resume(&tr, k->dir);
  int fired = bwt_fault_fired();
  disarm();
  char msg[512], notes[1024] = "";
  snprintf(msg, sizeof msg, "%s", bwt_last_error());
  int same = 0, step = -1;
  if (tr) {
    size_t bytes = sizeof(float) * k->st.P;
    step = tr->step;
    same = step == 2 && tr->model->n_params == k->st.P && memcmp(tr->model->params, k->st.params[2], bytes) == 0 &&
           memcmp(tr->adam_m, k->st.m[2], bytes) == 0 && memcmp(tr->adam_v, k->st.v[2], bytes) == 0;
    snprintf(notes, sizeof notes, "%s", tr->notes);
  }
  bwt_trainer_free(tr);
  size_t len = 0;
  char *now = read_all(k->log_path, &len);
  int log_same = now && len == k->n_log && memcmp(now, k->log, len) == 0;
  free(now);
  CHECK(fired, "%s did not happen", ctx);
  CHECK(s == BWT_STATUS_OK || !tr, "%s: a failed resume returned a trainer", ctx);
  CHECK(log_same, "%s: the resume %s but changed metrics.jsonl%s%s", ctx, s == BWT_STATUS_OK ? "succeeded" : "failed",
        *notes ? ": " : "", notes);
  if (s == BWT_STATUS_OK) {
    CHECK(same, "%s failed, the resume succeeded at step %d with other weights", ctx, step);
    CHECK(!*notes, "%s failed, the resume succeeded but reports: %s", ctx, notes);
    l->recovered++;
    return 0;
  }
  bwt_fail(s, "%s", msg);
  return check_alloc_failure(l, n, s);
}

static void test_alloc_resume(void **state) {
  (void)state;
  shown = 0;
  resume_case k;
  memset(&k, 0, sizeof k);
  bwt_run_config c = tiny_config(16, 4, 0, 1);
  step_states_make(&k.st, &c);
  fault_tmpdir(k.dir, sizeof k.dir, "alloc_resume");
  path_in(k.log_path, sizeof k.log_path, k.dir, "metrics.jsonl");
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  tr->stop_after = 2;
  assert_int_equal(bwt_train_run(tr, k.dir, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  k.log = read_all(k.log_path, &k.n_log);
  assert_non_null(k.log);
  bwt_fault_arm(BWT_FAULT_ALLOC, 0);
  assert_int_equal(bwt_trainer_resume(&tr, k.dir), BWT_STATUS_OK);
  long count = bwt_fault_count(BWT_FAULT_ALLOC);
  assert_int_equal(tr->step, 2);
  assert_string_equal(tr->notes, "");
  bwt_trainer_free(tr);
  alloc_loop l = {"bwt_trainer_resume", 0, 0, 0, 0, 0};
  for (long n = 1; n <= count; n++) l.failed += resume_point(&l, n, &k), l.points++;
  free(k.log);
  step_states_free(&k.st);
  alloc_loop_end(&l);
}

int main(void) {
  const char *show = getenv("BWT_FAULTS_SHOW");
  if (show && *show) show_max = atoi(show);
  bwt_alloc_hooks_install(); /* cJSON's allocations are counted (and failed) too */
  if (bwt_set_threads(1) != BWT_STATUS_OK) { /* one thread: the n-th allocation is always the same one */
    fprintf(stderr, "test_faults: %s\n", bwt_last_error());
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_io_faults),
      cmocka_unit_test(test_alloc_model_create),
      cmocka_unit_test(test_alloc_trainer_step),
      cmocka_unit_test(test_alloc_checkpoint),
      cmocka_unit_test(test_alloc_train_run),
      cmocka_unit_test(test_alloc_resume),
  };
  const char *skip = getenv("BWT_TEST_SKIP");
  if (skip && *skip) cmocka_set_skip_filter(skip);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  fault_tmpdirs_remove();
  return rc;
}
