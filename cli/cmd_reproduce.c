/* bwt reproduce NAME: runs a declared grid (cli/reproduce_grids.c) of task × model × seed, skips
 * finished cells and resumes interrupted ones, evaluates each, and writes a table (Markdown and
 * CSV) with the mean and 95% interval over seeds beside the papers' figures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/report.h"
#include "commands.h"
#include "options.h"
#include "parallel.h"
#include "progress.h"
#include "reproduce.h"

#define MAX_SEEDS 100
#define REPRO_FLAGS_MAX 2048 /* a cell's flags with its "@CELL" references resolved */
/* The run config of a cell's flags plus `extra`, checked as bwt train checks it. */
static int parse_cell(const char *flags, const char *extra, run_options *o) {
  char all[REPRO_FLAGS_MAX + 512];
  snprintf(all, sizeof all, "%s %s", flags, extra);
  run_options_default(o);
  int rc = run_options_parse_flags(o, all, "reproduce");
  return rc ? rc : run_options_finish(o, "reproduce");
}

/* The cell's flags for `preset` with each "@CELL" replaced by that cell's run of this seed, out/CELL/seedN;
 * 2 with a message when they do not fit. */
static int resolve_flags(const repro_cell *c, repro_preset preset, const char *out, int seed, char *buf, size_t cap) {
  if (strchr(c->flags[preset], '@') && strpbrk(out, " \t\n")) { /* flags are split at white space */
    fprintf(stderr, "bwt reproduce: cell %s starts from another cell's run, so --out must not contain white space\n", c->name);
    return 2;
  }
  size_t len = 0;
  for (const char *f = c->flags[preset]; *f && len < cap; f++)
    if (*f == '@') {
      size_t name = strcspn(f + 1, " ");
      len += (size_t)snprintf(buf + len, cap - len, "%s/%.*s/seed%d", out, (int)name, f + 1, seed);
      f += name;
    } else {
      buf[len++] = *f;
    }
  if (len >= cap) {
    fprintf(stderr, "bwt reproduce: cell %s: flags too long\n", c->name);
    return 2;
  }
  buf[len] = '\0';
  return 0;
}

/* A fresh run of the cell's flags plus `extra` into dir. */
static int start_run(const char *flags, const char *extra, const char *dir, const char *label) {
  run_options o;
  int rc = parse_cell(flags, extra, &o);
  if (rc) return rc;
  bwt_trainer *tr = NULL;
  if (bwt_run_dir_prepare(dir) != BWT_STATUS_OK || bwt_trainer_create(&tr, &o.cfg) != BWT_STATUS_OK)
    return cli_error("reproduce");
  rc = train_with_progress(tr, dir, label, "reproduce");
  bwt_trainer_free(tr);
  return rc;
}

/* --dry-run: every cell's configuration, checked, and nothing trained. */
static int dry_run(const repro_grid *g, repro_preset preset, const char *out) {
  for (int i = 0; i < g->n_cells; i++) {
    const repro_cell *c = &g->cells[i];
    if (!c->flags[preset]) continue;
    run_options o;
    char flags[REPRO_FLAGS_MAX];
    int rc = resolve_flags(c, preset, out, 1, flags, sizeof flags);
    if (!rc) rc = parse_cell(flags, "", &o);
    if (rc) return rc;
    bwt_model *m = NULL;
    if (bwt_model_create(&m, &o.cfg.model, 1) != BWT_STATUS_OK) return cli_error("reproduce");
    char task[128];
    printf("%-23s %-34s %-11s d %-3d layers %d  %8zu params  %6d steps  batch %d%s%s\n", c->name,
           bwt_task_config_describe(&o.cfg.task, task, sizeof task), bwt_arch_name(o.cfg.model.arch),
           o.cfg.model.d_model, o.cfg.model.n_layers, m->n_params, o.cfg.train.steps, o.cfg.train.batch,
           *o.cfg.train.init_from ? "  from " : "", o.cfg.train.init_from);
    bwt_model_free(m);
  }
  return 0;
}

