/* Paper III's protocol on one language model (bwt/lab/lm_protocol.h): each instrument through its
 * library call, the figures the cross-model table needs kept in one row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_dynamics.h"
#include "bwt/lab/lm_geometry.h"
#include "bwt/lab/lm_intervene.h"
#include "bwt/lab/lm_pools.h"
#include "bwt/lab/lm_prompts.h"
#include "bwt/lab/lm_protocol.h"
#include "bwt/lab/sula.h"
#include "bwt/lm.h"
#include "bwt/lm_weights.h"
#include "bwt/rng.h"
#include "bwt/tokenizer.h"

const char *const bwt_lm_protocol_stages[BWT_PROTOCOL_STAGES] = {"sula", "geometry", "cut", "verify", "detect"};

void bwt_lm_protocol_options_default(bwt_lm_protocol_options *o) {
  *o = (bwt_lm_protocol_options){.ks = {0, 1, 2, 4, 8}, .n_ks = 5, .per_k = 32, .candidates = 400, .per_quintile = 15,
                                 .n_boot = 200, .verify_prompts = 4, .verify_length = 16, .seed = 0};
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* SULA: per-k figures of control none, the controls' means over k ≥ 1, and the prompts as records. */
static bwt_status run_sula(bwt_lm *lm, const bwt_tokenizer *tok, const bwt_lm_protocol_options *o, bwt_lm_protocol_row *row,
                           bwt_lm_record **rec, int *n_rec) {
  bwt_sula_spec ss;
  BWT_TRY(bwt_sula_spec_default(&ss, bwt_lm_config_of(lm), tok, BWT_SULA_ALPHA_DEFAULT, o->seed));
  if (tok) snprintf(row->labels, sizeof row->labels, "\" %s\"/\" %s\"", ss.label_words[0], ss.label_words[1]);
  else snprintf(row->labels, sizeof row->labels, "ids %d/%d", ss.labels[0], ss.labels[1]);
  bwt_sula_result r;
  BWT_TRY(bwt_sula_run(&lm, 1, &ss, o->ks, o->n_ks, o->per_k, NULL, NULL, &r));
  row->n_ks = o->n_ks, row->per_k = o->per_k;
  double sum[5] = {0};
  int used = 0;
  for (int ki = 0; ki < o->n_ks; ki++) {
    const bwt_sula_metrics *m = &r.metrics[ki * BWT_SULA_CONTROL_COUNT];
    row->ks[ki] = o->ks[ki];
    row->sula_mae[ki] = m[BWT_SULA_NONE].entropy_mae, row->sula_kl[ki] = m[BWT_SULA_NONE].kl;
    if (o->ks[ki] < 1) continue;
    used++;
    sum[0] += m[BWT_SULA_NONE].entropy_mae, sum[1] += m[BWT_SULA_REMAP].entropy_mae;
    sum[2] += m[BWT_SULA_SHUFFLED].entropy_mae, sum[3] += m[BWT_SULA_ABLATED].shift, sum[4] += m[BWT_SULA_NONE].label_mass;
  }
  double *means[5] = {&row->sula_mae_mean, &row->sula_mae_remap, &row->sula_mae_shuffled, &row->sula_shift_ablated,
                      &row->sula_label_mass};
  for (int i = 0; i < 5; i++) *means[i] = used ? sum[i] / used : NAN;
  bwt_status s = bwt_lm_records_from_sula(&r, rec, n_rec);
  bwt_sula_result_free(&r);
  return s;
}

static void keep_geometry(const bwt_lm_geometry *g, const char *pool, bwt_lm_protocol_geometry *out) {
  const bwt_lm_manifold *m = &g->manifold[g->n_manifold - 1];
  snprintf(out->pool, sizeof out->pool, "%s", pool);
  out->n = g->n;
  out->pc1 = m->pc1.est, out->pc12 = m->pc12.est, out->participation_ratio = m->participation_ratio.est;
  out->spearman = m->spearman.est, out->spearman_lo = m->spearman.lo, out->spearman_hi = m->spearman.hi;
  out->attn_first = g->attn_mean_heads[0], out->attn_last = g->attn_mean_heads[g->L - 1];
  out->attn_reduction = g->attn_reduction.est;
  double w = 0, wi = 0;
  for (int i = 0; i < g->L * g->NKV; i++) w += g->key_w[i], wi += g->key_w_init[i];
  out->key_w = w / (g->L * g->NKV), out->key_w_init = wi / (g->L * g->NKV), out->key_w_gaussian = g->key_w_gaussian;
}

/* The records of control none: the detector's rows and the cut's SULA calibration. */
static int plain_records(const bwt_lm_record *rec, int n, bwt_lm_record *out) {
  int m = 0;
  for (int i = 0; i < n; i++)
    if (strcmp(rec[i].control, "none") == 0) out[m++] = rec[i];
  return m;
}

