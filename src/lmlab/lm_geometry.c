/* Paper III's geometry on a language model (bwt/lab/lm_geometry.h): captures the final token's
 * values, keys and attention row at every layer for each prompt, then the value manifold (with
 * bootstrap intervals), key orthogonality by its three definitions and attention focusing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/lm_geometry.h"
#include "bwt/lab/stats.h"
#include "bwt/lm_weights.h"
#include "bwt/rng.h"

void bwt_lm_geometry_options_default(bwt_lm_geometry_options *o) {
  memset(o, 0, sizeof *o);
  o->n_boot = 1000;
  o->n_embed = 100;
}

void bwt_lm_standardise_fit(const float *X, int n, int d, double *mu, double *sd) {
  for (int j = 0; j < d; j++) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += X[(size_t)i * d + j];
    m /= n;
    for (int i = 0; i < n; i++) {
      double e = X[(size_t)i * d + j] - m;
      v += e * e;
    }
    v = sqrt(v / n);
    mu[j] = m;
    sd[j] = v > 0 ? v : 1.0;
  }
}

bwt_status bwt_lm_manifold_stats(const float *X, int n, int d, const double *entropy, double *pc1, double *pc12,
                                 double *pr, double *rho, double *u, double *scores) {
  double *mu = malloc((size_t)d * sizeof *mu), *sd = malloc((size_t)d * sizeof *sd);
  float *Z = malloc((size_t)n * d * sizeof *Z);
  double *s1 = malloc((size_t)n * sizeof *s1);
  bwt_status st = mu && sd && Z && s1 ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  bwt_pca p = {0};
  if (st == BWT_STATUS_OK) {
    bwt_lm_standardise_fit(X, n, d, mu, sd);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < d; j++) Z[(size_t)i * d + j] = (float)((X[(size_t)i * d + j] - mu[j]) / sd[j]);
    st = bwt_pca_compute(&p, Z, n, d, d, 2);
  }
  if (st == BWT_STATUS_OK) {
    *pc1 = p.pc1;
    *pc12 = p.k > 1 ? p.pc12 : p.pc1;
    *pr = p.participation_ratio;
    for (int i = 0; i < n; i++) s1[i] = p.scores[(size_t)i * p.k];
    *rho = bwt_spearman(s1, entropy, n);
    if (u) for (int j = 0; j < d; j++) u[j] = p.components[j];
    if (scores)
      for (int i = 0; i < n; i++) {
        scores[2 * i] = p.scores[(size_t)i * p.k];
        scores[2 * i + 1] = p.k > 1 ? p.scores[(size_t)i * p.k + 1] : 0;
      }
  }
  bwt_pca_free(&p);
  free(mu), free(sd), free(Z), free(s1);
  return st;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The 2.5% and 97.5% percentiles of v (n, sorted here; NANs dropped). */
static void percentile_ci(double *v, int n, bwt_lm_ci *ci) {
  int m = 0;
  double sum = 0;
  for (int i = 0; i < n; i++)
    if (!isnan(v[i])) sum += v[i], v[m++] = v[i];
  if (m == 0) {
    ci->lo = ci->hi = ci->boot_mean = NAN;
    return;
  }
  ci->boot_mean = sum / m;
  qsort(v, (size_t)m, sizeof *v, cmp_double);
  ci->lo = v[(int)floor(0.025 * (m - 1))];
  ci->hi = v[(int)ceil(0.975 * (m - 1))];
}

