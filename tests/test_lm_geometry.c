/* Paper III's language-model geometry (bwt/lab/lm_geometry.h, lm_pools.h, lm_intervene.h) and the
 * per-head key weights it reads (bwt/lm_weights.h):
 *  - each metric on constructed inputs with a known answer: rank-1 values give PC1 = 1 and |ρ| = 1,
 *    a known Spearman (0.8); a checkpoint with zero queries attends uniformly (log2 T bits per head,
 *    no reduction), orthonormal W_K columns give 0, equal columns 1;
 *  - grouped-query and fused layouts: the per-KV-head key rows equal the weights file's rows
 *    (llama_gqa: k_proj; neox_parallel: query_key_value per head; gpt2: c_attn's key columns) and
 *    reproduce hook_k from ln1's output;
 *  - the stratified draw, the pools (ids sampled from the model; text pools through the real GPT-2
 *    tokenizer on a random checkpoint of its vocabulary, when shared/ has it);
 *  - interventions: the random axis is unit and orthogonal to u, the cut leaves u⊥ unchanged,
 *    keep-only then cut gives ~0, α = 0 is the identity (logits bit-identical), SULA MAE by hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_geometry.h"
#include "bwt/lab/lm_intervene.h"
#include "bwt/lab/lm_pools.h"
#include "bwt/lab/stats.h"
#include "bwt/lm.h"
#include "bwt/lm_weights.h"
#include "bwt/rng.h"
#include "bwt/safetensors.h"
#include "bwt/tokenizer.h"
#include "bwt/train.h"
#include "testutil.h"

static void fixture_dir(char *out, size_t n, const char *name) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/fixtures/lm/%s", dir_len, slash ? src : ".", name);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void copy_file(const char *from, const char *to) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(bwt_read_file(from, &text, &len), BWT_STATUS_OK);
  assert_int_equal(bwt_write_file_atomic(to, text, len), BWT_STATUS_OK);
  free(text);
}

/* ---- constructed inputs -------------------------------------------------------------------------- */

static void test_manifold_known(void **state) {
  enum { n = 40, d = 6 };
  float X[n * d];
  double H[n], t[n];
  /* Rank 1: x_i = t_i·w + c with a constant coordinate; the entropy a monotone function of t. */
  for (int i = 0; i < n; i++) {
    t[i] = i - 17.5 + 0.1 * (i % 3);
    H[i] = pow(t[i] + 30, 3);
    for (int j = 0; j < d; j++) X[i * d + j] = j == 4 ? 2.5f : (float)(t[i] * (j + 1) * (j % 2 ? -1 : 1) + j);
  }
  double pc1, pc12, pr, rho, u[d], sc[2 * n];
  assert_int_equal(bwt_lm_manifold_stats(X, n, d, H, &pc1, &pc12, &pr, &rho, u, sc), BWT_STATUS_OK);
  print_message("  rank 1: PC1 %.9f, PR %.6f, |rho| %.6f\n", pc1, pr, fabs(rho));
  assert_true(fabs(pc1 - 1) < 1e-6 && fabs(pc12 - 1) < 1e-6 && fabs(pr - 1) < 1e-5);
  assert_true(fabs(fabs(rho) - 1) < 1e-12);
  assert_true(fabs(u[4]) < 1e-6); /* the constant coordinate takes no part */
  /* A known Spearman: scores ∝ ±(1..5), entropies ranked 2,1,4,3,5: ρ = 1 − 6·4/(5·24) = 0.8. */
  float Y[5 * 2];
  double h5[5] = {2, 1, 4, 3, 5};
  for (int i = 0; i < 5; i++) Y[2 * i] = (float)(i + 1), Y[2 * i + 1] = (float)(2 * (i + 1));
  assert_int_equal(bwt_lm_manifold_stats(Y, 5, 2, h5, &pc1, &pc12, &pr, &rho, NULL, NULL), BWT_STATUS_OK);
  assert_true(fabs(fabs(rho) - 0.8) < 1e-12);
  /* Isotropic: two independent coordinates of equal variance: PC1 = PC2 = 1/2, PR 2. */
  float Z[4 * 2] = {1, 0, -1, 0, 0, 1, 0, -1};
  double h4[4] = {0, 1, 2, 3};
  assert_int_equal(bwt_lm_manifold_stats(Z, 4, 2, h4, &pc1, &pc12, &pr, &rho, NULL, NULL), BWT_STATUS_OK);
  assert_true(fabs(pc1 - 0.5) < 1e-9 && fabs(pr - 2) < 1e-9);
}