static void keep_cut(const bwt_lm_intervention *iv, bwt_lm_protocol_row *row) {
  row->cut_pc1 = iv->pc1, row->cut_rho_before = iv->spearman, row->cut_sula_before = iv->sula_mae;
  for (int e = 0; e < iv->n_effects; e++) {
    const bwt_lm_intervention_effect *x = &iv->effects[e];
    if (strcmp(x->op, "cut") != 0) continue;
    int random = strcmp(x->axis, "random") == 0;
    *(random ? &row->cut_rho_random : &row->cut_rho_after) = x->spearman;
    *(random ? &row->cut_sula_random : &row->cut_sula_after) = x->sula_mae;
  }
}

static bwt_status run_verify(bwt_lm *lm, const bwt_lm_protocol_options *o, bwt_lm_protocol_row *row) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  bwt_lm_record *p = NULL;
  int T = o->verify_length < c->max_pos ? o->verify_length : c->max_pos;
  BWT_TRY(bwt_lm_records_random(&p, o->verify_prompts, T, c->V, bwt_hash2(o->seed, 0x7e41)));
  bwt_dynamics_check *chk = bwt_calloc((size_t)c->L, sizeof *chk, "verify");
  bwt_status s = chk ? bwt_lm_dynamics_verify(lm, p, o->verify_prompts, chk) : BWT_STATUS_NOMEM;
  double score = 0, value = 0;
  for (int l = 0; s == BWT_STATUS_OK && l < c->L; l++) {
    score = fmax(score, chk[l].score_max_abs / fmax(chk[l].score_scale, 1e-30));
    value = fmax(value, chk[l].value_max_abs / fmax(chk[l].value_scale, 1e-30));
  }
  if (s == BWT_STATUS_OK) row->verify_score = score, row->verify_value = value;
  free(chk);
  bwt_lm_records_free(p, o->verify_prompts);
  return s;
}

static bwt_status run_detect(bwt_lm *lm, const bwt_lm_record *rec, int n, const bwt_lm_protocol_options *o,
                             bwt_lm_protocol_row *row) {
  bwt_lm_detect_options d;
  bwt_lm_detect_options_default(&d);
  d.det.seed = o->seed;
  bwt_lm_detect_result r;
  BWT_TRY(bwt_lm_detect(lm, rec, n, &d, &r));
  for (int k = 0; k < BWT_DETECT_N; k++) row->silhouette[k] = r.r[k].silhouette, row->fire_rate[k] = r.r[k].fire_rate;
  row->confidence_r = r.r[BWT_DETECT_REAL].confidence_r;
  row->detect_rows = r.r[BWT_DETECT_REAL].rows;
  int half = r.L > 1 ? r.L / 2 : 1;
  double q = 0;
  for (int l = 0; l < half; l++) q += r.qv_ratio[BWT_DETECT_REAL][l] / half;
  row->qv_early = q;
  bwt_lm_detect_result_free(&r);
  return BWT_STATUS_OK;
}

/* The same configuration at initialisation, in memory, for the key baselines; NULL when the model is
 * too large for it (the geometry then draws W_K alone). */
static bwt_lm *init_model(const char *dir, uint64_t seed) {
  bwt_lm *init = NULL;
  if (bwt_lm_open(&init, dir) == BWT_STATUS_OK && bwt_lm_reinit(init, bwt_hash2(seed, 0x1417), 0.02) == BWT_STATUS_OK) return init;
  bwt_lm_close(init);
  return NULL;
}

/* What the stages share: the model, its tokenizer, SULA's records of control none (the cut's
 * calibration and the detector's rows) and the mixed pool's draw (the cut's prompts). */
typedef struct {
  const char *dir;
  bwt_lm *lm;
  bwt_tokenizer *tok;
  const bwt_lm_protocol_options *o;
  bwt_lm_protocol_row *row;
  bwt_lm_record *rec, *plain;
  int n_rec, n_plain;
  bwt_lm_pool sel;
  int *quintile;
} protocol_state;

static bwt_status stage_sula(protocol_state *p) {
  BWT_TRY(run_sula(p->lm, p->tok, p->o, p->row, &p->rec, &p->n_rec));
  if (!(p->plain = bwt_malloc((size_t)p->n_rec * sizeof *p->plain, "records"))) return BWT_STATUS_NOMEM;
  p->n_plain = plain_records(p->rec, p->n_rec, p->plain);
  return BWT_STATUS_OK;
}

