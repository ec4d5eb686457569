/* The mechanism view: capture points change nothing and agree with the forward pass; key frames on
 * constructed weights; the geometry report, ablations and the snapshot series on small models;
 * figures are written. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/ablate.h"
#include "bwt/lab/curvature.h"
#include "bwt/capture.h"
#include "bwt/fileio.h"
#include "bwt/lab/geometry.h"
#include "bwt/train.h"
#include "testutil.h"

/* A bijection V=5, L=4 and a 2-layer, 2-head transformer of width 16 (random weights, seed 7). */
static bwt_run_config tiny_config(void) {
  bwt_run_config c = test_bijection_config(5, 16, 2, 2);
  c.train.steps = 60, c.train.batch = 16, c.train.warmup = 2, c.train.lr = 3e-3;
  c.train.eval_seqs = 64, c.train.ckpt_every = 0, c.train.log_every = 20, c.train.seed = 7;
  return c;
}

static void make(const bwt_run_config *c, bwt_task **task, bwt_model **model, bwt_batch *b, int B) {
  assert_int_equal(bwt_task_create(task, &c->task), BWT_STATUS_OK);
  assert_int_equal(bwt_model_create(model, &c->model, 7), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(b, *task, B), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(*task, 99, b), BWT_STATUS_OK);
}

static const float *tensor(const bwt_model *m, const char *name) {
  const bwt_tensor_desc *d = bwt_model_find_tensor(m, name);
  assert_non_null(d);
  return m->params + d->offset;
}

static void test_capture_matches_forward(void **state) {
  bwt_run_config c = tiny_config();
  bwt_task *task;
  bwt_model *m;
  bwt_batch b;
  make(&c, &task, &m, &b, 8);
  int M = b.B * b.n_sup, K = task->n_classes, C = 16, T = b.T, n = b.n_sup, NH = 2, L = 2;
  const float *lp;
  assert_int_equal(bwt_model_forward(m, &b, &lp), BWT_STATUS_OK);
  float *plain = malloc(sizeof(float) * M * K);
  memcpy(plain, lp, sizeof(float) * M * K);
  bwt_capture cap;
  const float *lc;
  assert_int_equal(bwt_model_capture_points(m), BWT_CAPTURE_ALL & ~(unsigned)(BWT_CAPTURE_SCAN_STATE | BWT_CAPTURE_ROUTER_PROBS | BWT_CAPTURE_EXPERT));
  assert_int_equal(bwt_model_capture(m, &b, NULL, bwt_model_capture_points(m), &cap, &lc), BWT_STATUS_OK);
  assert_memory_equal(plain, lc, sizeof(float) * M * K); /* bit-identical logits */

  /* The embedding rows are token + position at the supervised positions, exactly. */
  const float *wte = tensor(m, "tok_emb"), *wpe = tensor(m, "pos_emb");
  for (int r = 0; r < M; r++) {
    int bb = r / n, pos = b.sup_pos[r], tok = b.tokens[bb * T + pos];
    for (int i = 0; i < C; i++) assert_true(cap.embed[r * C + i] == wte[tok * C + i] + wpe[pos * C + i]);
  }
  /* softmax(scores) = the weights; the future is masked. */
  double worst = 0;
  for (int l = 0; l < L; l++)
    for (int bb = 0; bb < b.B; bb++)
      for (int h = 0; h < NH; h++)
        for (int j = 0; j < n; j++) {
          size_t row = ((((size_t)l * b.B + bb) * NH + h) * n + j) * T;
          int pos = b.sup_pos[bb * n + j];
          double mx = -INFINITY, z = 0;
          for (int s = 0; s <= pos; s++) mx = fmax(mx, cap.scores[row + s]);
          for (int s = 0; s <= pos; s++) z += exp(cap.scores[row + s] - mx);
          for (int s = 0; s < T; s++) {
            double p = s <= pos ? exp(cap.scores[row + s] - mx) / z : 0;
            if (s > pos) assert_true(isinf(cap.scores[row + s]) && cap.attention[row + s] == 0);
            worst = fmax(worst, fabs(p - cap.attention[row + s]));
          }
        }
  print_message("  softmax(scores) vs captured weights: max |diff| %.2e\n", worst);
  assert_true(worst < 1e-6);
  /* The last block's output, normed with norm_f, is the final-norm capture. */
  const float *wf = tensor(m, "norm_f.weight");
  double worst_norm = 0;
  for (int r = 0; r < M; r++) {
    const float *x = cap.block_out + ((size_t)(L - 1) * M + r) * C;
    double ss = 0;
    for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
    double rstd = 1 / sqrt(ss / C + 1e-5);
    for (int i = 0; i < C; i++) worst_norm = fmax(worst_norm, fabs(x[i] * rstd * wf[i] - cap.final_norm[r * C + i]));
  }
  print_message("  norm_f(last block output) vs final-norm capture: max |diff| %.2e\n", worst_norm);
  assert_true(worst_norm < 1e-5);
  bwt_capture_free(&cap);

  /* Asking for one point allocates only it; a bypassed attention branch reads NAN. */
  const uint8_t skip_first[2] = {1, 0};
  const bwt_forward_options first_off = {NULL, skip_first, NULL};
  assert_int_equal(bwt_model_capture(m, &b, &first_off, BWT_CAPTURE_KEYS, &cap, NULL), BWT_STATUS_OK);
  assert_null(cap.queries);
  assert_true(isnan(cap.keys[0]) && !isnan(cap.keys[(size_t)b.B * T * C]));
  bwt_capture_free(&cap);
  assert_int_equal(bwt_model_capture(m, &b, NULL, 1u << 12, &cap, NULL), BWT_STATUS_ARG);
  bwt_capture_free(&cap);
  free(plain);
  bwt_batch_free(&b);
  bwt_model_free(m);
  bwt_task_free(task);
}