/* The manifold of layer l from V (n,d) with bootstrap intervals. */
static bwt_status manifold(bwt_lm_manifold *m, int l, const float *V, int n, int d, const double *entropy,
                           int n_boot, uint64_t seed) {
  m->layer = l;
  m->scores = calloc((size_t)n * 2, sizeof *m->scores);
  double *u = malloc((size_t)d * sizeof *u), *ub = malloc((size_t)d * sizeof *ub);
  float *Xb = malloc((size_t)n * d * sizeof *Xb);
  double *eb = malloc((size_t)n * sizeof *eb), *bs = malloc((size_t)4 * (n_boot + 1) * sizeof *bs);
  if (!m->scores || !u || !ub || !Xb || !eb || !bs) {
    free(u), free(ub), free(Xb), free(eb), free(bs);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  }
  bwt_status st = bwt_lm_manifold_stats(V, n, d, entropy, &m->pc1.est, &m->pc12.est, &m->participation_ratio.est,
                                        &m->spearman.est, u, m->scores);
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0xb007 + (uint64_t)l);
  int nb = 0;
  for (int b = 0; st == BWT_STATUS_OK && b < n_boot; b++) {
    for (int i = 0; i < n; i++) {
      int r = (int)bwt_rng_below(&rng, (uint32_t)n);
      memcpy(Xb + (size_t)i * d, V + (size_t)r * d, (size_t)d * sizeof *Xb);
      eb[i] = entropy[r];
    }
    double p1, p12, pr, rho;
    if (bwt_lm_manifold_stats(Xb, n, d, eb, &p1, &p12, &pr, &rho, ub, NULL) != BWT_STATUS_OK) continue; /* degenerate resample */
    double dot = 0;
    for (int j = 0; j < d; j++) dot += u[j] * ub[j];
    bs[nb] = p1, bs[(n_boot + 1) + nb] = p12, bs[2 * (n_boot + 1) + nb] = pr;
    bs[3 * (n_boot + 1) + nb] = dot < 0 ? -rho : rho;
    nb++;
  }
  if (st == BWT_STATUS_OK) {
    percentile_ci(bs, nb, &m->pc1);
    percentile_ci(bs + (n_boot + 1), nb, &m->pc12);
    percentile_ci(bs + 2 * (n_boot + 1), nb, &m->participation_ratio);
    percentile_ci(bs + 3 * (n_boot + 1), nb, &m->spearman);
  }
  free(u), free(ub), free(Xb), free(eb), free(bs);
  return st;
}

static const bwt_lm_activation *find(const bwt_lm_capture *cap, const char *name) {
  for (int i = 0; i < cap->n; i++)
    if (strcmp(cap->acts[i].name, name) == 0) return &cap->acts[i];
  return NULL;
}

/* Keys of one prompt's final token (L, NKV·hs) before and after RoPE, from lm. */
static bwt_status final_keys(bwt_lm *lm, const bwt_lm_prompt *p, float *k, float *krot) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  const char *pats[] = {"blocks.*.attn.hook_k", "blocks.*.attn.hook_rot_k"};
  bwt_lm_capture cap;
  bwt_status st = bwt_lm_capture_run(lm, p->ids, p->n, pats, c->R ? 2 : 1, &cap, NULL);
  size_t K = (size_t)c->NKV * c->hs;
  for (int l = 0; st == BWT_STATUS_OK && l < c->L; l++) {
    char name[BWT_LM_NAME_MAX];
    snprintf(name, sizeof name, "blocks.%d.attn.hook_k", l);
    const bwt_lm_activation *a = find(&cap, name);
    snprintf(name, sizeof name, "blocks.%d.attn.hook_rot_k", l);
    const bwt_lm_activation *r = c->R ? find(&cap, name) : NULL;
    if (!a || (c->R && !r)) st = bwt_fail(BWT_STATUS_ARG, "a captured key is missing");
    else {
      memcpy(k + l * K, a->data + (size_t)(p->n - 1) * K, K * sizeof *k);
      if (r) memcpy(krot + l * K, r->data + (size_t)(p->n - 1) * K, K * sizeof *k);
    }
  }
  bwt_lm_capture_free(&cap);
  return st;
}

static double mean_abs_cos_rows(const float *X, int n, int d) { return n >= 2 ? bwt_mean_abs_offdiag_cos(X, n, d, d) : NAN; }

