/* The cross-model table of the protocol (bwt/lab/lm_protocol.h) as JSON and Markdown, with the
 * papers' figures beside bwt's. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/lab/lm_protocol.h"

/* The stages, in bwt_lm_protocol_stages' order. */
enum { SULA, GEOMETRY, CUT, VERIFY, DETECT };

/* What Paper III (arXiv 2512.23752 v1) and seed 000 report, one entry per column of the table, and
 * the stage that measures it (the cell reads n/a when that stage was skipped). */
typedef struct {
  const char *key, *column, *paper;
  int stage;
} paper_figure;

static const paper_figure paper_figures[] = {
    {"sula_entropy_mae_bits", "SULA H MAE (k>=1)", "0.31-0.44", SULA},
    {"sula_shuffled_mae_bits", "shuffled", "-", SULA},
    {"spearman_mixed", "rho(PC1,H) mixed [95% CI]", "abs 0.65-0.80", GEOMETRY},
    {"pc12_mixed_to_math", "PC1+PC2 mixed -> math", "Pythia-410M 99.7->99.9%, Phi-2 60.6->63.5%, Llama-3.2-1B 51.4->73.6%", GEOMETRY},
    {"attention_reduction", "attn H first->last", "-", GEOMETRY},
    {"cut_spearman", "cut: rho -> (random axis)", "0.27 -> 0.07", CUT},
    {"cut_sula_change", "cut: SULA MAE change", "< 1%", CUT},
    {"verify_max_rel", "Paper II identities", "hold exactly (Paper II)", VERIFY},
    {"silhouette", "silhouette real/rand/shuf", "0.65 (Llama-3.1-70B)", DETECT},
    {"fire_rate", "fire rate real/rand/shuf", "4% on controls", DETECT},
    {"confidence_r", "r(conf, -err)", "0.85", DETECT},
    {"qv_ratio_early", "Q/V early layers", "> 5x", DETECT},
};
#define N_FIGURES ((int)(sizeof paper_figures / sizeof *paper_figures))

static double cut_change(const bwt_lm_protocol_row *r) {
  return r->cut_sula_before > 0 ? (r->cut_sula_after - r->cut_sula_before) / r->cut_sula_before : NAN;
}

/* A growing string. */
typedef struct {
  char *s;
  size_t len, cap;
  int failed;
} text;

static void put(text *t, const char *fmt, ...) {
  va_list ap, aq;
  va_start(ap, fmt);
  va_copy(aq, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (!t->failed && n >= 0 && t->len + (size_t)n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 4096;
    while (t->len + (size_t)n + 1 > cap) cap *= 2;
    char *g = realloc(t->s, cap);
    if (g) t->s = g, t->cap = cap;
    else t->failed = 1;
  }
  if (!t->failed && n >= 0) {
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, aq);
    t->len += (size_t)n;
  }
  va_end(aq);
}

static const char *base_name(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  const char *b = path + n;
  while (b > path && b[-1] != '/') b--;
  return b;
}

/* Column f of row r. */
static void cell(text *t, const bwt_lm_protocol_row *r, int f) {
  const bwt_lm_protocol_geometry *g = r->geo;
  if (r->skipped[paper_figures[f].stage][0]) {
    put(t, " n/a |");
    return;
  }
  switch (f) {
    case 0: put(t, " %.3f |", r->sula_mae_mean); break;
    case 1: put(t, " %.3f |", r->sula_mae_shuffled); break;
    case 2: put(t, " %.3f [%.2f, %.2f] |", g[0].spearman, g[0].spearman_lo, g[0].spearman_hi); break;
    case 3:
      if (g[1].pool[0]) put(t, " %.1f -> %.1f%% |", 100 * g[0].pc12, 100 * g[1].pc12);
      else put(t, " %.1f%% (%s) -> n/a |", 100 * g[0].pc12, g[0].pool);
      break;
    case 4: put(t, " %.2f -> %.2f bits (%.0f%%) |", g[0].attn_first, g[0].attn_last, 100 * g[0].attn_reduction); break;
    case 5: put(t, " %.3f -> %.3f (%.3f) |", r->cut_rho_before, r->cut_rho_after, r->cut_rho_random); break;
    case 6: put(t, " %+.1f%% |", 100 * cut_change(r)); break;
    case 7: put(t, " %.1e / %.1e |", r->verify_score, r->verify_value); break;
    case 8: put(t, " %.3f / %.3f / %.3f |", r->silhouette[0], r->silhouette[1], r->silhouette[2]); break;
    case 9: put(t, " %.0f%% / %.0f%% / %.0f%% |", 100 * r->fire_rate[0], 100 * r->fire_rate[1], 100 * r->fire_rate[2]); break;
    case 10: put(t, " %.3f |", r->confidence_r); break;
    default: put(t, " %.2f |", r->qv_early); break;
  }
}