static void test_capture_needs_transformer(void **state) {
  bwt_run_config c = tiny_config();
  c.model.arch = BWT_ARCH_MLP;
  bwt_task *task;
  bwt_model *m;
  bwt_batch b;
  make(&c, &task, &m, &b, 2);
  bwt_capture cap;
  assert_int_equal(bwt_model_capture(m, &b, NULL, BWT_CAPTURE_ALL, &cap, NULL), BWT_STATUS_ARG);
  print_message("  %s\n", bwt_last_error());
  bwt_capture_free(&cap);
  bwt_batch_free(&b);
  bwt_model_free(m);
  bwt_task_free(task);
}

/* Mamba's capture points: the logits unchanged, the embedding rows, norm_f of the last block's
 * output, and each sequence's scan states the same whatever else is in its batch (the rows are the
 * right ones), to rounding; the transformer's points are refused by name. Its geometry report has no attention
 * or key frames and a scan-state manifold per layer. */
static void test_capture_mamba(void **state) {
  bwt_run_config c = tiny_config();
  c.model.arch = BWT_ARCH_MAMBA;
  c.model.ssm_state = 4, c.model.ssm_expand = 2; /* S = 2·16·4 */
  bwt_task *task;
  bwt_model *m;
  bwt_batch b, one;
  make(&c, &task, &m, &b, 6);
  test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3); /* states of order one */
  int M = b.B * b.n_sup, K = task->n_classes, C = 16, T = b.T, n = b.n_sup, L = 2, S = 128;
  const float *lp;
  assert_int_equal(bwt_model_forward(m, &b, &lp), BWT_STATUS_OK);
  float *plain = malloc(sizeof(float) * M * K);
  memcpy(plain, lp, sizeof(float) * M * K);
  bwt_capture cap, cap1;
  assert_int_equal(bwt_model_capture(m, &b, NULL, BWT_CAPTURE_ALL, &cap, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "a mamba model has no 'normed_in' capture point"));
  bwt_capture_free(&cap);
  const float *lc;
  unsigned points = bwt_model_capture_points(m);
  assert_int_equal(points, BWT_CAPTURE_EMBED | BWT_CAPTURE_BLOCK_OUT | BWT_CAPTURE_FINAL_NORM | BWT_CAPTURE_SCAN_STATE);
  assert_int_equal(bwt_model_capture(m, &b, NULL, points, &cap, &lc), BWT_STATUS_OK);
  assert_memory_equal(plain, lc, sizeof(float) * M * K);
  assert_int_equal(cap.S, S);
  const float *wte = tensor(m, "tok_emb"), *wpe = tensor(m, "pos_emb"), *wf = tensor(m, "norm_f.weight");
  double worst_norm = 0;
  for (int r = 0; r < M; r++) {
    int bb = r / n, pos = b.sup_pos[r], tok = b.tokens[bb * T + pos];
    for (int i = 0; i < C; i++) assert_true(cap.embed[r * C + i] == wte[tok * C + i] + wpe[pos * C + i]);
    const float *x = cap.block_out + ((size_t)(L - 1) * M + r) * C;
    double ss = 0;
    for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
    double rstd = 1 / sqrt(ss / C + 1e-5);
    for (int i = 0; i < C; i++) worst_norm = fmax(worst_norm, fabs(x[i] * rstd * wf[i] - cap.final_norm[r * C + i]));
  }
  print_message("  mamba: norm_f(last block output) vs final-norm capture: max |diff| %.2e\n", worst_norm);
  assert_true(worst_norm < 1e-5);
  /* Sequence 3 alone: its states equal its rows of the batch's capture (to rounding: the products
   * of a smaller batch may take other BLAS kernels). */
  assert_int_equal(bwt_batch_alloc(&one, task, 1), BWT_STATUS_OK);
  memcpy(one.tokens, b.tokens + 3 * T, sizeof(int32_t) * T);
  memcpy(one.sup_pos, b.sup_pos + 3 * n, sizeof(int32_t) * n);
  memcpy(one.target, b.target + 3 * n, sizeof(int32_t) * n);
  assert_int_equal(bwt_model_capture(m, &one, NULL, BWT_CAPTURE_SCAN_STATE, &cap1, NULL), BWT_STATUS_OK);
  assert_null(cap1.block_out);
  double worst_state = 0, norm = 0;
  for (int l = 0; l < L; l++)
    for (int j = 0; j < n; j++)
      for (int i = 0; i < S; i++) {
        float a = cap.scan_state[((size_t)l * M + 3 * n + j) * S + i], z = cap1.scan_state[((size_t)l * n + j) * S + i];
        worst_state = fmax(worst_state, fabs(a - z)), norm = fmax(norm, fabs(a));
      }
  print_message("  mamba: sequence 3's scan states alone vs in its batch: max |diff| %.2e (max |h| %.2f)\n", worst_state, norm);
  assert_true(worst_state <= 1e-6 * norm && norm > 0);
  bwt_capture_free(&cap);
  bwt_capture_free(&cap1);
  bwt_batch_free(&one);

  bwt_geometry_options o;
  bwt_geometry_options_default(&o);
  o.n_seqs = 40, o.batch = 16;
  bwt_geometry g;
  assert_int_equal(bwt_geometry_compute(m, NULL, task, &o, &g), BWT_STATUS_OK);
  assert_null(g.attn_entropy);
  assert_null(g.key_orth);
  assert_non_null(g.state);
  assert_int_equal(g.S, S);
  for (int l = 0; l < L; l++) assert_true(g.state[l].pc1 > 0 && g.state[l].pc1 <= 1 && g.state[l].pc12 >= g.state[l].pc1);
  char *json = bwt_geometry_to_json(&g);
  cJSON *root = cJSON_Parse(json);
  assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "attention"), "skipped"));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "scan_state"), "manifold_per_layer")), L);
  cJSON_Delete(root);
  free(json);
  const char *dir = test_tmpdir("mamba_geometry");
  assert_int_equal(bwt_geometry_figures(&g, dir), BWT_STATUS_OK);
  bwt_geometry_free(&g);

  /* Block ablation: a bypassed block's output is its input (and its state NAN); head masks refused;
   * bwt_ablate measures the blocks only. */
  const uint8_t skip_second[2] = {0, 1};
  const bwt_forward_options second_off = {NULL, NULL, NULL, skip_second};
  assert_int_equal(bwt_model_capture(m, &b, &second_off, points, &cap, NULL), BWT_STATUS_OK);
  assert_memory_equal(cap.block_out + (size_t)M * C, cap.block_out, sizeof(float) * M * C);
  assert_true(isnan(cap.scan_state[(size_t)M * S]) && !isnan(cap.scan_state[0]));
  bwt_capture_free(&cap);
  const float ones[2 * 4] = {1, 1, 1, 1, 1, 1, 1, 1};
  const bwt_forward_options masked = {ones, NULL, NULL, NULL};
  assert_int_equal(bwt_model_forward_with(m, &b, &masked, &lc), BWT_STATUS_ARG);
  bwt_ablation abl;
  assert_int_equal(bwt_ablate(m, task, 5, 32, 16, &abl, NULL, NULL), BWT_STATUS_OK);
  assert_int_equal(abl.NH, 0);
  for (int l = 0; l < L; l++) {
    print_message("  mamba: block %d removed: entropy MAE %+.4f bits\n", l, abl.branch_dmae[l * BWT_ABLATE_BRANCHES + BWT_ABLATE_BLOCK]);
    assert_true(isnan(abl.branch_dmae[l * BWT_ABLATE_BRANCHES + BWT_ABLATE_ATTN]));
    assert_true(fabs(abl.branch_dmae[l * BWT_ABLATE_BRANCHES + BWT_ABLATE_BLOCK]) > 1e-4);
  }
  json = bwt_ablation_to_json(&abl);
  root = cJSON_Parse(json);
  assert_non_null(root);
  assert_null(cJSON_GetObjectItem(root, "most_critical_head"));
  cJSON_Delete(root);
  free(json);
  assert_int_equal(bwt_ablation_figure(&abl, test_tmpdir("mamba_ablation")), BWT_STATUS_OK);
  bwt_ablation_free(&abl);
  free(plain);
  bwt_batch_free(&b);
  bwt_model_free(m);
  bwt_task_free(task);
}