/* (a) per layer and KV head, from lm's weights, or (lm NULL) from a seeded Gaussian matrix. */
static bwt_status key_weight_orth(const bwt_lm *lm, const bwt_lm_config *c, uint64_t seed, double *out) {
  float *W = malloc((size_t)c->hs * c->C * sizeof *W);
  if (!W) return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  bwt_status st = BWT_STATUS_OK;
  for (int l = 0; st == BWT_STATUS_OK && l < c->L; l++)
    for (int h = 0; st == BWT_STATUS_OK && h < c->NKV; h++) {
      if (lm) {
        st = bwt_lm_key_weights(lm, l, h, W);
      } else {
        bwt_rng rng;
        bwt_rng_seed(&rng, seed, 0x1417 + (uint64_t)l * 4096 + (uint64_t)h);
        for (size_t i = 0; i < (size_t)c->hs * c->C; i++) W[i] = (float)(0.02 * bwt_rng_normal(&rng));
      }
      if (st == BWT_STATUS_OK) out[l * c->NKV + h] = mean_abs_cos_rows(W, c->hs, c->C);
    }
  free(W);
  return st;
}

void bwt_lm_geometry_free(bwt_lm_geometry *g) {
  if (!g) return;
  free(g->length), free(g->quintile), free(g->domain), free(g->entropy);
  for (int i = 0; g->manifold && i < g->n_manifold; i++) free(g->manifold[i].scores);
  free(g->manifold);
  free(g->key_w), free(g->key_w_init), free(g->key_act), free(g->key_act_rot), free(g->key_act_init), free(g->key_act_rot_init);
  free(g->attn_head), free(g->attn_mean_heads), free(g->attn_of_mean);
  memset(g, 0, sizeof *g);
}

