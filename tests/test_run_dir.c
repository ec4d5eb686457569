/* Run directories under stress (issue 11, items 1-3 and 9): a stop before the first step, two
 * writers of one directory, a damaged or over-long metrics log, a finished run resumed, a stop
 * during the final evaluation. Each case states the behaviour the run directory must have. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/train.h"
#include "testutil.h"

static bwt_run_config tiny(int steps) {
  bwt_run_config c = test_bijection_config(5, 8, 2, 2);
  c.train.steps = steps, c.train.batch = 8, c.train.warmup = 2, c.train.lr = 3e-3;
  c.train.eval_seqs = 32, c.train.ckpt_every = 5, c.train.log_every = 2, c.train.eval_every = 10;
  c.train.threads = 1;
  return c;
}

static void path_in(char *buf, size_t n, const char *dir, const char *file) { snprintf(buf, n, "%s/%s", dir, file); }

/* A fresh run of c into dir, stopped after stop_after steps (0: to the end). */
static void run_fresh(const bwt_run_config *c, const char *dir, int stop_after) {
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, c), BWT_STATUS_OK);
  tr->stop_after = stop_after;
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
}

/* Resumes dir to the end (or stop_after); returns the trainer's notes in notes (cap bytes). */
static void run_resume(const char *dir, int stop_after, char *notes, size_t cap) {
  bwt_trainer *tr = NULL;
  if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) fail_msg("resume %s: %s", dir, bwt_last_error());
  if (notes) snprintf(notes, cap, "%s", tr->notes);
  tr->stop_after = stop_after;
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
}

/* The log's lines without their wall-time fields, as one string (caller frees). */
static char *log_without_times(const char *dir) {
  char path[1100], *text = NULL;
  size_t n = 0;
  path_in(path, sizeof path, dir, "metrics.jsonl");
  assert_int_equal(bwt_read_file(path, &text, &n), BWT_STATUS_OK);
  size_t cap = n + 1, len = 0;
  char *out = calloc(cap, 1);
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    cJSON *o = cJSON_Parse(line);
    if (!o) fail_msg("%s: a line is not JSON: %.80s", path, line);
    cJSON_DeleteItemFromObject(o, "elapsed_s");
    cJSON_DeleteItemFromObject(o, "train_s");
    cJSON_DeleteItemFromObject(o, "tokens_per_s");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t sl = strlen(s);
    assert_true(len + sl + 1 < cap);
    memcpy(out + len, s, sl);
    len += sl;
    out[len++] = '\n';
    free(s);
  }
  free(text);
  return out;
}

static void assert_same_weights(const char *dir_a, const char *dir_b) {
  char pa[1100], pb[1100];
  path_in(pa, sizeof pa, dir_a, "checkpoint.safetensors");
  path_in(pb, sizeof pb, dir_b, "checkpoint.safetensors");
  bwt_run_config ca, cb;
  bwt_model *ma = NULL, *mb = NULL;
  float *am, *av, *bm, *bv;
  int sa, sb;
  assert_int_equal(bwt_checkpoint_load(pa, &ca, &ma, &am, &av, &sa), BWT_STATUS_OK);
  assert_int_equal(bwt_checkpoint_load(pb, &cb, &mb, &bm, &bv, &sb), BWT_STATUS_OK);
  assert_int_equal(sa, sb);
  assert_int_equal(ma->n_params, mb->n_params);
  assert_memory_equal(ma->params, mb->params, sizeof(float) * ma->n_params);
  assert_memory_equal(am, bm, sizeof(float) * ma->n_params);
  assert_memory_equal(av, bv, sizeof(float) * ma->n_params);
  free(am), free(av), free(bm), free(bv);
  bwt_model_free(ma);
  bwt_model_free(mb);
}

/* Item 1: a stop requested before the first step (Ctrl-C during start-up) saves a step-0
 * checkpoint that --resume continues (it used to refuse it: "already holds a run"). The stop flag
 * lasts for the process, so the interrupted run happens in a child process. */