/* Keys from constructed weights: W_K = I and hypothesis embeddings on distinct axes give mean |cos|
 * 0 in every head; equal embeddings give 1. */
static void test_key_frames_constructed(void **state) {
  bwt_run_config c = tiny_config();
  bwt_task *task;
  bwt_model *m;
  bwt_batch b;
  make(&c, &task, &m, &b, 2);
  int lo, n_hyp = bwt_geometry_hypotheses(task, &lo), C = 16;
  assert_int_equal(lo, 5);
  assert_int_equal(n_hyp, 5);
  float *wk = (float *)tensor(m, "blocks.0.attn.wk.weight"), *wte = (float *)tensor(m, "tok_emb");
  memset(wk, 0, sizeof(float) * C * C);
  for (int i = 0; i < C; i++) wk[i * C + i] = 1;
  for (int v = 0; v < n_hyp; v++) {
    memset(wte + (lo + v) * C, 0, sizeof(float) * C);
    wte[(lo + v) * C + 3 * v] = 2.0f; /* axes 0, 3, 6 (head 0) and 9, 12 (head 1) */
  }
  float keys[5 * 16];
  assert_int_equal(bwt_geometry_keys(m, 0, lo, n_hyp, keys), BWT_STATUS_OK);
  /* RMSNorm maps 2·e_i to √C·e_i (norm weight 1), W_K = I keeps it. */
  assert_float_equal(keys[0], sqrtf((float)C), 1e-3);
  bwt_geometry_options o;
  bwt_geometry_options_default(&o);
  o.n_seqs = 16, o.batch = 8;
  bwt_geometry g;
  assert_int_equal(bwt_geometry_compute(m, NULL, task, &o, &g), BWT_STATUS_OK);
  print_message("  orthogonal frame: mean |cos| head 0 %.2e, head 1 %.2e\n", g.key_orth[0], g.key_orth[1]);
  assert_true(fabs(g.key_orth[0]) < 1e-6 && fabs(g.key_orth[1]) < 1e-6);
  assert_float_equal(g.key_cos[0], 1, 1e-6);
  assert_float_equal(g.gaussian_cos, sqrt(2 / (3.141592653589793 * 8)), 1e-12);
  bwt_geometry_free(&g);
  for (int v = 0; v < n_hyp; v++) wte[(lo + v) * C + 0] = 1, wte[(lo + v) * C + 9] = 1;
  for (int v = 0; v < n_hyp; v++)
    for (int i = 1; i < C; i++)
      if (i != 9) wte[(lo + v) * C + i] = 0;
  assert_int_equal(bwt_geometry_compute(m, NULL, task, &o, &g), BWT_STATUS_OK);
  assert_float_equal(g.key_orth[0], 1, 1e-6);
  assert_float_equal(g.key_orth[1], 1, 1e-6);
  bwt_geometry_free(&g);
  bwt_batch_free(&b);
  bwt_model_free(m);
  bwt_task_free(task);
}