char *bwt_lm_protocol_to_markdown(const bwt_lm_protocol_options *o, const bwt_lm_protocol_row *rows, int n) {
  text t = {0};
  put(&t, "# Paper III's protocol across models\n\nSULA: %d prompts per k and control, k =", o->per_k);
  for (int k = 0; k < o->n_ks; k++) put(&t, " %d", o->ks[k]);
  put(&t, "; geometry: %d prompts per entropy quintile of %d candidates, last layer, %d bootstrap resamples; seed %llu."
          " Definitions: docs/lm.md (\"The protocol\").\n\n| model | params |",
      o->per_quintile, o->candidates, o->n_boot, (unsigned long long)o->seed);
  for (int f = 0; f < N_FIGURES; f++) put(&t, " %s |", paper_figures[f].column);
  put(&t, "\n|---|---|");
  for (int f = 0; f < N_FIGURES; f++) put(&t, "---|");
  put(&t, "\n| paper | |");
  for (int f = 0; f < N_FIGURES; f++) put(&t, " %s |", paper_figures[f].paper);
  put(&t, "\n");
  for (int i = 0; i < n; i++) {
    put(&t, "| %s (%s, %s) | %.2fM |", base_name(rows[i].model), rows[i].architecture, rows[i].text_mode ? "text" : "ids",
        rows[i].n_params / 1e6);
    for (int f = 0; f < N_FIGURES; f++) cell(&t, &rows[i], f);
    put(&t, "\n");
  }
  put(&t, "\nSULA entropy MAE (bits) by k, control none:\n\n| model | labels |");
  for (int k = 0; k < o->n_ks; k++) put(&t, " k=%d |", o->ks[k]);
  put(&t, " remap | ablated shift | label mass | wall s (sula, geometry, cut, verify, detect) |\n|---|---|");
  for (int k = 0; k < o->n_ks + 4; k++) put(&t, "---|");
  put(&t, "\n");
  for (int i = 0; i < n; i++) {
    const bwt_lm_protocol_row *r = &rows[i];
    put(&t, "| %s | %s |", base_name(r->model), r->labels);
    for (int k = 0; k < r->n_ks; k++) put(&t, " %.3f |", r->sula_mae[k]);
    put(&t, " %.3f | %.3f | %.2g |", r->sula_mae_remap, r->sula_shift_ablated, r->sula_label_mass);
    for (int s = 0; s < BWT_PROTOCOL_STAGES; s++) put(&t, "%s%.1f", s ? ", " : " ", r->seconds[s]);
    put(&t, " |\n");
  }
  for (int i = 0; i < n; i++)
    for (int s = 0; s < BWT_PROTOCOL_STAGES; s++)
      if (rows[i].skipped[s][0]) put(&t, "\n%s: %s skipped: %s\n", base_name(rows[i].model), bwt_lm_protocol_stages[s], rows[i].skipped[s]);
  if (t.failed) free(t.s), t.s = NULL;
  return t.s;
}

static cJSON *geometry_json(const bwt_lm_protocol_geometry *g) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "pool", g->pool);
  cJSON_AddNumberToObject(o, "prompts", g->n);
  const struct {
    const char *name;
    double v;
  } f[] = {{"pc1", g->pc1}, {"pc1_pc2", g->pc12}, {"participation_ratio", g->participation_ratio},
           {"spearman_pc1_entropy", g->spearman}, {"spearman_lo", g->spearman_lo}, {"spearman_hi", g->spearman_hi},
           {"attention_entropy_first_bits", g->attn_first}, {"attention_entropy_last_bits", g->attn_last},
           {"attention_reduction", g->attn_reduction}, {"key_w_abs_cos", g->key_w}, {"key_w_abs_cos_init", g->key_w_init},
           {"key_w_abs_cos_gaussian", g->key_w_gaussian}};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) cJSON_AddNumberToObject(o, f[i].name, f[i].v);
  return o;
}