static void test_stratified_draw(void **state) {
  enum { n = 100 };
  double e[n];
  for (int i = 0; i < n; i++) e[i] = (i * 37) % n; /* a permutation of 0..99: rank = value */
  int idx[15], q[15], got = 0, idx2[15], q2[15], got2 = 0;
  assert_int_equal(bwt_lm_stratified_draw(e, n, 3, 7, idx, q, &got), BWT_STATUS_OK);
  assert_int_equal(got, 15);
  for (int k = 0; k < 15; k++) {
    assert_int_equal(q[k], k / 3);
    assert_true(e[idx[k]] >= 20 * q[k] && e[idx[k]] < 20 * (q[k] + 1));
    for (int j = 0; j < k; j++) assert_int_not_equal(idx[j], idx[k]);
  }
  assert_int_equal(bwt_lm_stratified_draw(e, n, 3, 7, idx2, q2, &got2), BWT_STATUS_OK);
  assert_memory_equal(idx, idx2, sizeof idx);
  assert_int_equal(bwt_lm_stratified_draw(e, n, 3, 8, idx2, q2, &got2), BWT_STATUS_OK);
  assert_memory_not_equal(idx, idx2, sizeof idx);
  /* Quintiles smaller than the request give all they have: 7 candidates, quintiles of 2,1,2,1,1. */
  int all[50], qa[50], m = 0;
  assert_int_equal(bwt_lm_stratified_draw(e, 7, 10, 1, all, qa, &m), BWT_STATUS_OK);
  assert_int_equal(m, 7);
  assert_int_equal(bwt_lm_stratified_draw(e, 7, 0, 1, all, qa, &m), BWT_STATUS_ARG);
}

static void test_axis_ops(void **state) {
  enum { d = 12 };
  double u[d], r[d], mu[d], sd[d], nu = 0;
  bwt_rng rng;
  bwt_rng_seed(&rng, 3, 0);
  for (int j = 0; j < d; j++) u[j] = bwt_rng_normal(&rng), nu += u[j] * u[j], mu[j] = bwt_rng_normal(&rng), sd[j] = 0.5 + bwt_rng_uniform(&rng);
  for (int j = 0; j < d; j++) u[j] /= sqrt(nu);
  assert_int_equal(bwt_lm_random_orthogonal_axis(u, d, 9, r), BWT_STATUS_OK);
  double dot = 0, nr = 0;
  for (int j = 0; j < d; j++) dot += u[j] * r[j], nr += r[j] * r[j];
  assert_true(fabs(dot) < 1e-6 && fabs(nr - 1) < 1e-12);
  assert_int_equal(bwt_lm_random_orthogonal_axis(u, 1, 9, r), BWT_STATUS_ARG);
  /* A basis of u⊥: Gram–Schmidt of u and the unit vectors; its last d−1 vectors. */
  double B[d][d];
  int nb = 0;
  for (int k = -1; k < d && nb < d; k++) {
    double w[d];
    for (int j = 0; j < d; j++) w[j] = k < 0 ? u[j] : (j == k);
    for (int b = 0; b < nb; b++) {
      double p = 0;
      for (int j = 0; j < d; j++) p += w[j] * B[b][j];
      for (int j = 0; j < d; j++) w[j] -= p * B[b][j];
    }
    double nw = 0;
    for (int j = 0; j < d; j++) nw += w[j] * w[j];
    if (nw < 1e-8) continue;
    for (int j = 0; j < d; j++) B[nb][j] = w[j] / sqrt(nw);
    nb++;
  }
  assert_int_equal(nb, d);
  float v[d], v0[d];
  for (int j = 0; j < d; j++) v0[j] = v[j] = (float)(mu[j] + sd[j] * 2 * bwt_rng_normal(&rng));
  bwt_lm_axis_apply(BWT_AXIS_CUT, 1, 1, u, mu, sd, d, v);
  double err = 0, along = 0;
  for (int b = 1; b < d; b++) {
    double p0 = 0, p1 = 0;
    for (int j = 0; j < d; j++) p0 += (v0[j] - mu[j]) / sd[j] * B[b][j], p1 += (v[j] - mu[j]) / sd[j] * B[b][j];
    err = fmax(err, fabs(p1 - p0));
  }
  for (int j = 0; j < d; j++) along += (v[j] - mu[j]) / sd[j] * u[j];
  print_message("  cut: u-perp components moved by %.2e (float storage), component along u %.2e\n", err, along);
  assert_true(err < 1e-5 && fabs(along) < 1e-5);
  /* keep-only, then cut: nothing left (in standardised coordinates). */
  for (int j = 0; j < d; j++) v[j] = v0[j];
  bwt_lm_axis_apply(BWT_AXIS_KEEP, 1, 1, u, mu, sd, d, v);
  bwt_lm_axis_apply(BWT_AXIS_CUT, 1, 1, u, mu, sd, d, v);
  double left = 0;
  for (int j = 0; j < d; j++) left = fmax(left, fabs((v[j] - mu[j]) / sd[j]));
  assert_true(left < 1e-5);
  /* A shift by α·s along u moves the projection by exactly that; α = 0 of each op is the identity. */
  for (int j = 0; j < d; j++) v[j] = v0[j];
  bwt_lm_axis_apply(BWT_AXIS_SHIFT, -1, 1.75, u, mu, sd, d, v);
  double p0 = 0, p1 = 0;
  for (int j = 0; j < d; j++) p0 += (v0[j] - mu[j]) / sd[j] * u[j], p1 += (v[j] - mu[j]) / sd[j] * u[j];
  assert_true(fabs(p1 - p0 + 1.75) < 1e-5);
  for (int op = 0; op < 3; op++) {
    for (int j = 0; j < d; j++) v[j] = v0[j];
    bwt_lm_axis_apply((bwt_axis_op)op, 0, 1.75, u, mu, sd, d, v);
    assert_memory_equal(v, v0, sizeof v);
  }
}