/* The report on a random model: exact Bayes entropies, finite statistics in range, JSON that parses,
 * figures written. */
static void test_geometry_report(void **state) {
  bwt_run_config c = tiny_config();
  bwt_task *task;
  bwt_model *m, *init;
  bwt_batch b;
  make(&c, &task, &m, &b, 2);
  assert_int_equal(bwt_model_create(&init, &c.model, 8), BWT_STATUS_OK);
  bwt_geometry_options o;
  bwt_geometry_options_default(&o);
  o.n_seqs = 50, o.batch = 16; /* the last batch overhangs */
  bwt_geometry g;
  assert_int_equal(bwt_geometry_compute(m, init, task, &o, &g), BWT_STATUS_OK);
  assert_int_equal(g.n_rows, 50 * 4);
  /* Without replacement, the j-th key leaves V − j candidates: H = log2(V − j). */
  for (long r = 0; r < g.n_rows; r++) assert_float_equal(g.bayes_entropy[r], log2(5.0 - r % 4), 1e-12);
  for (int i = 0; i < 4; i++) {
    assert_true(g.attn_entropy[i] >= 0 && g.attn_entropy[i] <= log2(g.T) + 1e-9);
    assert_true(g.key_orth[i] > 0 && g.key_orth[i] <= 1 && g.key_orth_init[i] > 0);
  }
  assert_true(g.final.pc1 > 0 && g.final.pc1 <= g.final.pc12 && g.final.pc12 <= 1 + 1e-12);
  assert_true(g.final.dims90 >= 1 && g.final.dims90 <= 16);
  assert_true(fabs(g.final.spearman) <= 1);
  /* The embeddings carry the position, and here the position fixes the posterior entropy. */
  print_message("  probe R2 embeddings %.4f, final %.4f; PC1 %.3f\n", g.probe_r2[0], g.probe_r2[3], g.final.pc1);
  assert_true(g.probe_r2[0] > 0.999);
  char *json = bwt_geometry_to_json(&g);
  cJSON *root = cJSON_Parse(json);
  assert_non_null(root);
  const cJSON *kf = cJSON_GetObjectItemCaseSensitive(root, "key_frames");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(kf, "mean_abs_cos")), 2);
  cJSON_Delete(root);
  free(json);
  const char *dir = test_tmpdir("geometry_figures");
  assert_int_equal(bwt_geometry_figures(&g, dir), BWT_STATUS_OK);
  const char *names[] = {"entropy_by_position", "single_sequences", "key_cosines", "attention_maps",
                         "query_key_cosines", "attention_entropy", "entropy_probe", "value_manifold"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    for (int svg = 0; svg < 2; svg++) {
      char path[1024];
      snprintf(path, sizeof path, "%s/%s.%s", dir, names[i], svg ? "svg" : "png");
      char *data = NULL;
      size_t len = 0;
      assert_int_equal(bwt_read_file(path, &data, &len), BWT_STATUS_OK);
      assert_true(len > 1000);
      free(data);
    }
  bwt_geometry_free(&g);
  bwt_batch_free(&b);
  bwt_model_free(init);
  bwt_model_free(m);
  bwt_task_free(task);
}

