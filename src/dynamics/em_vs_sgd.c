/* EM vs SGD on the sticky chain (bwt_em_vs_sgd in bwt/lab/single_head.h): two arms from identical starts
 * per seed, the speed-up as SPEC.md §6 defines it, and a paired comparison of the final losses. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "bwt/lab/plot.h"
#include "bwt/lab/single_head.h"
#include "em_config_json.h"
#include "bwt/task.h"

void bwt_em_result_free(bwt_em_result *r) {
  free(r->sgd), free(r->em), free(r->bayes_ce), free(r->em_cross), free(r->sgd_report), free(r->em_report);
  memset(r, 0, sizeof *r);
}

/* Exact two-sided p-value of the mean of d (n) under random sign flips: the share of the 2^n
 * flipped means at least as far from 0 as the observed one. */
static double sign_flip_p(const double *d, int n) {
  double observed = 0;
  for (int i = 0; i < n; i++) observed += d[i];
  long extreme = 0, total = 1L << n;
  for (long mask = 0; mask < total; mask++) {
    double s = 0;
    for (int i = 0; i < n; i++) s += mask >> i & 1 ? -d[i] : d[i];
    extreme += fabs(s) >= fabs(observed) * (1 - 1e-12);
  }
  return (double)extreme / total;
}

static bwt_status summarise(bwt_em_result *r, int n) {
  double sum = 0, *d = bwt_calloc(n, sizeof(double), "EM vs SGD"), *per = bwt_calloc(n, sizeof(double), "EM vs SGD");
  if (!d || !per) {
    free(d);
    free(per);
    return BWT_STATUS_NOMEM;
  }
  int steps = r->steps, crossed = 0;
  for (int i = 0; i < n; i++) sum += r->sgd[(size_t)i * (steps + 1) + steps];
  r->sgd_mean_final = sum / n;
  double cross_sum = 0;
  for (int i = 0; i < n; i++) {
    const double *em = r->em + (size_t)i * (steps + 1);
    r->em_cross[i] = -1;
    for (int t = 0; t <= steps; t++)
      if (em[t] < r->sgd_mean_final) {
        r->em_cross[i] = t;
        break;
      }
    if (r->em_cross[i] > 0) cross_sum += r->em_cross[i], per[crossed++] = (double)steps / r->em_cross[i];
    d[i] = r->sgd[(size_t)i * (steps + 1) + steps] - em[steps];
  }
  r->speedup = crossed == n ? steps / (cross_sum / n) : NAN;
  r->speedup_mean = r->speedup_sd = NAN;
  if (crossed == n) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += per[i] / n;
    for (int i = 0; i < n; i++) v += (per[i] - m) * (per[i] - m);
    r->speedup_mean = m;
    r->speedup_sd = n > 1 ? sqrt(v / (n - 1)) : NAN;
  }
  r->t_stat = r->p_exact = NAN;
  if (n > 1) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += d[i] / n;
    for (int i = 0; i < n; i++) v += (d[i] - m) * (d[i] - m);
    double se = sqrt(v / (n - 1) / n);
    r->t_stat = se > 0 ? m / se : NAN;
    if (n <= 20) r->p_exact = sign_flip_p(d, n);
  }
  free(d);
  free(per);
  return BWT_STATUS_OK;
}

bwt_status bwt_single_head_run(int T, uint64_t seed, bwt_routing mode, int steps, double lr, double lr_v,
                               double *loss, bwt_sh_report *report, double *bayes_ce) {
  bwt_sh_data *d = NULL;
  BWT_TRY(bwt_sh_data_create(&d, T, seed));
  bwt_single_head m;
  bwt_single_head_init(&m, seed);
  if (bayes_ce) *bayes_ce = bwt_sh_data_bayes_ce(d);
  bwt_status s = bwt_single_head_train(&m, d, mode, steps, lr, lr_v, loss);
  if (s == BWT_STATUS_OK && report) s = bwt_single_head_report(&m, d, mode, report);
  bwt_sh_data_free(d);
  return s;
}

