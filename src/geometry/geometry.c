/* bwt_geometry_compute: one pass over a held-out stream collecting the capture points at the
 * supervised rows, then the statistics of SPEC.md §5 over all of them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/capture.h"
#include "bwt/eval.h"
#include "bwt/lab/curvature.h"
#include "bwt/lab/geometry.h"
#include "bwt/lab/stats.h"

void bwt_geometry_options_default(bwt_geometry_options *o) {
  o->n_seqs = 512;
  o->batch = 64;
  o->seed = 0x5eed;
  o->ridge = 1e-3;
}

void bwt_geometry_free(bwt_geometry *g) {
  free(g->key_orth);
  free(g->key_orth_init);
  free(g->key_cos);
  free(g->attn_entropy);
  free(g->qk_cos);
  free(g->attn_map);
  free(g->sup_pos0);
  free(g->layer);
  free(g->probe_r2);
  free(g->pc_scores);
  free(g->bayes_entropy);
  free(g->model_entropy);
  free(g->state);
  free(g->state_probe_r2);
  memset(g, 0, sizeof *g);
}

/* Entropy in bits of softmax(logits (K)), in double. */
static double softmax_entropy_bits(const float *logits, int K) {
  double mx = logits[0], z = 0, s = 0;
  for (int k = 1; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
  for (int k = 0; k < K; k++) z += exp(logits[k] - mx);
  for (int k = 0; k < K; k++) {
    double p = exp(logits[k] - mx) / z;
    if (p > 0) s -= p * log2(p);
  }
  return s;
}

/* Per-head orthogonality (L,NH) of model's hypothesis keys; full-width cosines into key_cos. */
static bwt_status key_frames(const bwt_model *m, int lo, int n_hyp, double *orth, double *key_cos) {
  int L = m->cfg.n_layers, NH = m->cfg.n_heads, C = m->cfg.d_model, hs = C / NH;
  float *keys = bwt_calloc((size_t)n_hyp * C, sizeof(float), "key frames");
  if (!keys) return BWT_STATUS_NOMEM;
  bwt_status s = BWT_STATUS_OK;
  for (int l = 0; l < L && s == BWT_STATUS_OK; l++) {
    s = bwt_geometry_keys(m, l, lo, n_hyp, keys);
    if (s != BWT_STATUS_OK) break;
    for (int h = 0; h < NH; h++)
      orth[l * NH + h] = n_hyp > 1 ? bwt_mean_abs_offdiag_cos(keys + h * hs, n_hyp, hs, C) : NAN;
    if (key_cos) bwt_cosine_matrix(key_cos + (size_t)l * n_hyp * n_hyp, keys, n_hyp, C, C);
  }
  free(keys);
  return s;
}

/* Rows collected over the stream: embeddings, each block's output and the final norm (R,C) each;
 * Mamba's scan states (L,R,S). */
typedef struct {
  float *embed, *blocks, *final, *states;
  double *qk_sum, *qk_count, *attn_sum; /* (L,n,T), (L,n,T), (L,NH) */
  long attn_count;
} collected;

/* Adds one batch's first `keep` sequences (rows from r0) to the collection. */
static void collect(bwt_geometry *g, collected *c, const bwt_capture *cap, const bwt_batch *b,
                    const float *logits, int keep, long r0, int K) {
  int L = g->L, NH = g->NH, n = g->n_sup, T = g->T, C = g->C, hs = NH ? C / NH : 0;
  size_t R = (size_t)g->n_rows, rows = (size_t)keep * n, M = (size_t)cap->B * n;
  memcpy(c->embed + r0 * C, cap->embed, sizeof(float) * rows * C);
  memcpy(c->final + r0 * C, cap->final_norm, sizeof(float) * rows * C);
  for (int l = 0; l < L; l++)
    memcpy(c->blocks + ((size_t)l * R + r0) * C, cap->block_out + (size_t)l * M * C, sizeof(float) * rows * C);
  for (int l = 0; l < L && c->states; l++)
    memcpy(c->states + ((size_t)l * R + r0) * g->S, cap->scan_state + (size_t)l * M * g->S, sizeof(float) * rows * g->S);
  for (size_t r = 0; r < rows; r++) {
    g->bayes_entropy[r0 + r] = bwt_entropy_bits(b->posterior + r * K, K);
    g->model_entropy[r0 + r] = softmax_entropy_bits(logits + r * K, K);
  }
  for (int l = 0; l < L && g->attn_entropy; l++)
    for (int bb = 0; bb < keep; bb++)
      for (int j = 0; j < n; j++) {
        int pos = b->sup_pos[bb * n + j];
        const float *q = cap->queries + ((size_t)l * M + (size_t)bb * n + j) * C;
        for (int h = 0; h < NH; h++) {
          const float *a = cap->attention + ((((size_t)l * cap->B + bb) * NH + h) * n + j) * T;
          if (!isnan(a[0])) c->attn_sum[l * NH + h] += bwt_entropy_bits_float(a, pos + 1);
        }
        for (int s = 0; s <= pos; s++) {
          const float *k = cap->keys + (((size_t)l * cap->B + bb) * T + s) * C;
          double cs = 0;
          for (int h = 0; h < NH; h++) cs += bwt_cosine(q + h * hs, k + h * hs, hs);
          size_t at = ((size_t)l * n + j) * T + s;
          c->qk_sum[at] += cs / NH;
          c->qk_count[at] += 1;
        }
      }
  c->attn_count += (long)keep * n;
}

static void manifold(bwt_manifold_stats *st, const float *X, const double *entropy, long R, int C,
                     double *scores2) {
  bwt_pca p;
  memset(&p, 0, sizeof p);
  *st = (bwt_manifold_stats){NAN, NAN, 0, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
  bwt_curvature cv;
  if (bwt_curvature_compute(&cv, X, entropy, R, C, C, BWT_CURVATURE_BINS, BWT_CURVATURE_SHUFFLES, 0x5eed) == BWT_STATUS_OK) {
    st->curvature = cv.curvature, st->straightness = cv.straightness;
    st->curvature_null = cv.null_median, st->curvature_p = cv.null_p;
    bwt_curvature_free(&cv);
  }
  if (bwt_pca_compute(&p, X, (int)R, C, C, 2) != BWT_STATUS_OK) return; /* e.g. zero variance */
  double *pc1 = bwt_malloc(sizeof(double) * R, NULL);
  if (pc1) {
    for (long r = 0; r < R; r++) pc1[r] = p.scores[r * p.k];
    st->pearson = bwt_pearson(pc1, entropy, (int)R);
    st->spearman = bwt_spearman(pc1, entropy, (int)R);
    free(pc1);
  }
  st->pc1 = p.pc1;
  st->pc12 = p.pc12;
  st->dims90 = p.dims90;
  st->participation_ratio = p.participation_ratio;
  if (scores2)
    for (long r = 0; r < R; r++) {
      scores2[2 * r] = p.scores[r * p.k];
      scores2[2 * r + 1] = p.k > 1 ? p.scores[r * p.k + 1] : 0;
    }
  bwt_pca_free(&p);
}

/* Held-out R² of the posterior entropy from X (R,C): fitted on the first 80% of the sequences. */
static double probe(const float *X, const double *y, long R, int C, int n, double ridge) {
  long n_seqs = R / n, train = (long)(0.8 * n_seqs) * n;
  double r2 = NAN;
  if (train < 2 || train >= R || bwt_linear_probe_r2(&r2, X, y, (int)R, C, C, (int)train, ridge) != BWT_STATUS_OK)
    return NAN;
  return r2;
}

bwt_status bwt_geometry_compute(bwt_model *model, const bwt_model *init, const bwt_task *task,
                                const bwt_geometry_options *opt, bwt_geometry *g) {
  memset(g, 0, sizeof *g);
  const bwt_model_config *mc = &model->cfg;
  const unsigned rows_points = BWT_CAPTURE_EMBED | BWT_CAPTURE_BLOCK_OUT | BWT_CAPTURE_FINAL_NORM;
  unsigned avail = bwt_model_capture_points(model);
  if ((avail & rows_points) != rows_points)
    return bwt_fail(BWT_STATUS_ARG, "geometry needs a transformer or Mamba (this model is %s)", bwt_arch_name(mc->arch));
  int attn = bwt_model_has(model, BWT_CAP_ATTENTION), ssm = (avail & BWT_CAPTURE_SCAN_STATE) != 0;
  if (opt->n_seqs < 2 || opt->batch < 1 || !(opt->ridge >= 0))
    return bwt_fail(BWT_STATUS_ARG, "geometry needs at least 2 sequences, a batch >= 1 and a ridge >= 0");
  BWT_TRY(bwt_model_check_task(model, task));
  int L = mc->n_layers, NH = attn ? mc->n_heads : 0, C = mc->d_model, n = task->n_sup, T = task->seq_len, K = task->n_classes;
  long R = (long)opt->n_seqs * n;
  *g = (bwt_geometry){.L = L, .NH = NH, .n_sup = n, .T = T, .C = C, .n_rows = R};
  g->gaussian_cos = attn ? bwt_gaussian_abs_cos(C / NH) : NAN;
  g->n_hyp = attn ? bwt_geometry_hypotheses(task, &g->hyp_lo) : 0;

  collected c = {0};
  bwt_batch b;
  memset(&b, 0, sizeof b);
  bwt_eval_acc *acc = NULL;
  bwt_capture cap;
  memset(&cap, 0, sizeof cap);
  int B = opt->batch < opt->n_seqs ? opt->batch : opt->n_seqs;
  size_t LnT = (size_t)L * n * T;
  if (attn) {
    g->attn_entropy = bwt_calloc((size_t)L * NH, sizeof(double), "geometry");
    g->qk_cos = bwt_calloc(LnT, sizeof(double), "geometry");
    g->attn_map = bwt_calloc(LnT, sizeof(double), "geometry");
    c.qk_sum = bwt_calloc(LnT, sizeof(double), "geometry");
    c.qk_count = bwt_calloc(LnT, sizeof(double), "geometry");
    c.attn_sum = bwt_calloc((size_t)L * NH, sizeof(double), "geometry");
  }
  if (ssm) {
    g->state = bwt_calloc(L, sizeof *g->state, "geometry");
    g->state_probe_r2 = bwt_calloc(L, sizeof(double), "geometry");
  }
  g->sup_pos0 = bwt_calloc(n, sizeof(int32_t), "geometry");
  g->layer = bwt_calloc(L, sizeof *g->layer, "geometry");
  g->probe_r2 = bwt_calloc(L + 2, sizeof(double), "geometry");
  g->pc_scores = bwt_calloc(2 * (size_t)R, sizeof(double), "geometry");
  g->bayes_entropy = bwt_calloc(R, sizeof(double), "geometry");
  g->model_entropy = bwt_calloc(R, sizeof(double), "geometry");
  c.embed = bwt_calloc((size_t)R * C, sizeof(float), "geometry rows");
  c.final = bwt_calloc((size_t)R * C, sizeof(float), "geometry rows");
  c.blocks = bwt_calloc((size_t)L * R * C, sizeof(float), "geometry rows");
  bwt_status s = BWT_STATUS_OK;
  if ((attn && (!g->attn_entropy || !g->qk_cos || !g->attn_map || !c.qk_sum || !c.qk_count || !c.attn_sum)) ||
      (ssm && (!g->state || !g->state_probe_r2)) || !g->sup_pos0 || !g->layer || !g->probe_r2 || !g->pc_scores ||
      !g->bayes_entropy || !g->model_entropy || !c.embed || !c.final || !c.blocks)
    s = BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK && g->n_hyp > 0) {
    g->key_orth = bwt_calloc((size_t)L * NH, sizeof(double), "geometry");
    g->key_cos = bwt_calloc((size_t)L * g->n_hyp * g->n_hyp, sizeof(double), "geometry");
    g->key_orth_init = init ? bwt_calloc((size_t)L * NH, sizeof(double), "geometry") : NULL;
    if (!g->key_orth || !g->key_cos || (init && !g->key_orth_init)) s = BWT_STATUS_NOMEM;
    if (s == BWT_STATUS_OK) s = key_frames(model, g->hyp_lo, g->n_hyp, g->key_orth, g->key_cos);
    if (s == BWT_STATUS_OK && init) s = key_frames(init, g->hyp_lo, g->n_hyp, g->key_orth_init, NULL);
  }
  if (s == BWT_STATUS_OK) s = bwt_eval_acc_create(&acc, task);
  if (s == BWT_STATUS_OK) s = bwt_batch_alloc(&b, task, B);
  unsigned points = rows_points | (attn ? BWT_CAPTURE_QUERIES | BWT_CAPTURE_KEYS | BWT_CAPTURE_ATTENTION : 0) |
                    (ssm ? BWT_CAPTURE_SCAN_STATE : 0);
  /* Held-out sequences 0..n_seqs-1, the last batch holding only those left. */
  for (int i = 0, done = 0; s == BWT_STATUS_OK && done < opt->n_seqs; i++, done += B) {
    const float *logits = NULL;
    int keep = opt->n_seqs - done < B ? opt->n_seqs - done : B, full_B = b.B;
    b.B = keep;
    s = bwt_eval_sample(task, opt->seed, done, &b);
    if (s == BWT_STATUS_OK) s = bwt_model_capture(model, &b, NULL, points, &cap, &logits);
    if (s == BWT_STATUS_OK) s = bwt_eval_add(acc, logits, &b);
    b.B = full_B;
    if (s != BWT_STATUS_OK) break;
    if (ssm && !c.states) { /* the state's width, as the first capture reports it */
      g->S = cap.S;
      c.states = bwt_calloc((size_t)L * R * g->S, sizeof(float), "geometry scan states");
      if (!c.states) {
        s = BWT_STATUS_NOMEM;
        break;
      }
    }
    collect(g, &c, &cap, &b, logits, keep, (long)done * n, K);
    if (i == 0) {
      memcpy(g->sup_pos0, b.sup_pos, sizeof(int32_t) * n);
      for (int l = 0; l < L && attn; l++)
        for (int h = 0; h < NH; h++)
          for (int j = 0; j < n; j++)
            for (int t = 0; t < T; t++)
              g->attn_map[((size_t)l * n + j) * T + t] +=
                  cap.attention[((((size_t)l * keep) * NH + h) * n + j) * T + t] / NH;
    }
    bwt_capture_free(&cap);
  }
  bwt_eval_result ev;
  memset(&ev, 0, sizeof ev);
  if (s == BWT_STATUS_OK) s = bwt_eval_finish(acc, &ev);
  if (s == BWT_STATUS_OK) {
    g->entropy_mae = ev.overall.entropy_mae;
    g->kl_bits = ev.overall.kl_bits;
    double u = 0;
    for (int j = 0; j < n; j++) u += log2(g->sup_pos0[j] + 1.0);
    g->uniform_entropy = u / n;
    g->attn_reduction = NAN;
    if (attn) {
      for (size_t i = 0; i < LnT; i++) g->qk_cos[i] = c.qk_count[i] > 0 ? c.qk_sum[i] / c.qk_count[i] : NAN;
      for (int i = 0; i < L * NH; i++) g->attn_entropy[i] = c.attn_sum[i] / (double)c.attn_count;
      double first = 0, last = 0;
      for (int h = 0; h < NH; h++) {
        first += g->attn_entropy[h] / NH;
        last += g->attn_entropy[(L - 1) * NH + h] / NH;
      }
      g->attn_reduction = first > 0 ? 1 - last / first : NAN;
    }
    for (int l = 0; l < L && ssm; l++) {
      const float *X = c.states + (size_t)l * R * g->S;
      manifold(&g->state[l], X, g->bayes_entropy, R, g->S, NULL);
      g->state_probe_r2[l] = probe(X, g->bayes_entropy, R, g->S, n, opt->ridge);
    }
    manifold(&g->final, c.final, g->bayes_entropy, R, C, g->pc_scores);
    for (int l = 0; l < L; l++) manifold(&g->layer[l], c.blocks + (size_t)l * R * C, g->bayes_entropy, R, C, NULL);
    g->probe_r2[0] = probe(c.embed, g->bayes_entropy, R, C, n, opt->ridge);
    for (int l = 0; l < L; l++)
      g->probe_r2[l + 1] = probe(c.blocks + (size_t)l * R * C, g->bayes_entropy, R, C, n, opt->ridge);
    g->probe_r2[L + 1] = probe(c.final, g->bayes_entropy, R, C, n, opt->ridge);
  }
  bwt_eval_result_free(&ev);
  bwt_capture_free(&cap);
  bwt_eval_acc_free(acc);
  bwt_batch_free(&b);
  free(c.embed);
  free(c.final);
  free(c.blocks);
  free(c.states);
  free(c.qk_sum);
  free(c.qk_count);
  free(c.attn_sum);
  if (s != BWT_STATUS_OK) bwt_geometry_free(g);
  return s;
}