static int resume_run(const char *dir, const char *label, int threads) {
  bwt_trainer *tr = NULL;
  if (bwt_trainer_resume(&tr, dir) != BWT_STATUS_OK) return cli_error("reproduce");
  if (threads > 0) tr->cfg.train.threads = threads;
  if (bwt_set_threads(tr->cfg.train.threads) != BWT_STATUS_OK) {
    bwt_trainer_free(tr);
    return cli_error("reproduce");
  }
  fprintf(stderr, "resuming %s at step %d of %d\n", dir, tr->step, tr->cfg.train.steps);
  int rc = train_with_progress(tr, dir, label, "reproduce");
  bwt_trainer_free(tr);
  return rc;
}

/* Evaluates dir's checkpoint with the task overrides in eval_flags into path. */
static int extra_eval(const char *dir, const char *eval_flags, const char *path) {
  char ckpt[4200];
  run_options given;
  task_overrides_init(&given);
  int rc = run_options_parse_flags(&given, eval_flags, "reproduce");
  if (rc) return rc;
  snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", dir);
  bwt_run run;
  if (bwt_run_open(&run, ckpt, BWT_RUN_THREADS_KEEP, BWT_RUN_NO_TASK) != BWT_STATUS_OK) return cli_error("reproduce");
  if ((rc = task_overrides_apply(&run.cfg.task, &given.cfg.task, "reproduce"))) return bwt_run_close(&run), rc;
  const bwt_train_config *t = &run.cfg.train;
  bwt_eval_result r;
  memset(&r, 0, sizeof r);
  bwt_status s = bwt_run_create_task(&run);
  if (s == BWT_STATUS_OK) s = bwt_evaluate(run.model, run.task, t->eval_seed, t->eval_seqs, t->batch, &r);
  if (s == BWT_STATUS_OK) s = bwt_eval_write_json(path, &r);
  bwt_eval_result_free(&r);
  bwt_run_close(&run);
  return s == BWT_STATUS_OK ? 0 : cli_error("reproduce");
}

static void eval_path(char *buf, size_t cap, const char *dir, int e) {
  if (e == 0) snprintf(buf, cap, "%s/eval.json", dir);
  else snprintf(buf, cap, "%s/eval_%d.json", dir, e);
}

/* Whether the cell and seed has finished: its run, its evaluations and its "done" marker. */
static int cell_done(const char *out, const char *cell, int seed) {
  char marker[4200];
  snprintf(marker, sizeof marker, "%s/%s/seed%d/done", out, cell, seed);
  return bwt_path_exists(marker);
}

/* Whether every cell this one starts from (an "@CELL" in its flags) is done for this seed. */
static int inputs_done(const repro_cell *c, repro_preset preset, const char *out, int seed) {
  for (const char *f = strchr(c->flags[preset], '@'); f; f = strchr(f + 1, '@')) {
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(f + 1, " "), f + 1);
    if (!cell_done(out, name, seed)) return 0;
  }
  return 1;
}

/* One cell and seed: resumed when a checkpoint exists, else started; then its evaluations. */
static int run_cell(const repro_cell *c, repro_preset preset, int seed, const char *out, int steps, int threads) {
  char dir[4096], marker[4200], path[4200], extra[256], flags[REPRO_FLAGS_MAX];
  snprintf(dir, sizeof dir, "%s/%s/seed%d", out, c->name, seed);
  snprintf(marker, sizeof marker, "%s/done", dir);
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
  int rc;
  if (bwt_path_exists(path)) {
    rc = resume_run(dir, c->name, threads);
  } else {
    int n = snprintf(extra, sizeof extra, "--seed %d --threads %d", seed, threads);
    if (steps > 0) snprintf(extra + n, sizeof extra - n, " --steps %d --warmup %d --ckpt-every 0", steps, steps / 10);
    fprintf(stderr, "%s seed %d: training into %s\n", c->name, seed, dir);
    rc = resolve_flags(c, preset, out, seed, flags, sizeof flags);
    if (!rc) rc = start_run(flags, extra, dir, c->name);
  }
  if (rc) return rc;
  for (int e = 1; e < REPRO_MAX_EVALS && c->evals[e].label; e++) {
    eval_path(path, sizeof path, dir, e);
    if ((rc = extra_eval(dir, c->evals[e].eval_flags, path))) return rc;
  }
  return bwt_write_file_atomic(marker, "done\n", 5) == BWT_STATUS_OK ? 0 : cli_error("reproduce");
}