static bwt_status stage_geometry(protocol_state *p) {
  bwt_lm *init = init_model(p->dir, p->o->seed);
  const char *pools[BWT_PROTOCOL_POOLS] = {p->tok ? "mixed" : "ids", p->tok ? "math" : NULL};
  bwt_lm_geometry_options go;
  bwt_lm_geometry_options_default(&go);
  go.n_boot = p->o->n_boot, go.seed = p->o->seed;
  go.init_source = init ? "re-initialised in memory: N(0, 0.02^2) projections and embeddings, norms 1, biases 0" : NULL;
  bwt_status s = BWT_STATUS_OK;
  for (int i = 0; s == BWT_STATUS_OK && i < BWT_PROTOCOL_POOLS && pools[i]; i++) {
    bwt_lm_pool drawn = {0};
    int *q = NULL;
    s = bwt_lm_pool_draw(p->lm, p->tok, pools[i], p->o->candidates, p->o->per_quintile, p->o->seed, &drawn, &q);
    bwt_lm_geometry g = {0};
    if (s == BWT_STATUS_OK) s = bwt_lm_geometry_compute(p->lm, init, &drawn, q, &go, &g, NULL, NULL);
    if (s == BWT_STATUS_OK) keep_geometry(&g, pools[i], &p->row->geo[i]);
    bwt_lm_geometry_free(&g);
    if (i == 0 && s == BWT_STATUS_OK) p->sel = drawn, p->quintile = q; /* the cut runs on the mixed pool */
    else bwt_lm_pool_free(&drawn), free(q);
  }
  bwt_lm_close(init);
  return s;
}

static bwt_status stage_cut(protocol_state *p) {
  if (p->sel.n == 0) return bwt_fail(BWT_STATUS_ARG, "no prompts: the geometry stage did not draw them");
  bwt_lm_intervention iv = {0};
  bwt_status s = bwt_lm_intervene(p->lm, &p->sel, bwt_lm_config_of(p->lm)->L - 1, 1.0, p->o->seed, p->plain, p->n_plain, &iv,
                                  NULL, NULL);
  if (s == BWT_STATUS_OK) keep_cut(&iv, p->row);
  bwt_lm_intervention_free(&iv);
  return s;
}

static bwt_status stage_verify(protocol_state *p) { return run_verify(p->lm, p->o, p->row); }
static bwt_status stage_detect(protocol_state *p) { return run_detect(p->lm, p->plain, p->n_plain, p->o, p->row); }

static bwt_status (*const stage_runs[BWT_PROTOCOL_STAGES])(protocol_state *) = {stage_sula, stage_geometry, stage_cut,
                                                                                   stage_verify, stage_detect};

/* Every figure starts as NaN ("not measured"), so that a skipped stage leaves no plausible zero. */
static void row_clear(bwt_lm_protocol_row *row) {
  memset(row, 0, sizeof *row);
  double *all[] = {&row->sula_mae_mean, &row->sula_mae_remap, &row->sula_mae_shuffled, &row->sula_shift_ablated,
                   &row->sula_label_mass, &row->cut_pc1, &row->cut_rho_before, &row->cut_rho_after, &row->cut_rho_random,
                   &row->cut_sula_before, &row->cut_sula_after, &row->cut_sula_random, &row->verify_score,
                   &row->verify_value, &row->confidence_r, &row->qv_early};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) *all[i] = NAN;
  for (int k = 0; k < BWT_DETECT_N; k++) row->silhouette[k] = row->fire_rate[k] = NAN;
}

bwt_status bwt_lm_protocol_run(const char *dir, const bwt_lm_protocol_options *o, bwt_lm_protocol_row *row,
                               void (*stage)(void *ctx, const char *name), void *ctx) {
  row_clear(row);
  if (o->n_ks < 1 || o->n_ks > BWT_PROTOCOL_MAX_KS)
    return bwt_fail(BWT_STATUS_ARG, "the protocol takes 1 to %d values of k (got %d)", BWT_PROTOCOL_MAX_KS, o->n_ks);
  protocol_state p = {.dir = dir, .o = o, .row = row};
  BWT_TRY(bwt_lm_open(&p.lm, dir));
  const bwt_lm_config *c = bwt_lm_config_of(p.lm);
  snprintf(row->model, sizeof row->model, "%s", dir);
  snprintf(row->architecture, sizeof row->architecture, "%s", c->architecture);
  row->L = c->L, row->NH = c->NH, row->NKV = c->NKV, row->C = c->C, row->V = c->V, row->n_params = c->n_params;
  bwt_tokenizer_load(&p.tok, dir); /* absent: ids */
  row->text_mode = p.tok != NULL;
  bwt_status s = BWT_STATUS_OK;
  for (int i = 0; i < BWT_PROTOCOL_STAGES; i++) {
    if (stage) stage(ctx, bwt_lm_protocol_stages[i]);
    double t = now();
    bwt_status si = stage_runs[i](&p);
    row->seconds[i] = now() - t;
    if (si == BWT_STATUS_OK) continue;
    /* Without SULA's records nothing after it has its prompts: the model fails. A later stage that
     * cannot run on this model (gradients of a model converted layer by layer, say) is skipped
     * with its reason, and its figures stay NaN. */
    if (i == 0) {
      s = si;
      break;
    }
    snprintf(row->skipped[i], sizeof row->skipped[i], "%s", bwt_last_error());
  }
  free(p.plain); /* its tokens are rec's */
  bwt_lm_records_free(p.rec, p.n_rec);
  bwt_lm_pool_free(&p.sel);
  free(p.quintile);
  bwt_tokenizer_free(p.tok);
  bwt_lm_close(p.lm);
  return s;
}