bwt_status bwt_em_vs_sgd(const bwt_em_config *c, bwt_em_result *r, void (*progress)(void *ctx, int i, int n),
                         void *ctx) {
  memset(r, 0, sizeof *r);
  if (c->n_seeds < 1 || c->steps < 1 || !c->seeds)
    return bwt_fail(BWT_STATUS_ARG, "EM vs SGD needs at least one seed and one step");
  int n = c->n_seeds, len = c->steps + 1;
  r->n_seeds = n, r->steps = c->steps, r->floor_nats = bwt_sticky_floor_bits() * log(2.0);
  r->sgd = bwt_calloc((size_t)n * len, sizeof(double), "EM vs SGD");
  r->em = bwt_calloc((size_t)n * len, sizeof(double), "EM vs SGD");
  r->bayes_ce = bwt_calloc(n, sizeof(double), "EM vs SGD");
  r->em_cross = bwt_calloc(n, sizeof(int), "EM vs SGD");
  r->sgd_report = bwt_calloc(n, sizeof(bwt_sh_report), "EM vs SGD");
  r->em_report = bwt_calloc(n, sizeof(bwt_sh_report), "EM vs SGD");
  bwt_status s = r->sgd && r->em && r->bayes_ce && r->em_cross && r->sgd_report && r->em_report ? BWT_STATUS_OK
                                                                                                : BWT_STATUS_NOMEM;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++)
    for (int a = 0; s == BWT_STATUS_OK && a < 2; a++) { /* a = 0: SGD, 1: EM-like; the same start */
      s = bwt_single_head_run(c->T, c->seeds[i], c->routing, c->steps, c->lr, a ? c->lr_v : c->lr,
                              (a ? r->em : r->sgd) + (size_t)i * len, a ? &r->em_report[i] : &r->sgd_report[i],
                              &r->bayes_ce[i]);
      if (s == BWT_STATUS_OK && progress) progress(ctx, 2 * i + a + 1, 2 * n);
    }
  if (s == BWT_STATUS_OK) s = summarise(r, n);
  else bwt_em_result_free(r);
  return s;
}

static cJSON *report_json(const bwt_sh_report *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "entropy_mae_bits", r->entropy_mae_bits);
  cJSON_AddNumberToObject(o, "kl_bits", r->kl_bits);
  cJSON_AddNumberToObject(o, "manifold_pc1", r->pc1);
  cJSON_AddNumberToObject(o, "manifold_spearman_pc1_entropy", r->spearman);
  return o;
}

cJSON *bwt_em_config_json(const bwt_em_config *c) {
  cJSON *cfg = cJSON_CreateObject();
  cJSON_AddNumberToObject(cfg, "T", c->T);
  cJSON_AddNumberToObject(cfg, "steps", c->steps);
  cJSON_AddNumberToObject(cfg, "lr", c->lr);
  cJSON_AddNumberToObject(cfg, "lr_v", c->lr_v);
  cJSON_AddStringToObject(cfg, "routing", bwt_routing_name(c->routing));
  cJSON *seeds = cJSON_AddArrayToObject(cfg, "seeds");
  for (int i = 0; i < c->n_seeds; i++) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seeds[i]);
    cJSON_AddItemToArray(seeds, cJSON_CreateString(seed));
  }
  return cfg;
}