static cJSON *row_json(const bwt_lm_protocol_row *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "model", r->model);
  cJSON_AddStringToObject(o, "architecture", r->architecture);
  cJSON_AddNumberToObject(o, "parameters", (double)r->n_params);
  cJSON_AddNumberToObject(o, "layers", r->L);
  cJSON_AddStringToObject(o, "sula_mode", r->text_mode ? "text" : "ids");
  cJSON_AddStringToObject(o, "sula_labels", r->labels);
  cJSON_AddItemToObject(o, "sula_k", cJSON_CreateIntArray(r->ks, r->n_ks));
  cJSON_AddItemToObject(o, "sula_entropy_mae_bits_by_k", cJSON_CreateDoubleArray(r->sula_mae, r->n_ks));
  cJSON_AddItemToObject(o, "sula_kl_bits_by_k", cJSON_CreateDoubleArray(r->sula_kl, r->n_ks));
  const struct {
    const char *name;
    double v;
  } f[] = {{"sula_entropy_mae_bits", r->sula_mae_mean}, {"sula_remap_mae_bits", r->sula_mae_remap},
           {"sula_shuffled_mae_bits", r->sula_mae_shuffled}, {"sula_ablated_shift", r->sula_shift_ablated},
           {"sula_label_mass", r->sula_label_mass}, {"cut_pc1", r->cut_pc1}, {"cut_spearman_before", r->cut_rho_before},
           {"cut_spearman_after", r->cut_rho_after}, {"cut_spearman_random_axis", r->cut_rho_random},
           {"cut_sula_mae_before", r->cut_sula_before}, {"cut_sula_mae_after", r->cut_sula_after},
           {"cut_sula_mae_random_axis", r->cut_sula_random}, {"cut_sula_change", cut_change(r)},
           {"verify_score_max_rel", r->verify_score}, {"verify_value_max_rel", r->verify_value},
           {"detect_confidence_r", r->confidence_r}, {"detect_qv_ratio_early", r->qv_early}};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) cJSON_AddNumberToObject(o, f[i].name, f[i].v);
  cJSON_AddNumberToObject(o, "detect_rows", r->detect_rows);
  cJSON_AddItemToObject(o, "detect_silhouette", cJSON_CreateDoubleArray(r->silhouette, BWT_DETECT_N));
  cJSON_AddItemToObject(o, "detect_fire_rate", cJSON_CreateDoubleArray(r->fire_rate, BWT_DETECT_N));
  cJSON *g = cJSON_AddArrayToObject(o, "geometry");
  for (int p = 0; p < BWT_PROTOCOL_POOLS; p++)
    if (r->geo[p].pool[0]) cJSON_AddItemToArray(g, geometry_json(&r->geo[p]));
  cJSON *w = cJSON_AddObjectToObject(o, "seconds");
  cJSON *k = cJSON_AddObjectToObject(o, "skipped");
  for (int s = 0; s < BWT_PROTOCOL_STAGES; s++) {
    cJSON_AddNumberToObject(w, bwt_lm_protocol_stages[s], r->seconds[s]);
    if (r->skipped[s][0]) cJSON_AddStringToObject(k, bwt_lm_protocol_stages[s], r->skipped[s]);
  }
  return o;
}

char *bwt_lm_protocol_to_json(const bwt_lm_protocol_options *o, const bwt_lm_protocol_row *rows, int n) {
  cJSON *j = cJSON_CreateObject();
  cJSON *opt = cJSON_AddObjectToObject(j, "options");
  cJSON_AddItemToObject(opt, "k", cJSON_CreateIntArray(o->ks, o->n_ks));
  cJSON_AddNumberToObject(opt, "prompts_per_k", o->per_k);
  cJSON_AddNumberToObject(opt, "candidates", o->candidates);
  cJSON_AddNumberToObject(opt, "per_quintile", o->per_quintile);
  cJSON_AddNumberToObject(opt, "bootstrap", o->n_boot);
  cJSON_AddNumberToObject(opt, "verify_prompts", o->verify_prompts);
  cJSON_AddNumberToObject(opt, "verify_length", o->verify_length);
  cJSON_AddNumberToObject(opt, "seed", (double)o->seed);
  cJSON *paper = cJSON_AddObjectToObject(j, "paper");
  for (int f = 0; f < N_FIGURES; f++) cJSON_AddStringToObject(paper, paper_figures[f].key, paper_figures[f].paper);
  cJSON *ms = cJSON_AddArrayToObject(j, "models");
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(ms, row_json(&rows[i]));
  char *s = cJSON_Print(j);
  cJSON_Delete(j);
  return s;
}