bwt_status bwt_lm_same_config(const bwt_lm *lm, const bwt_lm *init) {
  const bwt_lm_config *c = bwt_lm_config_of(lm), *ci = bwt_lm_config_of(init);
  if (ci->L != c->L || ci->C != c->C || ci->NH != c->NH || ci->NKV != c->NKV || ci->hs != c->hs || ci->V != c->V ||
      strcmp(ci->architecture, c->architecture) != 0)
    return bwt_fail(BWT_STATUS_ARG, "the init model is not the same configuration (%s L=%d C=%d NH=%d NKV=%d V=%d against %s L=%d C=%d NH=%d NKV=%d V=%d)",
                    ci->architecture, ci->L, ci->C, ci->NH, ci->NKV, ci->V, c->architecture, c->L, c->C, c->NH, c->NKV, c->V);
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_geometry_compute(bwt_lm *lm, bwt_lm *init, const bwt_lm_pool *prompts, const int *quintile,
                                   const bwt_lm_geometry_options *o, bwt_lm_geometry *g,
                                   void (*progress)(void *ctx, int i, int n), void *ctx) {
  memset(g, 0, sizeof *g);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int n = prompts->n, L = c->L, NH = c->NH, NKV = c->NKV, hs = c->hs;
  size_t K = (size_t)NKV * hs;
  if (n < 3) return bwt_fail(BWT_STATUS_ARG, "geometry needs at least 3 prompts (got %d)", n);
  if (init) BWT_TRY(bwt_lm_same_config(lm, init));
  g->L = L, g->NH = NH, g->NKV = NKV, g->hs = hs, g->C = c->C, g->n = n, g->R = c->R, g->n_boot = o->n_boot;
  g->length = calloc((size_t)n, sizeof *g->length);
  g->quintile = calloc((size_t)n, sizeof *g->quintile);
  g->domain = calloc((size_t)n, sizeof *g->domain);
  g->entropy = calloc((size_t)n, sizeof *g->entropy);
  g->key_w = calloc((size_t)L * NKV, sizeof(double));
  g->key_w_init = calloc((size_t)L * NKV, sizeof(double));
  g->key_act = calloc((size_t)L, sizeof(double));
  g->key_act_rot = calloc((size_t)L, sizeof(double));
  g->key_act_init = calloc((size_t)L, sizeof(double));
  g->key_act_rot_init = calloc((size_t)L, sizeof(double));
  g->attn_head = calloc((size_t)L * NH, sizeof(double));
  g->attn_mean_heads = calloc((size_t)L, sizeof(double));
  g->attn_of_mean = calloc((size_t)L, sizeof(double));
  float *values = calloc((size_t)L * n * K, sizeof(float)); /* (L, n, K) */
  float *k = calloc((size_t)L * K, sizeof(float)), *krot = calloc((size_t)L * K, sizeof(float));
  double *head_first = calloc((size_t)n, sizeof(double)), *head_last = calloc((size_t)n, sizeof(double));
  float *logits = NULL, *row = calloc((size_t)c->max_pos, sizeof(float));
  bwt_status st = BWT_STATUS_OK;
  if (!g->length || !g->quintile || !g->domain || !g->entropy || !g->key_w || !g->key_w_init || !g->key_act ||
      !g->key_act_rot || !g->key_act_init || !g->key_act_rot_init || !g->attn_head || !g->attn_mean_heads ||
      !g->attn_of_mean || !values || !k || !krot || !head_first || !head_last || !row)
    st = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  const char *pats[] = {"blocks.*.attn.hook_v", "blocks.*.attn.hook_k", "blocks.*.attn.hook_pattern", "blocks.*.attn.hook_rot_k"};
  for (int i = 0; st == BWT_STATUS_OK && i < n; i++) {
    const bwt_lm_prompt *p = &prompts->p[i];
    int T = p->n;
    if (progress) progress(ctx, i, n);
    g->length[i] = T;
    g->quintile[i] = quintile ? quintile[i] : -1;
    snprintf(g->domain[i], sizeof g->domain[i], "%s", p->domain);
    float *grown = realloc(logits, (size_t)T * c->V * sizeof *logits);
    if (!grown) {
      st = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
      break;
    }
    logits = grown;
    bwt_lm_capture cap;
    st = bwt_lm_capture_run(lm, p->ids, T, pats, c->R ? 4 : 3, &cap, logits);
    if (st == BWT_STATUS_OK) g->entropy[i] = bwt_lm_entropy_bits(logits + (size_t)(T - 1) * c->V, c->V);
    g->uniform_entropy += log2((double)T) / n;
    for (int l = 0; st == BWT_STATUS_OK && l < L; l++) {
      char name[BWT_LM_NAME_MAX];
      snprintf(name, sizeof name, "blocks.%d.attn.hook_v", l);
      const bwt_lm_activation *v = find(&cap, name);
      snprintf(name, sizeof name, "blocks.%d.attn.hook_k", l);
      const bwt_lm_activation *ka = find(&cap, name);
      snprintf(name, sizeof name, "blocks.%d.attn.hook_rot_k", l);
      const bwt_lm_activation *kr = c->R ? find(&cap, name) : NULL;
      snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", l);
      const bwt_lm_activation *pat = find(&cap, name);
      if (!v || !ka || !pat || (c->R && !kr)) {
        st = bwt_fail(BWT_STATUS_ARG, "a captured point of layer %d is missing", l);
        break;
      }
      memcpy(values + ((size_t)l * n + i) * K, v->data + (size_t)(T - 1) * K, K * sizeof(float));
      g->key_act[l] += mean_abs_cos_rows(ka->data + (size_t)(T - 1) * K, NKV, hs) / n;
      g->key_act_rot[l] += kr ? mean_abs_cos_rows(kr->data + (size_t)(T - 1) * K, NKV, hs) / n : NAN;
      double mh = 0;
      for (int s = 0; s < T; s++) row[s] = 0;
      for (int h = 0; h < NH; h++) {
        const float *a = pat->data + ((size_t)h * T + (T - 1)) * T;
        double e = bwt_entropy_bits_float(a, T);
        g->attn_head[l * NH + h] += e / n;
        mh += e / NH;
        for (int s = 0; s < T; s++) row[s] += a[s] / NH;
      }
      g->attn_mean_heads[l] += mh / n;
      g->attn_of_mean[l] += bwt_entropy_bits_float(row, T) / n;
      if (l == 0) head_first[i] = mh;
      if (l == L - 1) head_last[i] = mh;
    }
    bwt_lm_capture_free(&cap);
    if (st == BWT_STATUS_OK && init) {
      st = final_keys(init, p, k, krot);
      for (int l = 0; st == BWT_STATUS_OK && l < L; l++) {
        g->key_act_init[l] += mean_abs_cos_rows(k + l * K, NKV, hs) / n;
        g->key_act_rot_init[l] += c->R ? mean_abs_cos_rows(krot + l * K, NKV, hs) / n : NAN;
      }
    }
  }
  if (st == BWT_STATUS_OK && !init)
    for (int l = 0; l < L; l++) g->key_act_init[l] = g->key_act_rot_init[l] = NAN;
  g->key_act_gaussian = bwt_gaussian_abs_cos(hs);
  g->key_w_gaussian = bwt_gaussian_abs_cos(c->C);
  /* (a) from the weights; its init baseline. */
  if (st == BWT_STATUS_OK) st = key_weight_orth(lm, c, o->seed, g->key_w);
  if (st == BWT_STATUS_OK) st = key_weight_orth(init, c, o->seed, g->key_w_init);
  snprintf(g->init_source, sizeof g->init_source, "%s",
           init ? (o->init_source ? o->init_source : "the init model given") : "W_K alone drawn in memory, i.i.d. normal (seeded); no init model for (b)");
  /* (c) random token embeddings, through hook_embed. */
  if (st == BWT_STATUS_OK) {
    int m = o->n_embed < c->max_pos ? o->n_embed : c->max_pos;
    if (m > c->V) m = c->V;
    int32_t *ids = malloc((size_t)(m > 0 ? m : 1) * sizeof *ids);
    bwt_rng rng;
    bwt_rng_seed(&rng, o->seed, 0xe3bed);
    for (int j = 0; ids && j < m; j++) ids[j] = (int32_t)bwt_rng_below(&rng, (uint32_t)c->V);
    const char *emb[] = {"hook_embed"};
    bwt_lm_capture cap;
    g->n_embed = m;
    if (!ids) st = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
    else if (m >= 2 && (st = bwt_lm_capture_run(lm, ids, m, emb, 1, &cap, NULL)) == BWT_STATUS_OK)
      g->embed_cos = bwt_mean_abs_offdiag_cos(cap.acts[0].data, m, c->C, c->C);
    else if (m < 2) g->embed_cos = NAN;
    if (ids && m >= 2) bwt_lm_capture_free(&cap);
    free(ids);
    g->embed_gaussian = bwt_gaussian_abs_cos(c->C);
  }
  /* Attention reduction with its bootstrap. */
  if (st == BWT_STATUS_OK) {
    double f = 0, la = 0;
    for (int i = 0; i < n; i++) f += head_first[i] / n, la += head_last[i] / n;
    g->attn_reduction.est = f > 0 ? 1 - la / f : NAN;
    g->attn_reduction_bits.est = f - la;
    double *r = malloc((size_t)(o->n_boot + 1) * 2 * sizeof *r);
    if (!r) st = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
    bwt_rng rng;
    bwt_rng_seed(&rng, o->seed, 0xa77e);
    for (int b = 0; r && b < o->n_boot; b++) {
      double fb = 0, lb = 0;
      for (int i = 0; i < n; i++) {
        int j = (int)bwt_rng_below(&rng, (uint32_t)n);
        fb += head_first[j], lb += head_last[j];
      }
      r[b] = fb > 0 ? 1 - lb / fb : NAN;
      r[o->n_boot + 1 + b] = (fb - lb) / n;
    }
    if (r) {
      percentile_ci(r, o->n_boot, &g->attn_reduction);
      percentile_ci(r + o->n_boot + 1, o->n_boot, &g->attn_reduction_bits);
    }
    free(r);
  }
  /* Value manifolds. */
  if (st == BWT_STATUS_OK) {
    g->n_manifold = o->all_layers ? L : 1;
    g->manifold = calloc((size_t)g->n_manifold, sizeof *g->manifold);
    if (!g->manifold) st = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
    for (int m = 0; st == BWT_STATUS_OK && m < g->n_manifold; m++) {
      int l = o->all_layers ? m : L - 1;
      st = manifold(&g->manifold[m], l, values + (size_t)l * n * K, n, (int)K, g->entropy, o->n_boot, o->seed);
    }
  }
  free(values), free(k), free(krot), free(head_first), free(head_last), free(logits), free(row);
  if (st != BWT_STATUS_OK) bwt_lm_geometry_free(g);
  return st;
}