/* Trains every cell and seed of the grid that is not done, together with any other processes doing
 * the same (the ranks of an MPI job, or separate invocations): each cell is claimed before it is
 * trained (its file CELL/seedN.claim, flock'ed), a claimed cell is left to its claimant, and a cell
 * that starts from another waits for it. Seed-major, so a partial grid has every cell once. Returns
 * when every cell is done (waiting for the others' if need be), or the exit code of a failure. */
static int run_grid(const repro_grid *g, repro_preset preset, int seeds, const char *out, int steps, int threads) {
  int cells = 0, first_pass = 1, waited_for = -1;
  for (int i = 0; i < g->n_cells; i++) cells += g->cells[i].flags[preset] != NULL;
  for (;;) {
    int done = 0, ran = 0;
    for (int s = 1; s <= seeds; s++)
      for (int i = 0; i < g->n_cells; i++) {
        const repro_cell *c = &g->cells[i];
        if (!c->flags[preset]) continue;
        if (cell_done(out, c->name, s)) {
          if (first_pass) fprintf(stderr, "%s seed %d: done, skipped\n", c->name, s);
          done++;
          continue;
        }
        if (!inputs_done(c, preset, out, s)) continue;
        char path[4200];
        int claim = -1;
        snprintf(path, sizeof path, "%s/%s", out, c->name);
        if (bwt_mkdir_p(path) != BWT_STATUS_OK) return cli_error("reproduce");
        snprintf(path, sizeof path, "%s/%s/seed%d.claim", out, c->name, s);
        if (bwt_claim(path, &claim) != BWT_STATUS_OK) return cli_error("reproduce");
        if (claim < 0) continue; /* another process is training it */
        int rc = 0;
        if (!cell_done(out, c->name, s)) { /* it may have finished since we looked */
          if (parallel_size() > 1) fprintf(stderr, "rank %d: ", parallel_rank());
          fprintf(stderr, "[%d/%d] ", done + 1, cells * seeds);
          rc = run_cell(c, preset, s, out, steps, threads);
          ran++;
        }
        bwt_dir_unlock(claim);
        if (rc) return rc;
        done++;
      }
    first_pass = 0;
    if (done == cells * seeds) return 0;
    if (!ran) { /* everything left is someone else's, or waits for it */
      if (waited_for != cells * seeds - done)
        fprintf(stderr, "bwt reproduce: waiting for %d cell runs that other processes hold\n", cells * seeds - done);
      waited_for = cells * seeds - done;
      for (int t = 0; t < 20 && !bwt_stop_requested(); t++) nanosleep(&(struct timespec){0, 100000000}, NULL);
      if (bwt_stop_requested()) return 130;
    }
  }
}

/* Two-sided 95% Student t quantile for df degrees of freedom. */
static double t975(int df) {
  static const double t[] = {0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086};
  return df < 1 ? NAN : df <= 20 ? t[df] : 1.96 + 2.4 / df;
}

typedef struct {
  int n;
  double mean, half; /* mean and half-width of the 95% interval (NaN with one seed) */
} stat;