/* Masking every head of a block is bypassing its attention when the O bias is zero: the same logits,
 * bit for bit; bwt_ablate restores the switches and its deltas come from those evaluations. */
static void test_ablation(void **state) {
  bwt_run_config c = tiny_config();
  bwt_task *task;
  bwt_model *m;
  bwt_batch b;
  make(&c, &task, &m, &b, 8);
  float *bo = (float *)tensor(m, "blocks.1.attn.wo.bias");
  for (int i = 0; i < 16; i++) bo[i] = 0; /* created at 0, zeroed here for clarity */
  test_fill_uniform((float *)tensor(m, "blocks.0.attn.wo.bias"), 16, -0.5f, 0.5f, 3);
  int M = b.B * b.n_sup, K = task->n_classes;
  const float *l1;
  float *masked = malloc(sizeof(float) * M * K);
  float mask[4] = {1, 1, 0, 0}; /* both heads of block 1 */
  uint8_t skip_attn[2] = {0, 1}, skip_mlp[2] = {0, 0};
  const bwt_forward_options heads = {mask, NULL, NULL}, branches = {NULL, skip_attn, skip_mlp};
  assert_int_equal(bwt_model_forward_with(m, &b, &heads, &l1), BWT_STATUS_OK);
  memcpy(masked, l1, sizeof(float) * M * K);
  assert_int_equal(bwt_model_forward_with(m, &b, &branches, &l1), BWT_STATUS_OK);
  assert_memory_equal(masked, l1, sizeof(float) * M * K);
  /* Block 0 has an O bias: masking its heads keeps the bias, so it differs from the bypass. */
  mask[0] = mask[1] = 0, mask[2] = mask[3] = 1;
  assert_int_equal(bwt_model_forward_with(m, &b, &heads, &l1), BWT_STATUS_OK);
  memcpy(masked, l1, sizeof(float) * M * K);
  skip_attn[0] = 1, skip_attn[1] = 0;
  assert_int_equal(bwt_model_forward_with(m, &b, &branches, &l1), BWT_STATUS_OK);
  assert_true(memcmp(masked, l1, sizeof(float) * M * K) != 0);
  skip_attn[0] = 0;

  bwt_ablation a;
  assert_int_equal(bwt_ablate(m, task, 5, 40, 16, &a, NULL, NULL), BWT_STATUS_OK);
  bwt_eval_result r;
  assert_int_equal(bwt_evaluate(m, task, 5, 40, 16, &r), BWT_STATUS_OK); /* the model is left intact */
  assert_true(r.overall.entropy_mae == a.base_mae);
  bwt_eval_result_free(&r);
  skip_mlp[1] = 1;
  assert_int_equal(bwt_evaluate_with(m, task, &branches, 5, 40, 16, &r), BWT_STATUS_OK);
  skip_mlp[1] = 0;
  double want = r.overall.entropy_mae - a.base_mae, got = a.branch_dmae[1 * BWT_ABLATE_BRANCHES + BWT_ABLATE_MLP];
  print_message("  MLP of block 1 removed: dMAE %.9g (ablate) vs %.9g (direct)\n", got, want);
  assert_true(fabs(got - want) < 1e-12);
  bwt_eval_result_free(&r);
  int best = 0;
  for (int i = 1; i < 4; i++)
    if (a.head_dmae[i] > a.head_dmae[best]) best = i;
  assert_int_equal(a.critical_layer * 2 + a.critical_head, best);
  assert_true(a.heads_for_80 >= 1 && a.heads_for_80 <= 4);
  const char *dir = test_tmpdir("ablation");
  char path[1024];
  snprintf(path, sizeof path, "%s/ablation.csv", dir);
  assert_int_equal(bwt_ablation_write_csv(path, &a), BWT_STATUS_OK);
  assert_int_equal(bwt_ablation_figure(&a, dir), BWT_STATUS_OK);
  snprintf(path, sizeof path, "%s/ablation.png", dir);
  assert_true(bwt_path_exists(path));
  bwt_ablation_free(&a);
  free(masked);
  bwt_batch_free(&b);
  bwt_model_free(m);
  bwt_task_free(task);
}

