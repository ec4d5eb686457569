/* Falsification modes on the single head (bwt_falsify in bwt/lab/single_head.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "bwt/lab/plot.h"
#include "bwt/lab/single_head.h"
#include "em_config_json.h"

void bwt_falsify_free(bwt_falsify_result *r) {
  free(r->modes), free(r->loss), free(r->report), free(r->bayes_ce);
  memset(r, 0, sizeof *r);
}

bwt_status bwt_falsify(const bwt_em_config *c, const bwt_routing *modes, int n_modes, bwt_falsify_result *r,
                       void (*progress)(void *ctx, int i, int n), void *ctx) {
  memset(r, 0, sizeof *r);
  if (n_modes < 1 || c->n_seeds < 1 || c->steps < 1 || !c->seeds)
    return bwt_fail(BWT_STATUS_ARG, "falsification needs a mode, a seed and a step");
  int n = c->n_seeds, len = c->steps + 1;
  *r = (bwt_falsify_result){n_modes, n, c->steps, NULL, NULL, NULL, NULL};
  r->modes = bwt_calloc(n_modes, sizeof *r->modes, "falsify");
  r->loss = bwt_calloc((size_t)n_modes * n * len, sizeof(double), "falsify");
  r->report = bwt_calloc((size_t)n_modes * n, sizeof *r->report, "falsify");
  r->bayes_ce = bwt_calloc(n, sizeof(double), "falsify");
  bwt_status s = r->modes && r->loss && r->report && r->bayes_ce ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) memcpy(r->modes, modes, sizeof *modes * n_modes);
  for (int m = 0; s == BWT_STATUS_OK && m < n_modes; m++)
    for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
      s = bwt_single_head_run(c->T, c->seeds[i], modes[m], c->steps, c->lr, c->lr_v,
                              r->loss + ((size_t)m * n + i) * len, &r->report[m * n + i], &r->bayes_ce[i]);
      if (s == BWT_STATUS_OK && progress) progress(ctx, m * n + i + 1, n_modes * n);
    }
  if (s != BWT_STATUS_OK) bwt_falsify_free(r);
  return s;
}

char *bwt_falsify_to_json(const bwt_em_config *c, const bwt_falsify_result *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddItemToObject(o, "config", bwt_em_config_json(c));
  cJSON_AddItemToObject(o, "bayes_ce_nats", cJSON_CreateDoubleArray(r->bayes_ce, r->n_seeds));
  cJSON *modes = cJSON_AddArrayToObject(o, "modes");
  int len = r->steps + 1;
  for (int m = 0; m < r->n_modes; m++) {
    cJSON *mo = cJSON_CreateObject();
    cJSON_AddStringToObject(mo, "routing", bwt_routing_name(r->modes[m]));
    cJSON *runs = cJSON_AddArrayToObject(mo, "seeds");
    for (int i = 0; i < r->n_seeds; i++) {
      const bwt_sh_report *rep = &r->report[m * r->n_seeds + i];
      cJSON *run = cJSON_CreateObject();
      char seed[24];
      snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seeds[i]);
      cJSON_AddStringToObject(run, "seed", seed);
      cJSON_AddNumberToObject(run, "final_loss", r->loss[((size_t)m * r->n_seeds + i) * len + r->steps]);
      cJSON_AddNumberToObject(run, "entropy_mae_bits", rep->entropy_mae_bits);
      cJSON_AddNumberToObject(run, "kl_bits", rep->kl_bits);
      cJSON_AddNumberToObject(run, "manifold_pc1", rep->pc1);
      cJSON_AddNumberToObject(run, "manifold_spearman_pc1_entropy", rep->spearman);
      cJSON_AddItemToArray(runs, run);
    }
    cJSON_AddItemToArray(modes, mo);
  }
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}

bwt_status bwt_falsify_figure(const bwt_falsify_result *r, const char *dir) {
  BWT_TRY(bwt_mkdir_p(dir));
  int len = r->steps + 1, n = r->n_seeds;
  double *buf = bwt_calloc((size_t)(r->n_modes + 2) * len, sizeof(double), "falsify figure");
  bwt_plot_series *s = bwt_calloc(r->n_modes + 1, sizeof *s, "falsify figure");
  bwt_status st = buf && s ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  double *x = buf, *bayes = buf + len, bayes_mean = 0;
  for (int i = 0; st == BWT_STATUS_OK && i < n; i++) bayes_mean += r->bayes_ce[i] / n;
  for (int t = 0; st == BWT_STATUS_OK && t < len; t++) x[t] = t, bayes[t] = bayes_mean;
  for (int m = 0; st == BWT_STATUS_OK && m < r->n_modes; m++) {
    double *y = buf + (size_t)(m + 2) * len;
    for (int i = 0; i < n; i++)
      for (int t = 0; t < len; t++) y[t] += r->loss[((size_t)m * n + i) * len + t] / n;
    s[m] = (bwt_plot_series){bwt_routing_name(r->modes[m]), x, y, NULL, NULL, len, 0, 0};
  }
  if (st == BWT_STATUS_OK) {
    s[r->n_modes] = (bwt_plot_series){"exact posterior (Bayes cross-entropy)", x, bayes, NULL, NULL, len, 0, 0};
    char path[4096];
    snprintf(path, sizeof path, "%s/falsify", dir);
    bwt_plot_axes ax = {"Routing modes on the sticky chain (mean over seeds)", "full-batch step",
                        "cross-entropy (nats)", 0, 0};
    st = bwt_plot_lines(path, &ax, s, r->n_modes + 1);
  }
  free(buf);
  free(s);
  return st;
}