static stat summarise(const double *x, int n) {
  stat s = {0, 0, NAN};
  for (int i = 0; i < n; i++)
    if (isfinite(x[i])) s.mean += x[i], s.n++;
  if (!s.n) return (stat){0, NAN, NAN};
  s.mean /= s.n;
  if (s.n > 1) {
    double ss = 0;
    for (int i = 0; i < n; i++)
      if (isfinite(x[i])) ss += (x[i] - s.mean) * (x[i] - s.mean);
    s.half = t975(s.n - 1) * sqrt(ss / (s.n - 1) / s.n);
  }
  return s;
}

/* overall.<key> of an eval.json, NaN if absent or null. */
static double read_metric(const char *path, const char *key) {
  char *text = NULL;
  size_t len;
  if (bwt_read_file(path, &text, &len) != BWT_STATUS_OK) return NAN;
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "overall"), key);
  double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
  cJSON_Delete(root);
  return x;
}

static void fmt_stat(char *buf, size_t cap, stat s, double scale, int digits) {
  if (!s.n) snprintf(buf, cap, "—");
  else if (isnan(s.half)) snprintf(buf, cap, "%.*f", digits, s.mean * scale);
  else snprintf(buf, cap, "%.*f ± %.*f", digits, s.mean * scale, digits, s.half * scale);
}

static int write_tables(const repro_grid *g, const char *out, int n_seeds, repro_preset preset) {
  char md_path[4200], csv_path[4200];
  snprintf(md_path, sizeof md_path, "%s/results.md", out);
  snprintf(csv_path, sizeof csv_path, "%s/results.csv", out);
  size_t cap = 1 << 16, mlen = 0, clen = 0;
  char *md = malloc(cap), *csv = malloc(cap);
  if (!md || !csv) return free(md), free(csv), fprintf(stderr, "bwt reproduce: out of memory\n"), 1;
#define MD(...) (mlen += (size_t)snprintf(md + mlen, mlen < cap ? cap - mlen : 0, __VA_ARGS__))
#define CSV(...) (clen += (size_t)snprintf(csv + clen, clen < cap ? cap - clen : 0, __VA_ARGS__))
  MD("# bwt reproduce %s (--preset %s, %d seeds)\n\n%s.\nEntropy MAE and KL(q||p) in bits against the exact posterior; "
     "mean ± half-width of the 95%% interval over seeds (Student t). Runs: %s/<cell>/seed<k>/.\n\n",
     g->name, repro_preset_names[preset], n_seeds, g->summary, out);
  MD("| experiment | model / evaluation | seeds | entropy MAE | KL | accuracy | papers report |\n|---|---|---|---|---|---|---|\n");
  CSV("experiment,row,seeds,entropy_mae_mean,entropy_mae_ci95,kl_bits_mean,kl_bits_ci95,accuracy_mean,accuracy_ci95,reported\n");
  for (int i = 0; i < g->n_cells; i++) {
    const repro_cell *c = &g->cells[i];
    if (!c->flags[preset]) continue;
    for (int e = 0; e < REPRO_MAX_EVALS && c->evals[e].label; e++) {
      double mae[MAX_SEEDS], kl[MAX_SEEDS], acc[MAX_SEEDS];
      for (int s = 0; s < n_seeds; s++) {
        char dir[4096], path[4200];
        snprintf(dir, sizeof dir, "%s/%s/seed%d", out, c->name, s + 1);
        eval_path(path, sizeof path, dir, e);
        mae[s] = read_metric(path, "entropy_mae");
        kl[s] = read_metric(path, "kl_bits");
        acc[s] = read_metric(path, "accuracy");
      }
      stat sm = summarise(mae, n_seeds), sk = summarise(kl, n_seeds), sa = summarise(acc, n_seeds);
      char a[64], b[64], d[64];
      fmt_stat(a, sizeof a, sm, 1, 4), fmt_stat(b, sizeof b, sk, 1, 4), fmt_stat(d, sizeof d, sa, 100, 1);
      MD("| %s | %s | %d | %s | %s | %s%s | %s |\n", c->experiment, c->evals[e].label, sm.n, a, b, d,
         sa.n ? "%" : "", *c->evals[e].reported ? c->evals[e].reported : "—");
      CSV("\"%s\",\"%s\",%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,\"%s\"\n", c->experiment, c->evals[e].label, sm.n,
          sm.mean, sm.half, sk.mean, sk.half, sa.mean, sa.half, c->evals[e].reported);
    }
  }
#undef MD
#undef CSV
  int ok = mlen < cap && clen < cap && bwt_write_file_atomic(md_path, md, mlen) == BWT_STATUS_OK &&
           bwt_write_file_atomic(csv_path, csv, clen) == BWT_STATUS_OK;
  if (ok) printf("%s\nwrote %s and %s\n", md, md_path, csv_path);
  free(md);
  free(csv);
  return ok ? 0 : cli_error("reproduce");
}