/* ---- per-KV-head key weights -------------------------------------------------------------------------- */

/* The key rows from bwt_lm_key_weights against the file: row (kv, i) is output o(kv, i) of tensor
 * name (OC outputs; in_out: stored (C, OC)). */
static void check_key_rows(const char *fixture, const char *fmt, int OC, int per_head, int blocks, int in_out) {
  char dir[1300], path[1400], name[160];
  fixture_dir(dir, sizeof dir, fixture);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  bwt_st_file *st = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&st, path), BWT_STATUS_OK);
  float *W = malloc(sizeof(float) * c->hs * c->C);
  for (int l = 0; l < c->L; l++) {
    snprintf(name, sizeof name, fmt, l);
    const float *F = NULL;
    int64_t shape[2] = {in_out ? c->C : OC, in_out ? OC : c->C};
    assert_int_equal(bwt_safetensors_get_f32(st, name, 2, shape, &F), BWT_STATUS_OK);
    for (int kv = 0; kv < c->NKV; kv++) {
      assert_int_equal(bwt_lm_key_weights(lm, l, kv, W), BWT_STATUS_OK);
      for (int i = 0; i < c->hs; i++) {
        int o = per_head ? (3 * kv + 1) * c->hs + i : blocks ? c->C + kv * c->hs + i : kv * c->hs + i;
        for (int ch = 0; ch < c->C; ch++) assert_true(W[i * c->C + ch] == (in_out ? F[(size_t)ch * OC + o] : F[(size_t)o * c->C + ch]));
      }
    }
  }
  assert_int_equal(bwt_lm_key_weights(lm, c->L, 0, W), BWT_STATUS_ARG);
  assert_int_equal(bwt_lm_key_weights(lm, 0, c->NKV, W), BWT_STATUS_ARG);
  free(W);
  bwt_safetensors_close(st);
  bwt_lm_close(lm);
}

/* hook_k of layer 0 recomputed from ln1's output and the per-head key rows (RMSNorm weight, no bias:
 * llama_gqa). */
static void test_key_weights_reproduce_keys(void **state) {
  char dir[1300], path[1400];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  assert_int_equal(c->NKV, 2);
  assert_int_equal(c->NH, 4);
  int32_t tok[5] = {4, 9, 1, 33, 20};
  const char *pats[] = {"blocks.1.ln1.hook_normalized", "blocks.1.attn.hook_k"};
  bwt_lm_capture cap;
  assert_int_equal(bwt_lm_capture_run(lm, tok, 5, pats, 2, &cap, NULL), BWT_STATUS_OK);
  bwt_st_file *st = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&st, path), BWT_STATUS_OK);
  const float *lnw = NULL;
  int64_t cs[1] = {c->C};
  assert_int_equal(bwt_safetensors_get_f32(st, "model.layers.1.input_layernorm.weight", 1, cs, &lnw), BWT_STATUS_OK);
  float *W = malloc(sizeof(float) * c->hs * c->C);
  double err = 0, big = 0;
  for (int kv = 0; kv < c->NKV; kv++) {
    assert_int_equal(bwt_lm_key_weights(lm, 1, kv, W), BWT_STATUS_OK);
    for (int t = 0; t < 5; t++)
      for (int i = 0; i < c->hs; i++) {
        double acc = 0;
        for (int ch = 0; ch < c->C; ch++) acc += (double)cap.acts[0].data[t * c->C + ch] * lnw[ch] * W[i * c->C + ch];
        double got = cap.acts[1].data[(t * c->NKV + kv) * c->hs + i];
        err = fmax(err, fabs(got - acc)), big = fmax(big, fabs(acc));
      }
  }
  print_message("  llama_gqa: hook_k from the per-KV-head key rows, max error %.2e of %.2f\n", err, big);
  assert_true(err < 1e-5 * big);
  free(W);
  bwt_safetensors_close(st);
  bwt_lm_capture_free(&cap);
  bwt_lm_close(lm);
}