static void test_stop_before_first_step(void **state) {
  bwt_run_config c = tiny(20);
  char ref[1024], dir[1024];
  snprintf(ref, sizeof ref, "%s", test_tmpdir("rd_stop0_ref"));
  snprintf(dir, sizeof dir, "%s", test_tmpdir("rd_stop0"));
  run_fresh(&c, ref, 0);
  pid_t pid = fork();
  if (pid == 0) {
    bwt_request_stop();
    bwt_trainer *tr = NULL;
    int ok = bwt_trainer_create(&tr, &c) == BWT_STATUS_OK && bwt_train_run(tr, dir, NULL, NULL) == BWT_STATUS_OK && tr->step == 0;
    bwt_trainer_free(tr);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char ckpt[1100];
  path_in(ckpt, sizeof ckpt, dir, "checkpoint.safetensors");
  assert_true(bwt_path_exists(ckpt));
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_resume(&tr, dir), BWT_STATUS_OK);
  assert_int_equal(tr->step, 0);
  assert_true(tr->resumed);
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  assert_int_equal(tr->step, 20);
  bwt_trainer_free(tr);
  assert_same_weights(ref, dir);
  char *a = log_without_times(ref), *b = log_without_times(dir);
  assert_string_equal(a, b);
  free(a), free(b);
}

/* Item 2: one writer per run directory. While a trainer holds it, a resume and a fresh start into
 * it both fail at once, naming the holder's pid. */
static void test_one_writer(void **state) {
  bwt_run_config c = tiny(10);
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", test_tmpdir("rd_lock"));
  run_fresh(&c, dir, 4);
  bwt_trainer *holder = NULL, *other = NULL;
  assert_int_equal(bwt_trainer_resume(&holder, dir), BWT_STATUS_OK);
  char pid[64];
  snprintf(pid, sizeof pid, "in use by pid %ld", (long)getpid());
  assert_int_equal(bwt_trainer_resume(&other, dir), BWT_STATUS_IO);
  if (!strstr(bwt_last_error(), pid)) fail_msg("'%s' lacks '%s'", bwt_last_error(), pid);
  assert_null(other);
  assert_int_equal(bwt_trainer_create(&other, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(other, dir, NULL, NULL), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), "in use by pid"));
  bwt_trainer_free(other);
  /* Freed, the lock is free again. */
  bwt_trainer_free(holder);
  assert_int_equal(bwt_trainer_resume(&other, dir), BWT_STATUS_OK);
  bwt_trainer_free(other);
}

/* Item 3: on resume the log is cut back to what the checkpoint covers, damaged lines (a NUL byte,
 * not JSON, a cut last line) are dropped with a warning and no later line is lost with them, and
 * the result is the log of an uninterrupted run. */
static void test_log_repair(void **state) {
  bwt_run_config c = tiny(20);
  char ref[1024], dir[1024];
  snprintf(ref, sizeof ref, "%s", test_tmpdir("rd_log_ref"));
  snprintf(dir, sizeof dir, "%s", test_tmpdir("rd_log"));
  run_fresh(&c, ref, 0);
  run_fresh(&c, dir, 10); /* a checkpoint at step 10 */
  /* Damage: a NUL in a line before the checkpoint's step would once drop every later line; a line
   * that is not JSON; lines past the checkpoint; and a last line cut short. */
  char path[1100], *text = NULL;
  size_t n = 0;
  path_in(path, sizeof path, dir, "metrics.jsonl");
  assert_int_equal(bwt_read_file(path, &text, &n), BWT_STATUS_OK);
  char *second = strchr(text, '\n') + 1;
  size_t head = (size_t)(second - text);
  char damaged[65536];
  assert_true(n + 200 < sizeof damaged);
  memcpy(damaged, text, head);
  memcpy(damaged + head, "{\"step\":3,\0\"loss\":1}\nnot json at all\n", 37);
  memcpy(damaged + head + 37, second, n - head);
  size_t len = head + 37 + (n - head);
  const char *tail = "{\"step\":12,\"loss\":2}\n{\"step\":14,\"lo";
  memcpy(damaged + len, tail, strlen(tail));
  len += strlen(tail);
  assert_int_equal(bwt_write_file_atomic(path, damaged, len), BWT_STATUS_OK);
  free(text);
  char notes[1024];
  run_resume(dir, 0, notes, sizeof notes);
  if (!strstr(notes, "dropped 2 damaged lines") || !strstr(notes, "incomplete last line") || !strstr(notes, "past the checkpoint"))
    fail_msg("notes: '%s'", notes);
  char *a = log_without_times(ref), *b = log_without_times(dir);
  assert_string_equal(a, b);
  free(a), free(b);
  assert_same_weights(ref, dir);
}