int cmd_reproduce(int argc, char **argv) {
  char preset_name[OPT_STRING_MAX] = "cpu", out[OPT_STRING_MAX] = "";
  int seeds = 3, threads = 0, steps = 0, dry = 0;
  cli_option opts[] = {
      {"preset", OPT_STRING, preset_name, "cpu (the papers' accuracy on a 2-core CPU: 0.5-2 hours per transformer cell) | quick (small models, 3000 steps: under 30 min on 2 cores) | paper (the papers' sizes)"},
      {"seeds", OPT_INT, &seeds, "seeds 1..N per cell"},
      {"out", OPT_STRING, out, "directory of the runs and tables (default runs/reproduce/NAME-PRESET)"},
      {"steps", OPT_INT, &steps, "override every cell's steps (0 = the grid's; for trying the pipeline)"},
      threads_option(&threads, NULL),
      {"dry-run", OPT_FLAG, &dry, "check and list every cell's configuration; train nothing"},
  };
  char summary[1024];
  int len = snprintf(summary, sizeof summary,
                     "Runs a declared grid of task x model x seed, skipping finished runs and resuming\n"
                     "interrupted ones (Ctrl-C stops with a checkpoint; run the same command again), then\n"
                     "writes results.md and results.csv beside the papers' figures. Grids:");
  for (int i = 0; i < repro_n_grids; i++)
    len += snprintf(summary + len, sizeof summary - (size_t)len, "\n  %-10s %s", repro_grids[i].name, repro_grids[i].summary);
  cli_spec spec = {"reproduce", "NAME [options]", summary, opts, (int)(sizeof opts / sizeof opts[0]), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  const repro_grid *g = repro_find_grid(pos[0]);
  if (!g) {
    fprintf(stderr, "bwt reproduce: unknown grid '%s' (known: paper1, boundary)\n", pos[0]);
    return 2;
  }
  int preset = repro_preset_parse(preset_name);
  if (preset < 0) {
    fprintf(stderr, "bwt reproduce: unknown preset '%s' (known: cpu, quick, paper)\n", preset_name);
    return 2;
  }
  if (seeds < 1 || seeds > MAX_SEEDS || steps < 0 || threads < 0) {
    fprintf(stderr, "bwt reproduce: --seeds must be in 1..%d, --steps and --threads >= 0\n", MAX_SEEDS);
    return 2;
  }
  if (!*out) snprintf(out, sizeof out, "runs/reproduce/%.64s-%s", g->name, repro_preset_names[preset]);
  if (dry) return dry_run(g, (repro_preset)preset, out);
  if (bwt_mkdir_p(out) != BWT_STATUS_OK) return cli_error("reproduce");
  progress_catch_interrupt();
  rc = run_grid(g, (repro_preset)preset, seeds, out, steps, threads);
  if (rc == 130) fprintf(stderr, "bwt reproduce: interrupted; run the same command again to resume\n");
  /* Every process (MPI rank) saw every cell done; one of them writes the tables. */
  return rc || parallel_rank() != 0 ? rc : write_tables(g, out, seeds, (repro_preset)preset);
}