char *bwt_em_to_json(const bwt_em_config *c, const bwt_em_result *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddItemToObject(o, "config", bwt_em_config_json(c));
  cJSON_AddNumberToObject(o, "floor_nats", r->floor_nats);
  cJSON_AddNumberToObject(o, "sgd_mean_final_loss", r->sgd_mean_final);
  cJSON_AddNumberToObject(o, "speedup", r->speedup);
  cJSON_AddNumberToObject(o, "speedup_per_seed_mean", r->speedup_mean);
  cJSON_AddNumberToObject(o, "speedup_per_seed_sd", r->speedup_sd);
  cJSON_AddNumberToObject(o, "paired_t_final_sgd_minus_em", r->t_stat);
  cJSON_AddNumberToObject(o, "sign_flip_p", r->p_exact);
  cJSON *seeds = cJSON_AddArrayToObject(o, "seeds");
  for (int i = 0; i < r->n_seeds; i++) {
    const double *sgd = r->sgd + (size_t)i * (r->steps + 1), *em = r->em + (size_t)i * (r->steps + 1);
    cJSON *s = cJSON_CreateObject();
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seeds[i]);
    cJSON_AddStringToObject(s, "seed", seed);
    cJSON_AddNumberToObject(s, "bayes_ce_nats", r->bayes_ce[i]);
    cJSON_AddNumberToObject(s, "sgd_final", sgd[r->steps]);
    cJSON_AddNumberToObject(s, "em_final", em[r->steps]);
    cJSON_AddNumberToObject(s, "em_step_below_sgd_mean_final", r->em_cross[i]);
    cJSON_AddItemToObject(s, "sgd_report", report_json(&r->sgd_report[i]));
    cJSON_AddItemToObject(s, "em_report", report_json(&r->em_report[i]));
    cJSON_AddItemToObject(s, "sgd_loss", cJSON_CreateDoubleArray(sgd, r->steps + 1));
    cJSON_AddItemToObject(s, "em_loss", cJSON_CreateDoubleArray(em, r->steps + 1));
    cJSON_AddItemToArray(seeds, s);
  }
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}

/* Mean and min–max over seeds of curves (n_seeds, len) into mean, lo, hi (len). */
static void spread(const double *curves, int n, int len, double *mean, double *lo, double *hi) {
  for (int t = 0; t < len; t++) {
    mean[t] = 0, lo[t] = INFINITY, hi[t] = -INFINITY;
    for (int i = 0; i < n; i++) {
      double v = curves[(size_t)i * len + t];
      mean[t] += v / n, lo[t] = fmin(lo[t], v), hi[t] = fmax(hi[t], v);
    }
  }
}

bwt_status bwt_em_figure(const bwt_em_result *r, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  int len = r->steps + 1;
  double *buf = bwt_calloc(9 * (size_t)len, sizeof(double), "EM figure");
  if (!buf) return BWT_STATUS_NOMEM;
  double *x = buf, *sm = x + len, *sl = sm + len, *sh = sl + len, *em = sh + len, *el = em + len, *eh = el + len,
         *bayes = eh + len, *floor_line = bayes + len, bayes_mean = 0;
  for (int i = 0; i < r->n_seeds; i++) bayes_mean += r->bayes_ce[i] / r->n_seeds;
  for (int t = 0; t < len; t++) x[t] = t, bayes[t] = bayes_mean, floor_line[t] = r->floor_nats;
  spread(r->sgd, r->n_seeds, len, sm, sl, sh);
  spread(r->em, r->n_seeds, len, em, el, eh);
  bwt_plot_series s[4] = {{"SGD arm", x, sm, sl, sh, len, 0, 0},
                          {"EM-like arm (larger step on W_V)", x, em, el, eh, len, 0, 0},
                          {"exact posterior (Bayes cross-entropy)", x, bayes, NULL, NULL, len, 0, 0},
                          {"floor: knowing the last symbol", x, floor_line, NULL, NULL, len, 0, 0}};
  char path[4096], title[128];
  snprintf(path, sizeof path, "%s/em_vs_sgd", dir);
  snprintf(title, sizeof title, "Sticky chain, single head: mean over %d seeds (bands: min-max)", r->n_seeds);
  bwt_plot_axes ax = {title, "full-batch step", "cross-entropy (nats)", 0, 0};
  bwt_status st = bwt_plot_lines(path, &ax, s, 4);
  free(buf);
  return st;
}