static void test_key_weight_layouts(void **state) {
  check_key_rows("llama_gqa", "model.layers.%d.self_attn.k_proj.weight", 2 * 8, 0, 0, 0);
  check_key_rows("neox_parallel", "gpt_neox.layers.%d.attention.query_key_value.weight", 3 * 32, 1, 0, 0);
  check_key_rows("gpt2", "transformer.h.%d.attn.c_attn.weight", 3 * 32, 0, 1, 1);
}

/* bwt_lm_reinit: N(0, 0.02²) key rows, norms 1 (hook_k is then ln1's output times the rows), the
 * same seed the same model bit for bit, another seed another one; GPT-2's layout (tied, biases,
 * learned positions) runs too. */
static void test_reinit(void **state) {
  char dir[1300];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  bwt_lm *a = NULL, *b = NULL;
  assert_int_equal(bwt_lm_open(&a, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_open(&b, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(a);
  assert_int_equal(bwt_lm_reinit(a, 5, 0.02), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_reinit(b, 5, 0.02), BWT_STATUS_OK);
  float *W = malloc(sizeof(float) * c->hs * c->C);
  double ss = 0;
  long n = 0;
  for (int l = 0; l < c->L; l++)
    for (int kv = 0; kv < c->NKV; kv++) {
      assert_int_equal(bwt_lm_key_weights(a, l, kv, W), BWT_STATUS_OK);
      for (int i = 0; i < c->hs * c->C; i++) ss += (double)W[i] * W[i], n++;
    }
  double sd = sqrt(ss / n);
  int32_t tok[6] = {1, 7, 3, 3, 50, 2};
  const char *pats[] = {"blocks.1.ln1.hook_normalized", "blocks.1.attn.hook_k"};
  bwt_lm_capture cap;
  float *la = malloc(sizeof(float) * 6 * c->V), *lb = malloc(sizeof(float) * 6 * c->V);
  assert_int_equal(bwt_lm_capture_run(a, tok, 6, pats, 2, &cap, la), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_key_weights(a, 1, 1, W), BWT_STATUS_OK);
  double err = 0, big = 0;
  for (int t = 0; t < 6; t++)
    for (int i = 0; i < c->hs; i++) {
      double acc = 0;
      for (int ch = 0; ch < c->C; ch++) acc += (double)cap.acts[0].data[t * c->C + ch] * W[i * c->C + ch];
      err = fmax(err, fabs(acc - cap.acts[1].data[(t * c->NKV + 1) * c->hs + i])), big = fmax(big, fabs(acc));
    }
  print_message("  re-init: key weights sd %.5f (want 0.02), hook_k with norm weight 1 to %.1e of %.3f\n", sd, err, big);
  assert_true(fabs(sd - 0.02) < 0.002);
  assert_true(err < 1e-5 * big);
  bwt_lm_capture_free(&cap);
  bwt_lm_reset(b);
  assert_int_equal(bwt_lm_forward(b, tok, 6, lb), BWT_STATUS_OK);
  assert_memory_equal(la, lb, sizeof(float) * 6 * c->V);
  assert_int_equal(bwt_lm_reinit(b, 6, 0.02), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_forward(b, tok, 6, lb), BWT_STATUS_OK);
  assert_memory_not_equal(la, lb, sizeof(float) * 6 * c->V);
  assert_int_equal(bwt_lm_reinit(b, 6, 0), BWT_STATUS_ARG);
  bwt_lm_close(a);
  bwt_lm_close(b);
  fixture_dir(dir, sizeof dir, "gpt2");
  assert_int_equal(bwt_lm_open(&a, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_reinit(a, 5, 0.02), BWT_STATUS_OK);
  const bwt_lm_config *g = bwt_lm_config_of(a);
  float *lg = malloc(sizeof(float) * 6 * g->V);
  assert_int_equal(bwt_lm_forward(a, tok, 6, lg), BWT_STATUS_OK);
  for (int i = 0; i < 6 * g->V; i++) assert_true(isfinite(lg[i]) && fabs(lg[i]) < 5);
  bwt_lm_close(a);
  free(lg), free(la), free(lb), free(W);
}

/* ---- checkpoints written here ---------------------------------------------------------------------- */

/* dir gets llama_gqa with every q_proj zeroed (attention uniform over the prefix), layer 0's k_proj
 * rows orthonormal (e_0.., scaled per head) and layer 1's k_proj rows all equal. */
static void write_uniform_attention(const char *dir) {
  char src[1300], path[1400], out[1400];
  fixture_dir(src, sizeof src, "llama_gqa");
  snprintf(path, sizeof path, "%s/model.safetensors", src);
  bwt_st_file *st = NULL;
  assert_int_equal(bwt_safetensors_open_lazy(&st, path), BWT_STATUS_OK);
  int n = bwt_safetensors_count(st);
  bwt_st_tensor *t = calloc((size_t)n, sizeof *t);
  float **bufs = calloc((size_t)n, sizeof *bufs);
  for (int i = 0; i < n; i++) {
    bwt_st_info in = bwt_safetensors_info_at(st, i);
    const float *data = NULL;
    assert_int_equal(bwt_safetensors_get_f32(st, in.name, in.ndim, in.shape, &data), BWT_STATUS_OK);
    bufs[i] = malloc(in.n_elems * sizeof(float));
    memcpy(bufs[i], data, in.n_elems * sizeof(float));
    if (strstr(in.name, "q_proj")) memset(bufs[i], 0, in.n_elems * sizeof(float));
    if (strcmp(in.name, "model.layers.0.self_attn.k_proj.weight") == 0) /* (16, 32): row o = e_o · (o+1) */
      for (size_t o = 0; o < (size_t)in.shape[0]; o++)
        for (size_t ch = 0; ch < (size_t)in.shape[1]; ch++) bufs[i][o * in.shape[1] + ch] = ch == o ? (float)(o + 1) : 0.0f;
    if (strcmp(in.name, "model.layers.1.self_attn.k_proj.weight") == 0)
      for (size_t o = 1; o < (size_t)in.shape[0]; o++) memcpy(bufs[i] + o * in.shape[1], bufs[i], (size_t)in.shape[1] * sizeof(float));
    t[i] = (bwt_st_tensor){in.name, BWT_DTYPE_F32, in.ndim, {in.shape[0], in.shape[1]}, bufs[i]};
  }
  assert_int_equal(bwt_mkdir_p(dir), BWT_STATUS_OK);
  snprintf(out, sizeof out, "%s/model.safetensors", dir);
  assert_int_equal(bwt_safetensors_write(out, t, n, NULL, NULL, 0), BWT_STATUS_OK);
  snprintf(path, sizeof path, "%s/config.json", src);
  snprintf(out, sizeof out, "%s/config.json", dir);
  copy_file(path, out);
  for (int i = 0; i < n; i++) free(bufs[i]);
  free(bufs), free(t);
  bwt_safetensors_close(st);
}

static void test_geometry_known(void **state) {
  const char *dir = test_tmpdir("lm_geometry_uniform");
  write_uniform_attention(dir);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  bwt_lm_pool pool;
  assert_int_equal(bwt_lm_pool_builtin(&pool, "ids", lm, NULL, 12, 5), BWT_STATUS_OK);
  assert_int_equal(pool.n, 12);
  bwt_lm_geometry_options o;
  bwt_lm_geometry_options_default(&o);
  o.n_boot = 50, o.all_layers = 1;
  bwt_lm_geometry g;
  assert_int_equal(bwt_lm_geometry_compute(lm, NULL, &pool, NULL, &o, &g, NULL, NULL), BWT_STATUS_OK);
  double want = 0;
  for (int i = 0; i < pool.n; i++) want += log2(pool.p[i].n) / pool.n;
  for (int l = 0; l < g.L; l++) {
    for (int h = 0; h < g.NH; h++) assert_true(fabs(g.attn_head[l * g.NH + h] - want) < 1e-5);
    assert_true(fabs(g.attn_mean_heads[l] - want) < 1e-5 && fabs(g.attn_of_mean[l] - want) < 1e-5);
  }
  assert_true(fabs(g.uniform_entropy - want) < 1e-12);
  assert_true(fabs(g.attn_reduction.est) < 1e-5 && fabs(g.attn_reduction_bits.est) < 1e-5);
  print_message("  zero queries: attention %.6f bits per head = mean log2 T %.6f; reduction %.2e\n", g.attn_mean_heads[1], want,
                g.attn_reduction.est);
  /* (a): orthonormal columns 0, equal columns 1; the in-memory init near its Gaussian value. */
  for (int h = 0; h < g.NKV; h++) {
    assert_true(g.key_w[h] < 1e-12);
    assert_true(fabs(g.key_w[g.NKV + h] - 1) < 1e-6);
    assert_true(fabs(g.key_w_init[h] - g.key_w_gaussian) < 0.05);
  }
  assert_true(isnan(g.key_act_init[0]));
  assert_int_equal(g.n_manifold, g.L);
  for (int m = 0; m < g.n_manifold; m++) {
    const bwt_lm_manifold *v = &g.manifold[m];
    assert_true(v->pc1.est > 0 && v->pc1.est <= v->pc12.est + 1e-12 && v->pc12.est <= 1 + 1e-9);
    assert_true(v->participation_ratio.est >= 1 - 1e-9 && v->participation_ratio.est <= g.NKV * g.hs + 1e-9);
    assert_true(v->pc1.lo <= v->pc1.hi && v->spearman.lo <= v->spearman.hi);
  }
  /* RoPE turns every head's key at one position by the same rotation: (b) is the same after it. */
  for (int l = 0; l < g.L; l++) assert_true(fabs(g.key_act[l] - g.key_act_rot[l]) < 1e-5);
  char *json = bwt_lm_geometry_to_json(&g, dir, "ids");
  assert_non_null(json);
  assert_non_null(strstr(json, "\"entropy_of_head_mean_pattern\""));
  free(json);
  bwt_lm_geometry_free(&g);
  /* An init model of the same configuration: (a) and (b) read from it (here the model itself). */
  bwt_lm *init = NULL;
  assert_int_equal(bwt_lm_open(&init, dir), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_geometry_compute(lm, init, &pool, NULL, &o, &g, NULL, NULL), BWT_STATUS_OK);
  assert_memory_equal(g.key_w, g.key_w_init, sizeof(double) * g.L * g.NKV);
  for (int l = 0; l < g.L; l++) assert_true(g.key_act[l] == g.key_act_init[l]);
  bwt_lm_geometry_free(&g);
  bwt_lm_close(init);
  char other[1300];
  fixture_dir(other, sizeof other, "llama_mha");
  assert_int_equal(bwt_lm_open(&init, other), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_geometry_compute(lm, init, &pool, NULL, &o, &g, NULL, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "not the same configuration"));
  bwt_lm_close(init);
  bwt_lm_pool_free(&pool);
  bwt_lm_close(lm);
}

/* ---- pools ------------------------------------------------------------------------------------------ */

static void test_ids_pool(void **state) {
  char dir[1300];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  bwt_lm_pool a, b;
  assert_int_equal(bwt_lm_pool_builtin(&a, "ids", lm, NULL, 30, 1), BWT_STATUS_OK);
  assert_int_equal(bwt_lm_pool_builtin(&b, "ids", lm, NULL, 30, 1), BWT_STATUS_OK);
  assert_int_equal(a.n, 30);
  for (int i = 0; i < a.n; i++) {
    assert_true(a.p[i].n >= 8 && a.p[i].n <= 24);
    assert_int_equal(a.p[i].ids[0], 1); /* BOS from config.json */
    assert_string_equal(a.p[i].domain, "ids");
    assert_int_equal(a.p[i].n, b.p[i].n);
    assert_memory_equal(a.p[i].ids, b.p[i].ids, sizeof(int32_t) * a.p[i].n);
  }
  double e[30];
  assert_int_equal(bwt_lm_pool_entropy(lm, &a, e), BWT_STATUS_OK);
  for (int i = 0; i < 30; i++) assert_true(e[i] > 0 && e[i] <= 6 + 1e-9); /* ≤ log2 64 */
  bwt_lm_pool_free(&a);
  bwt_lm_pool_free(&b);
  assert_int_equal(bwt_lm_pool_builtin(&a, "math", lm, NULL, 30, 1), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "no tokenizer"));
  assert_int_equal(bwt_lm_pool_builtin(&a, "poetry", lm, NULL, 30, 1), BWT_STATUS_ARG);
  /* JSON lines: tokens with a domain; text without a tokenizer is refused; ids checked. */
  const char *tmp = test_tmpdir("lm_geometry_pool");
  char path[1200];
  snprintf(path, sizeof path, "%s/p.jsonl", tmp);
  write_text(path, "{\"tokens\": [1, 2, 3], \"domain\": \"x\"}\n\n{\"tokens\": [5]}\n");
  assert_int_equal(bwt_lm_pool_read(&a, path, lm, NULL), BWT_STATUS_OK);
  assert_int_equal(a.n, 2);
  assert_string_equal(a.p[0].domain, "x");
  assert_string_equal(a.p[1].domain, "user");
  bwt_lm_pool_free(&a);
  write_text(path, "{\"tokens\": [1, 64]}\n");
  assert_int_equal(bwt_lm_pool_read(&a, path, lm, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "token 1 is not an id in 0..63"));
  write_text(path, "{\"text\": \"hi\"}\n");
  assert_int_equal(bwt_lm_pool_read(&a, path, lm, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "needs the model's tokenizer"));
  bwt_lm_close(lm);
}

/* A random Llama checkpoint over GPT-2's 50257 ids (tied, one tiny layer), for the text pools. */
static void write_gpt2_vocab_model(const char *dir) {
  enum { V = 50257, C = 16, F = 32, KV = 8 };
  char path[1400];
  snprintf(path, sizeof path, "%s/config.json", dir);
  assert_int_equal(bwt_mkdir_p(dir), BWT_STATUS_OK);
  write_text(path, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 16,"
                   " \"intermediate_size\": 32, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                   " \"num_key_value_heads\": 1, \"vocab_size\": 50257, \"max_position_embeddings\": 128,"
                   " \"tie_word_embeddings\": true, \"hidden_act\": \"silu\", \"bos_token_id\": -1}");
  struct { const char *name; int64_t r, c; } spec[] = {
      {"model.embed_tokens.weight", V, C}, {"model.norm.weight", C, 0},
      {"model.layers.0.input_layernorm.weight", C, 0}, {"model.layers.0.post_attention_layernorm.weight", C, 0},
      {"model.layers.0.self_attn.q_proj.weight", C, C}, {"model.layers.0.self_attn.k_proj.weight", KV, C},
      {"model.layers.0.self_attn.v_proj.weight", KV, C}, {"model.layers.0.self_attn.o_proj.weight", C, C},
      {"model.layers.0.mlp.gate_proj.weight", F, C}, {"model.layers.0.mlp.up_proj.weight", F, C},
      {"model.layers.0.mlp.down_proj.weight", C, F}};
  enum { NT = sizeof spec / sizeof *spec };
  bwt_st_tensor t[NT];
  float *bufs[NT];
  for (int i = 0; i < NT; i++) {
    size_t n = (size_t)spec[i].r * (spec[i].c ? (size_t)spec[i].c : 1);
    bufs[i] = malloc(n * sizeof(float));
    if (!spec[i].c) for (size_t j = 0; j < n; j++) bufs[i][j] = 1.0f;
    else test_fill_uniform(bufs[i], n, -0.5f, 0.5f, 100 + (uint64_t)i);
    t[i] = (bwt_st_tensor){spec[i].name, BWT_DTYPE_F32, spec[i].c ? 2 : 1, {spec[i].r, spec[i].c}, bufs[i]};
  }
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  assert_int_equal(bwt_safetensors_write(path, t, NT, NULL, NULL, 0), BWT_STATUS_OK);
  for (int i = 0; i < NT; i++) free(bufs[i]);
}

static void test_text_pools(void **state) {
  const char *tokdir = test_shared_path("tokenizers/gpt2");
  char tokpath[1300];
  snprintf(tokpath, sizeof tokpath, "%s", tokdir);
  if (!test_shared_present(tokpath)) return;
  bwt_tokenizer *tok = NULL;
  assert_int_equal(bwt_tokenizer_load(&tok, tokpath), BWT_STATUS_OK);
  char dir[1300];
  snprintf(dir, sizeof dir, "%s", test_tmpdir("lm_geometry_gpt2vocab"));
  write_gpt2_vocab_model(dir);
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const char *names[] = {"math", "code", "prose", "legal", "mixed"};
  for (int k = 0; k < 5; k++) {
    bwt_lm_pool p;
    bwt_status s = bwt_lm_pool_builtin(&p, names[k], lm, tok, 40, 2);
    if (k == 3 && s != BWT_STATUS_OK) { /* no /usr/share/common-licenses here */
      print_message("  legal: %s (skipped)\n", bwt_last_error());
      continue;
    }
    assert_int_equal(s, BWT_STATUS_OK);
    assert_int_equal(p.n, 40);
    int per[4] = {0};
    for (int i = 0; i < p.n; i++) {
      assert_true(p.p[i].n >= 1);
      for (int j = 0; j < i; j++) assert_false(p.p[j].n == p.p[i].n && memcmp(p.p[j].ids, p.p[i].ids, sizeof(int32_t) * p.p[i].n) == 0);
      for (int d = 0; d < 4; d++) per[d] += strcmp(p.p[i].domain, names[d]) == 0;
      if (k < 4) assert_string_equal(p.p[i].domain, names[k]);
    }
    char *first = NULL;
    assert_int_equal(bwt_tokenizer_decode(tok, p.p[0].ids, (size_t)p.p[0].n, &first), BWT_STATUS_OK);
    print_message("  %-5s 40 distinct candidates, first \"%s\"\n", names[k], first);
    free(first);
    if (k == 4) assert_true(per[0] == 10 && per[1] == 10 && per[2] == 10 && per[3] == 10);
    bwt_lm_pool_free(&p);
  }
  /* The fixture's 64 ids cannot hold GPT-2's tokens: one clear error. */
  char small[1300];
  fixture_dir(small, sizeof small, "llama_gqa");
  bwt_lm *tiny = NULL;
  assert_int_equal(bwt_lm_open(&tiny, small), BWT_STATUS_OK);
  bwt_lm_pool p;
  assert_int_equal(bwt_lm_pool_builtin(&p, "prose", tiny, tok, 10, 2), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "outside the model's vocabulary 0..63"));
  bwt_lm_close(tiny);
  bwt_lm_close(lm);
  bwt_tokenizer_free(tok);
}

/* ---- interventions ------------------------------------------------------------------------------------- */

static void test_intervene(void **state) {
  char dir[1300];
  fixture_dir(dir, sizeof dir, "llama_gqa");
  bwt_lm *lm = NULL;
  assert_int_equal(bwt_lm_open(&lm, dir), BWT_STATUS_OK);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  bwt_lm_pool pool;
  assert_int_equal(bwt_lm_pool_builtin(&pool, "ids", lm, NULL, 20, 4), BWT_STATUS_OK);
  /* Two SULA records with labels 3 and 4. */
  bwt_lm_record rec[2] = {{.tokens = pool.p[0].ids, .T = pool.p[0].n, .has_labels = 1, .labels = {3, 4}, .posterior = {0.9, 0.1}},
                         {.tokens = pool.p[1].ids, .T = pool.p[1].n, .has_labels = 1, .labels = {3, 4}, .posterior = {0.5, 0.5}}};
  bwt_lm_intervention iv;
  assert_int_equal(bwt_lm_intervene(lm, &pool, 1, 1.0, 7, rec, 2, &iv, NULL, NULL), BWT_STATUS_OK);
  assert_int_equal(iv.n_effects, 8);
  double dot = 0, nr = 0;
  for (int j = 0; j < iv.d; j++) dot += iv.u[j] * iv.r[j], nr += iv.r[j] * iv.r[j];
  assert_true(fabs(dot) < 1e-6 && fabs(nr - 1) < 1e-12);
  /* α = 0: the logits of bwt_lm_forward, bit for bit. */
  float *a = malloc(sizeof(float) * c->V * 24), *b = malloc(sizeof(float) * c->V);
  const bwt_lm_prompt *p = &pool.p[3];
  bwt_lm_reset(lm);
  assert_int_equal(bwt_lm_forward(lm, p->ids, p->n, a), BWT_STATUS_OK);
  for (int op = 0; op < 3; op++) {
    assert_int_equal(bwt_lm_intervene_logits(lm, &iv, iv.u, (bwt_axis_op)op, 0.0, p->ids, p->n, b), BWT_STATUS_OK);
    assert_memory_equal(b, a + (size_t)(p->n - 1) * c->V, sizeof(float) * c->V);
  }
  /* The full cut changes the final logits. */
  assert_int_equal(bwt_lm_intervene_logits(lm, &iv, iv.u, BWT_AXIS_CUT, 1.0, p->ids, p->n, b), BWT_STATUS_OK);
  double moved = 0;
  for (int v = 0; v < c->V; v++) moved = fmax(moved, fabs(b[v] - a[(size_t)(p->n - 1) * c->V + v]));
  assert_true(moved > 1e-4);
  /* SULA MAE without an edit, by hand from bwt_lm_forward. */
  double want = 0;
  for (int i = 0; i < 2; i++) {
    bwt_lm_reset(lm);
    assert_int_equal(bwt_lm_forward(lm, rec[i].tokens, rec[i].T, a), BWT_STATUS_OK);
    const float *l = a + (size_t)(rec[i].T - 1) * c->V;
    double z = exp((double)l[3]) + exp((double)l[4]), pa = exp((double)l[3]) / z, pb = 1 - pa;
    double hq = -(rec[i].posterior[0] * log2(rec[i].posterior[0]) + rec[i].posterior[1] * log2(rec[i].posterior[1]));
    want += fabs(-(pa * log2(pa) + pb * log2(pb)) - hq) / 2;
  }
  print_message("  layer 1: PC1 %.3f, rho %.3f; SULA MAE %.6f (by hand %.6f); cut: rho %.3f, random cut %.3f\n", iv.pc1, iv.spearman,
                iv.sula_mae, want, iv.effects[0].spearman, iv.effects[1].spearman);
  assert_true(fabs(iv.sula_mae - want) < 1e-9);
  for (int k = 0; k < 8; k++) assert_true(isfinite(iv.effects[k].sula_mae) && isfinite(iv.effects[k].mean_abs_entropy_change));
  assert_true(iv.effects[0].mean_abs_entropy_change > 0);
  char *json = bwt_lm_intervention_to_json(&iv, 1, dir, "ids");
  assert_non_null(strstr(json, "\"keep_only\""));
  free(json);
  bwt_lm_intervention_free(&iv);
  assert_int_equal(bwt_lm_intervene(lm, &pool, 2, 1.0, 7, NULL, 0, &iv, NULL, NULL), BWT_STATUS_ARG);
  free(a), free(b);
  bwt_lm_pool_free(&pool);
  bwt_lm_close(lm);
}

int main(void) {
  bwt_set_threads(1); /* models this small run fastest on one thread (and the machine may be shared) */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_manifold_known),
      cmocka_unit_test(test_stratified_draw),
      cmocka_unit_test(test_axis_ops),
      cmocka_unit_test(test_key_weight_layouts),
      cmocka_unit_test(test_key_weights_reproduce_keys),
      cmocka_unit_test(test_reinit),
      cmocka_unit_test(test_geometry_known),
      cmocka_unit_test(test_ids_pool),
      cmocka_unit_test(test_text_pools),
      cmocka_unit_test(test_intervene),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