/* Item 3: --stop-after leaves no line an uninterrupted run does not have; resuming a finished run,
 * or one whose eval.json could not be written, writes the final evaluation once. */
static void test_log_stops_and_finished_runs(void **state) {
  bwt_run_config c = tiny(20);
  char ref[1024], dir[1024];
  snprintf(ref, sizeof ref, "%s", test_tmpdir("rd_fin_ref"));
  snprintf(dir, sizeof dir, "%s", test_tmpdir("rd_fin"));
  run_fresh(&c, ref, 0);
  run_fresh(&c, dir, 3);
  run_resume(dir, 7, NULL, 0);
  run_resume(dir, 13, NULL, 0);
  run_resume(dir, 0, NULL, 0);
  run_resume(dir, 0, NULL, 0); /* finished: evaluates again and writes the final line once */
  char eval_path[1100];
  path_in(eval_path, sizeof eval_path, dir, "eval.json");
  remove(eval_path); /* as if writing eval.json had failed */
  char notes[1024];
  run_resume(dir, 0, notes, sizeof notes);
  assert_string_equal(notes, "");
  assert_true(bwt_path_exists(eval_path));
  char *a = log_without_times(ref), *b = log_without_times(dir);
  assert_string_equal(a, b);
  free(a), free(b);
  assert_same_weights(ref, dir);
}

/* Item 9: a stop during the final evaluation ends it (it used to run to the end, ignoring Ctrl-C)
 * with BWT_STATUS_STOPPED, the checkpoint saved and no eval.json; a resume finishes it. */
static void test_stop_during_final_evaluation(void **state) {
  bwt_run_config c = tiny(6);
  c.train.eval_seqs = 4000, c.train.eval_every = 0;
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", test_tmpdir("rd_stop_eval"));
  run_fresh(&c, dir, 5);
  /* The evaluator alone: a stop request ends it between batches. */
  pid_t pid = fork();
  if (pid == 0) {
    bwt_trainer *tr = NULL;
    if (bwt_trainer_create(&tr, &c) != BWT_STATUS_OK) _exit(2);
    bwt_request_stop();
    bwt_eval_result r;
    memset(&r, 0, sizeof r);
    int ok = bwt_evaluate(tr->model, tr->task, 1, 100, 10, &r) == BWT_STATUS_STOPPED && strstr(bwt_last_error(), "0 of 100");
    bwt_trainer_free(tr);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* The run itself: in a child, a run at its last step whose final evaluation a stop interrupts
   * (the finished run's eval.json removed, so its resume evaluates again, and is stopped). */
  char eval_path[1100];
  path_in(eval_path, sizeof eval_path, dir, "eval.json");
  run_resume(dir, 0, NULL, 0);
  assert_int_equal(remove(eval_path), 0);
  pid = fork();
  if (pid == 0) {
    bwt_trainer *tr = NULL;
    bwt_request_stop();
    tr = NULL;
    if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) _exit(4);
    int ok = bwt_train_run(tr, dir, NULL, NULL) == BWT_STATUS_STOPPED;
    bwt_trainer_free(tr);
    _exit(ok ? 0 : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_false(bwt_path_exists(eval_path));
  run_resume(dir, 0, NULL, 0);
  assert_true(bwt_path_exists(eval_path));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stop_before_first_step),
      cmocka_unit_test(test_one_writer),
      cmocka_unit_test(test_log_repair),
      cmocka_unit_test(test_log_stops_and_finished_runs),
      cmocka_unit_test(test_stop_during_final_evaluation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