static void test_snapshot_schedule(void **state) {
  bwt_train_config t;
  bwt_train_config_default(&t);
  t.steps = 3000, t.snapshots = 12;
  const int want[] = {1, 2, 4, 9, 18, 38, 79, 163, 338, 700, 1449, 3000};
  int k = 0;
  for (int s = 1; s <= t.steps; s++)
    if (bwt_snapshot_due(&t, s)) {
      assert_true(k < 12);
      assert_int_equal(s, want[k++]);
    }
  assert_int_equal(k, 12);
  t.snapshots = 1;
  assert_true(bwt_snapshot_due(&t, 3000) && !bwt_snapshot_due(&t, 1));
  t.steps = 5, t.snapshots = 20; /* collisions: every step once */
  for (int s = 1; s <= 5; s++) assert_true(bwt_snapshot_due(&t, s));
  t.snapshots = 0;
  assert_false(bwt_snapshot_due(&t, 5));
}

/* A short run with snapshots: the series ends at the final model (similarity and overlap 1) and
 * its settle steps are steps of the series. */
static void test_series(void **state) {
  bwt_run_config c = tiny_config();
  c.train.snapshots = 5;
  c.train.threads = 1;
  const char *dir = test_tmpdir("series_run");
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  bwt_geometry_options o;
  bwt_geometry_options_default(&o);
  o.n_seqs = 32, o.batch = 16;
  bwt_series s;
  assert_int_equal(bwt_geometry_series(dir, &o, &s, NULL, NULL), BWT_STATUS_OK);
  assert_int_equal(s.n, 5); /* steps 1, 3, 8, 22, 60; the last is the final checkpoint */
  const int want[] = {1, 3, 8, 22, 60};
  for (int i = 0; i < 5; i++) assert_int_equal(s.step[i], want[i]);
  assert_float_equal(s.value[BWT_SERIES_ATTN][4], 1, 1e-9);
  assert_float_equal(s.value[BWT_SERIES_KEYS][4], 1, 1e-9);
  assert_float_equal(s.value[BWT_SERIES_VALUES][4], 1, 1e-9);
  assert_true(s.value[BWT_SERIES_VALUES][0] < 1 - 1e-6);
  assert_true(s.value[BWT_SERIES_ATTN][0] < 1 - 1e-6);
  assert_true(s.value[BWT_SERIES_MAE][4] < s.value[BWT_SERIES_MAE][0]);
  for (int k = 0; k < BWT_SERIES_N; k++) {
    int found = 0;
    for (int i = 0; i < 5; i++) found |= s.settle_step[k] == s.step[i];
    assert_true(found);
  }
  assert_int_equal(bwt_series_figure(&s, dir), BWT_STATUS_OK);
  bwt_series_free(&s);
  assert_int_equal(bwt_geometry_series(test_tmpdir("series_empty"), &o, &s, NULL, NULL), BWT_STATUS_IO);
  print_message("  %s\n", bwt_last_error());
}

