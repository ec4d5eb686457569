/* Opening an existing run for reading: the sequence every analysis command starts with. */
#include <stdio.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/train.h"

void bwt_run_paths(const char *where, char *path, char *dir, size_t cap) {
  size_t len = strlen(where);
  snprintf(dir, cap, "%s", where);
  if (len >= 12 && strcmp(where + len - 12, ".safetensors") == 0) {
    snprintf(path, cap, "%s", where);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, cap, ".");
  } else {
    snprintf(path, cap, "%s/checkpoint.safetensors", where);
  }
}

bwt_status bwt_run_open(bwt_run *run, const char *where, int threads, unsigned flags) {
  memset(run, 0, sizeof *run);
  bwt_run_paths(where, run->path, run->dir, sizeof run->path);
  int late = threads == BWT_RUN_THREADS_OWN || (flags & BWT_RUN_THREADS_AFTER);
  if (threads >= 0 && !late) BWT_TRY(bwt_set_threads(threads));
  BWT_TRY(bwt_checkpoint_load(run->path, &run->cfg, &run->model, NULL, NULL, &run->step));
  bwt_status s = BWT_STATUS_OK;
  if (late && threads != BWT_RUN_THREADS_KEEP) s = bwt_set_threads(threads >= 0 ? threads : run->cfg.train.threads);
  if (s == BWT_STATUS_OK && !(flags & BWT_RUN_NO_TASK)) s = bwt_run_create_task(run);
  if (s != BWT_STATUS_OK) bwt_run_close(run);
  return s;
}

bwt_status bwt_run_create_task(bwt_run *run) {
  bwt_task_free(run->task);
  run->task = NULL;
  return bwt_task_create(&run->task, &run->cfg.task);
}

void bwt_run_close(bwt_run *run) {
  bwt_task_free(run->task);
  bwt_model_free(run->model);
  run->task = NULL;
  run->model = NULL;
}