/* The curvature of the entropy-ordered curve on constructed rows with known answers: a line (0
 * half-turns, straightness 1, below every shuffle), a semicircle (10 equal bins of angle: the bin
 * means turn by π/10 at each of the 8 interior points, 0.8 half-turns, straightness
 * sin(0.45π) / (9 sin(π/20))), unchanged by scale, rotation, translation and a row stride; ties
 * never split; and a random cloud, whose bin means are independent points turning by 2/3 half-turn
 * each on average in many dimensions. */
static void test_curvature_constructed(void **state) {
  enum { R = 1000, C = 5, LD = 7 };
  float *X = calloc((size_t)R * LD, sizeof *X);
  double *h = calloc(R, sizeof *h);
  assert_non_null(X), assert_non_null(h);
  const double pi = acos(-1.0);
  bwt_curvature cv;
  /* The line x = (3, −1, 2, 0, 1)·t + (1, 1, 1, 1, 1), entropies in a shuffled order of t. */
  const double dir[C] = {3, -1, 2, 0, 1};
  for (int r = 0; r < R; r++) {
    int t = (r * 389) % R; /* 389 is prime to 1000: a permutation */
    h[r] = t / (double)R;
    for (int c = 0; c < C; c++) X[r * LD + c] = (float)(dir[c] * h[r] + 1);
  }
  assert_int_equal(bwt_curvature_compute(&cv, X, h, R, C, LD, 10, 50, 1), BWT_STATUS_OK);
  print_message("  line: %d points, curvature %.2e, straightness %.6f, null median %.3f, p %.2f\n", cv.points, cv.curvature,
                cv.straightness, cv.null_median, cv.null_p);
  assert_int_equal(cv.points, 10);
  assert_true(cv.curvature < 1e-3);
  assert_true(fabs(cv.straightness - 1) < 1e-6);
  assert_true(cv.null_p == 0.0);
  for (int r = 0; r < R; r++) assert_int_equal(cv.point_of_row[r], (int)(h[r] * 10));
  bwt_curvature_free(&cv);
  /* The semicircle of radius s (angle π·h) in the plane of two orthonormal directions, moved. */
  const double e1[C] = {0.6, 0.8, 0, 0, 0}, e2[C] = {0, 0, 0.6, 0, 0.8};
  for (int scale = 1; scale <= 100; scale *= 100) {
    for (int r = 0; r < R; r++) {
      h[r] = (r + 0.5) / R;
      for (int c = 0; c < C; c++) X[r * LD + c] = (float)(scale * (cos(pi * h[r]) * e1[c] + sin(pi * h[r]) * e2[c]) - 4);
    }
    assert_int_equal(bwt_curvature_compute(&cv, X, h, R, C, LD, 10, 0, 1), BWT_STATUS_OK);
    double straight = sin(0.45 * pi) / (9 * sin(pi / 20));
    print_message("  semicircle (radius %d): curvature %.6f (exact 0.8), straightness %.6f (exact %.6f)\n", scale,
                  cv.curvature, cv.straightness, straight);
    assert_true(fabs(cv.curvature - 0.8) < 1e-4);
    assert_true(fabs(cv.straightness - straight) < 1e-5);
    assert_true(isnan(cv.null_median));
    for (int j = 1; j < 9; j++) assert_true(fabs(cv.turning[j] - 0.1) < 1e-4);
    assert_true(cv.turning[0] == 0 && cv.turning[9] == 0);
    bwt_curvature_free(&cv);
  }
  /* Three entropy values: three points, whatever the bins. */
  for (int r = 0; r < R; r++) h[r] = r % 3;
  assert_int_equal(bwt_curvature_compute(&cv, X, h, R, C, LD, 10, 0, 1), BWT_STATUS_OK);
  assert_int_equal(cv.points, 3);
  bwt_curvature_free(&cv);
  /* A Gaussian-like cloud in 64 dimensions with its entropies: no curve, the null's own level. */
  enum { D = 64, RC = 4000 };
  float *G = calloc((size_t)RC * D, sizeof *G);
  double *hc = calloc(RC, sizeof *hc);
  assert_non_null(G), assert_non_null(hc);
  test_fill_uniform(G, (size_t)RC * D, -1, 1, 5);
  for (int r = 0; r < RC; r++) hc[r] = r;
  assert_int_equal(bwt_curvature_compute(&cv, G, hc, RC, D, D, 10, 100, 5), BWT_STATUS_OK);
  print_message("  cloud: curvature %.3f, null median %.3f (independent points: 8 x 2/3 = 5.333), p %.2f\n", cv.curvature,
                cv.null_median, cv.null_p);
  assert_true(fabs(cv.curvature - 16.0 / 3) < 0.5 && fabs(cv.null_median - 16.0 / 3) < 0.5);
  assert_true(cv.null_p > 0.05 && cv.null_p < 0.95); /* one draw of the null, not in its tail */
  bwt_curvature_free(&cv);
  assert_int_equal(bwt_curvature_compute(&cv, G, hc, 0, D, D, 10, 0, 2), BWT_STATUS_ARG);
  free(G), free(hc), free(X), free(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_capture_matches_forward), cmocka_unit_test(test_capture_needs_transformer),
      cmocka_unit_test(test_capture_mamba),
      cmocka_unit_test(test_key_frames_constructed),  cmocka_unit_test(test_geometry_report),
      cmocka_unit_test(test_ablation),                cmocka_unit_test(test_snapshot_schedule),
      cmocka_unit_test(test_series),                cmocka_unit_test(test_curvature_constructed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
