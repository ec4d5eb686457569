/* Whole-model gradient checks against central finite differences, and model invariants. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/capture.h"
#include "bwt/kernels.h"
#include "bwt/model.h"
#include "bwt/rng.h"
#include "models/model_internal.h"
#include "testutil.h"

enum { B = 3, T = 7, NSUP = 3, V = 6, K = 6 };

typedef struct {
  bwt_batch batch;
  int32_t tokens[B * T], sup_pos[B * T], target[B * T];
  double posterior[B * T * K];
} fixture;

/* A hand-made batch: random tokens, supervised positions 1, 4, 6 (every position with all_sup),
 * random soft targets. */
static void make_batch_sup(fixture *f, int all_sup) {
  bwt_rng rng;
  bwt_rng_seed(&rng, 7, 0);
  int n = all_sup ? T : NSUP;
  for (int i = 0; i < B * T; i++) f->tokens[i] = (int32_t)bwt_rng_below(&rng, V);
  for (int b = 0; b < B; b++) {
    const int pos[NSUP] = {1, 4, 6};
    for (int j = 0; j < n; j++) {
      int r = b * n + j;
      f->sup_pos[r] = all_sup ? j : pos[j];
      f->target[r] = (int32_t)bwt_rng_below(&rng, K);
      double z = 0;
      for (int k = 0; k < K; k++) z += f->posterior[r * K + k] = bwt_rng_uniform(&rng);
      for (int k = 0; k < K; k++) f->posterior[r * K + k] /= z;
    }
  }
  f->batch = (bwt_batch){B, T, n, K, 0, f->tokens, NULL, f->sup_pos, f->target, f->posterior};
}

static void make_batch(fixture *f) { make_batch_sup(f, 0); }

/* Mean cross-entropy from the logits in double (so finite differences see no float rounding of
 * the loss itself); soft targets when soft != 0. */
/* The forward options of the model under test (NULL: the intact model). */
static const bwt_forward_options *opts;

/* With experts: the chosen experts at the finite-difference check's base point, and the number of
 * perturbed forwards that chose otherwise (the loss jumps there: a check needs none). Every row
 * must be supervised, so that the capture sees every block's every row. */
static float base_routes[2 * B * T * 2];
static int have_routes, route_flips;

static const float *forward_routed(bwt_model *m, const fixture *f) {
  bwt_capture cap;
  const float *logits = NULL;
  assert_int_equal(f->batch.n_sup, T);
  assert_int_equal(bwt_model_capture(m, &f->batch, opts, BWT_CAPTURE_EXPERT, &cap, &logits), BWT_STATUS_OK);
  size_t n = (size_t)cap.L * B * T * cap.top_k;
  assert_true(n <= sizeof base_routes / sizeof *base_routes);
  if (!have_routes) memcpy(base_routes, cap.expert, n * sizeof(float)), have_routes = 1;
  else route_flips += memcmp(base_routes, cap.expert, n * sizeof(float)) != 0;
  bwt_capture_free(&cap);
  return logits;
}

/* The loss the model trains on: the mean cross-entropy plus the auxiliary loss (experts' balance). */
static double loss_of(bwt_model *m, const fixture *f, int soft) {
  const float *logits = NULL;
  if (m->cfg.experts > 0)
    logits = forward_routed(m, f);
  else
    assert_int_equal(bwt_model_forward_with(m, &f->batch, opts, &logits), BWT_STATUS_OK);
  int M = f->batch.B * f->batch.n_sup;
  double total = 0;
  for (int r = 0; r < M; r++) {
    double mx = -INFINITY, z = 0;
    for (int k = 0; k < K; k++) mx = fmax(mx, logits[r * K + k]);
    for (int k = 0; k < K; k++) z += exp(logits[r * K + k] - mx);
    for (int k = 0; k < K; k++) {
      double lp = logits[r * K + k] - mx - log(z);
      double y = soft ? f->posterior[r * K + k] : (k == f->target[r]);
      total -= y * lp;
    }
  }
  return total / M + bwt_model_aux_loss(m);
}

static void analytic_grad(bwt_model *m, const fixture *f, int soft) {
  const float *logits = NULL;
  int M = f->batch.B * f->batch.n_sup;
  float probs[B * T * K], dlogits[B * T * K];
  assert_int_equal(bwt_model_forward_with(m, &f->batch, opts, &logits), BWT_STATUS_OK);
  bwt_softmax_forward(probs, logits, M, K);
  memset(dlogits, 0, sizeof(float) * M * K);
  bwt_xent_backward(dlogits, probs, f->target, soft ? f->posterior : NULL, 1.0f / M, M, K);
  bwt_model_zero_grad(m);
  assert_int_equal(bwt_model_backward(m, &f->batch, dlogits), BWT_STATUS_OK);
}

/* Worst relative error over tensors of ‖g_fd − g‖ / max(‖g‖, 1e-3), probing up to 12 coordinates
 * per tensor with a central difference of step 1e-2 (parameters are O(1), the loss is computed in
 * double, so truncation and rounding errors are ~1e-4 relative). */
static double fd_check(bwt_model *m, const fixture *f, int soft, const char **worst_name) {
  have_routes = 0, route_flips = 0;
  if (m->cfg.experts > 0) loss_of(m, f, soft); /* records the base point's routes */
  analytic_grad(m, f, soft);
  double worst = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *d = &m->tensors[i];
    double num = 0, den = 0;
    size_t stride = d->size / 12 + 1;
    for (size_t j = (size_t)i % stride; j < d->size; j += stride) {
      float *p = m->params + d->offset + j, saved = *p;
      const float h = 1e-2f;
      *p = saved + h;
      double lp = loss_of(m, f, soft);
      *p = saved - h;
      double lm = loss_of(m, f, soft);
      *p = saved;
      double fd = (lp - lm) / (2.0 * h), g = m->grads[d->offset + j];
      num += (fd - g) * (fd - g);
      den += g * g;
    }
    double err = sqrt(num) / fmax(sqrt(den), 1e-3);
    if (err > worst) worst = err, *worst_name = d->name;
  }
  return worst;
}

static bwt_model *make_model(bwt_arch arch, bwt_norm norm, int tied) {
  bwt_model_config c = {arch, V, K, T, 8, 2, 2, norm, tied, 3, BWT_POS_LEARNED, 0, BWT_INIT_BWT, 1};
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
  /* O(1) weights make every gradient large enough for finite differences to resolve. */
  test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3);
  return m;
}

static void check(bwt_model *m, int soft, double tol) {
  fixture f;
  make_batch(&f);
  const char *name = "";
  double err = fd_check(m, &f, soft, &name);
  print_message("  %s: worst relative gradient error %.2e (%s)\n", bwt_arch_name(m->cfg.arch), err, name);
  assert_true(err < tol);
}

static void test_transformer_rms_untied(void **state) {
  bwt_model *m = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_RMS, 0);
  check(m, 0, 1e-2);
  check(m, 1, 1e-2);
  bwt_model_free(m);
}

static void test_transformer_layernorm_tied_ablated(void **state) {
  bwt_model *m = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_LAYER, 1);
  float mask[2 * 2] = {1, 0.5f, 0, 1}; /* layer 0 head 1 halved, layer 1 head 0 removed */
  uint8_t skip_attn[2] = {0, 1}, skip_mlp[2] = {1, 0};
  bwt_forward_options masked = {mask, NULL, NULL}, both = {mask, skip_attn, skip_mlp};
  opts = &masked;
  check(m, 1, 1e-2);
  opts = &both;
  check(m, 0, 1e-2);
  opts = NULL;
  bwt_model_free(m);
}

static void test_mlp(void **state) {
  bwt_model *m = make_model(BWT_ARCH_MLP, BWT_NORM_LAYER, 0);
  check(m, 0, 1e-2);
  bwt_model_free(m);
}

static void test_window_mlp(void **state) {
  bwt_model *m = make_model(BWT_ARCH_WINDOW_MLP, BWT_NORM_RMS, 0);
  check(m, 1, 1e-2);
  bwt_model_free(m);
}

/* Sinusoidal positions: no pos_emb tensor, gradients still right, and the table is the formula. */
static void test_sinusoidal_positions(void **state) {
  const bwt_arch archs[] = {BWT_ARCH_TRANSFORMER, BWT_ARCH_MLP, BWT_ARCH_LSTM};
  for (int a = 0; a < 3; a++) {
    bwt_model_config c = {archs[a], V, K, T, 8, 2, 2, BWT_NORM_LAYER, 0, 3, BWT_POS_SINUSOIDAL, 0, BWT_INIT_BWT, 1};
    bwt_model *m = NULL;
    assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
    assert_null(bwt_model_find_tensor(m, "pos_emb"));
    test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3);
    check(m, 1, 1e-2);
    bwt_model_free(m);
  }
  /* The table: PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(...). */
  bwt_model_config c = {BWT_ARCH_TRANSFORMER, V, K, T, 8, 1, 2, BWT_NORM_RMS, 0, 3, BWT_POS_SINUSOIDAL, 0, BWT_INIT_BWT, 1};
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 1), BWT_STATUS_OK);
  const float *pe = model_positions(m, 0, 40); /* longer than max_T: any length */
  assert_non_null(pe);
  assert_float_equal(pe[0], 0.0, 1e-7);                             /* t=0: sin 0 */
  assert_float_equal(pe[1], 1.0, 1e-7);                             /* t=0: cos 0 */
  assert_float_equal(pe[39 * 8 + 2], sin(39 / pow(10000, 2.0 / 8)), 1e-6);
  assert_float_equal(pe[39 * 8 + 7], cos(39 / pow(10000, 6.0 / 8)), 1e-6);
  bwt_model_free(m);
}

/* Shifted positions (--position-jitter): gradients right with learned and sinusoidal positions; a
 * sequence shifted by o gives the logits of the same weights with pos_emb rows o.. moved to 0..;
 * a shift past the learned rows is refused. */
static void test_position_offsets(void **state) {
  int32_t offset[B] = {0, 3, 1};
  fixture f;
  make_batch(&f);
  f.batch.pos_offset = offset;
  const bwt_positions kinds[] = {BWT_POS_LEARNED, BWT_POS_SINUSOIDAL};
  for (int k = 0; k < 4; k++) { /* both kinds, everything shifted, then the first 2 positions kept */
    f.batch.pos_offset_from = k < 2 ? 0 : 2;
    bwt_model_config c = {BWT_ARCH_TRANSFORMER, V, K, T + 3, 8, 2, 2, BWT_NORM_RMS, 0, 3, kinds[k % 2], 0, BWT_INIT_BWT, 1};
    bwt_model *m = NULL;
    assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
    test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3);
    const char *name = "";
    double err = fd_check(m, &f, 1, &name);
    print_message("  %s positions shifted from %d: worst relative gradient error %.2e (%s)\n", bwt_positions_name(kinds[k % 2]),
                  f.batch.pos_offset_from, err, name);
    assert_true(err < 1e-2);
    bwt_model_free(m);
  }
  f.batch.pos_offset_from = 0;
  bwt_model_config c = {BWT_ARCH_TRANSFORMER, V, K, T + 3, 8, 2, 2, BWT_NORM_RMS, 0, 3, BWT_POS_LEARNED, 0, BWT_INIT_BWT, 1};
  bwt_model *m = NULL, *moved = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
  assert_int_equal(bwt_model_create(&moved, &c, 11), BWT_STATUS_OK);
  const float *logits = NULL;
  assert_int_equal(bwt_model_forward(m, &f.batch, &logits), BWT_STATUS_OK);
  float shifted[B * NSUP * K];
  memcpy(shifted, logits, sizeof shifted);
  const bwt_tensor_desc *pe = bwt_model_find_tensor(m, "pos_emb");
  assert_non_null(pe);
  fixture g;
  make_batch(&g); /* the same sequences, unshifted */
  for (int b = 0; b < B; b++) {
    memcpy(moved->params + pe->offset, m->params + pe->offset + (size_t)offset[b] * 8, sizeof(float) * T * 8);
    assert_int_equal(bwt_model_forward(moved, &g.batch, &logits), BWT_STATUS_OK);
    assert_memory_equal(logits + b * NSUP * K, shifted + b * NSUP * K, sizeof(float) * NSUP * K);
  }
  offset[2] = 4; /* rows up to T + 3: one past the model's */
  assert_int_equal(bwt_model_forward(m, &f.batch, &logits), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "shifted by 4"));
  bwt_model_free(m);
  bwt_model_free(moved);
  (void)state;
}

/* No positions (the causal mask alone) and attention without biases: no pos_emb and no attention
 * bias tensors, gradients right, and the position table is zeros of any length. */
static void test_no_positions_no_attention_bias(void **state) {
  bwt_model_config c = {BWT_ARCH_TRANSFORMER, V, K, T, 8, 2, 2, BWT_NORM_RMS, 0, 3, BWT_POS_NONE, 0, BWT_INIT_TORCH, 0};
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
  assert_null(bwt_model_find_tensor(m, "pos_emb"));
  assert_null(bwt_model_find_tensor(m, "blocks.0.attn.wq.bias"));
  assert_null(bwt_model_find_tensor(m, "blocks.1.attn.wo.bias"));
  assert_non_null(bwt_model_find_tensor(m, "blocks.1.mlp.fc2.bias"));
  test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3);
  check(m, 1, 1e-2);
  const float *pe = model_positions(m, 0, 50);
  assert_non_null(pe);
  for (int i = 0; i < 50 * 8; i++) assert_true(pe[i] == 0.0f);
  bwt_model_free(m);
}

/* The two initialisation schemes draw what they claim: torch's N(0, 1) embeddings and U(±1/√fan_in)
 * linear weights and biases; bwt's N(0, 0.02) with the residual writers at 0.02/√(2·n_layers) and
 * zero biases. Checked by the range and the sample moments of wide tensors (5σ of the estimate). */
static void test_init_schemes(void **state) {
  enum { W = 64 };
  for (int scheme = 0; scheme < 2; scheme++) {
    bwt_model_config c = {BWT_ARCH_TRANSFORMER, 200, 200, T, W, 2, 4, BWT_NORM_RMS, 0, 3, BWT_POS_LEARNED, 0,
                          scheme ? BWT_INIT_TORCH : BWT_INIT_BWT, 1};
    bwt_model *m = NULL;
    assert_int_equal(bwt_model_create(&m, &c, 5), BWT_STATUS_OK);
    const struct {
      const char *name;
      double torch_bound, torch_std, bwt_std; /* bound 0: normal; std 0 with bwt: all zero */
    } expect[] = {
        {"tok_emb", 0, 1.0, 0.02},
        {"pos_emb", 0, 1.0, 0.02},
        {"blocks.0.attn.wq.weight", 1 / sqrt(W), 0, 0.02},
        {"blocks.1.attn.wo.weight", 1 / sqrt(W), 0, 0.02 / sqrt(4.0)},
        {"blocks.0.mlp.fc2.weight", 1 / sqrt(4.0 * W), 0, 0.02 / sqrt(4.0)},
        {"blocks.0.mlp.fc1.bias", 1 / sqrt(W), 0, 0},
        {"blocks.1.mlp.fc2.bias", 1 / sqrt(4.0 * W), 0, 0},
        {"head.weight", 1 / sqrt(W), 0, 0.02},
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
      const bwt_tensor_desc *d = bwt_model_find_tensor(m, expect[i].name);
      assert_non_null(d);
      const float *w = m->params + d->offset;
      double sum = 0, sq = 0, mx = 0;
      for (size_t j = 0; j < d->size; j++) sum += w[j], sq += (double)w[j] * w[j], mx = fmax(mx, fabs(w[j]));
      double n = (double)d->size, mean = sum / n, var = sq / n - mean * mean;
      double bound = scheme ? expect[i].torch_bound : 0;
      double std = scheme ? (bound > 0 ? bound / sqrt(3.0) : expect[i].torch_std) : expect[i].bwt_std;
      if (std == 0) {
        assert_true(mx == 0);
        continue;
      }
      if (bound > 0) assert_true(mx <= bound);
      if (fabs(sqrt(var) - std) > 5 * std / sqrt(2 * n) || fabs(mean) > 5 * std / sqrt(n))
        fail_msg("%s init %s: mean %g, std %g, want 0 and %g", scheme ? "torch" : "bwt", expect[i].name, mean, sqrt(var), std);
    }
    const bwt_tensor_desc *nw = bwt_model_find_tensor(m, "norm_f.weight");
    for (size_t j = 0; j < nw->size; j++) assert_true(m->params[nw->offset + j] == 1.0f);
    bwt_model_free(m);
  }
}

/* Continuous inputs (the sticky chain's kind): in_proj instead of tok_emb, gradients right. */
static void test_continuous_inputs(void **state) {
  enum { D = 3 };
  fixture f;
  make_batch(&f);
  float inputs[B * T * D];
  test_fill_uniform(inputs, B * T * D, -1.0f, 1.0f, 5);
  f.batch.tokens = NULL, f.batch.inputs = inputs, f.batch.input_dim = D;
  const bwt_arch archs[] = {BWT_ARCH_TRANSFORMER, BWT_ARCH_LSTM, BWT_ARCH_MAMBA};
  for (int a = 0; a < 3; a++) {
    bwt_model_config c = {archs[a], 0, K, T, 8, 2, 2, BWT_NORM_LAYER, 0, 3, BWT_POS_LEARNED, D, BWT_INIT_BWT, 1};
    bwt_model *m = NULL;
    assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
    assert_null(bwt_model_find_tensor(m, "tok_emb"));
    assert_non_null(bwt_model_find_tensor(m, "in_proj.weight"));
    test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3);
    const char *name = "";
    double err = fd_check(m, &f, 1, &name);
    print_message("  %s, continuous inputs: worst relative gradient error %.2e (%s)\n", bwt_arch_name(archs[a]), err, name);
    assert_true(err < 1e-2);
    bwt_model_free(m);
  }
  /* The flat baselines take tokens only: a clear error. */
  bwt_model_config c = {BWT_ARCH_MLP, 0, K, T, 8, 2, 2, BWT_NORM_LAYER, 0, 3, BWT_POS_LEARNED, D, BWT_INIT_BWT, 1};
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "continuous inputs need --arch transformer or lstm or mamba"));
}

static void test_lstm(void **state) {
  bwt_model *m = make_model(BWT_ARCH_LSTM, BWT_NORM_LAYER, 0);
  check(m, 0, 1e-2);
  check(m, 1, 1e-2);
  bwt_model_free(m);
}

/* Mamba: every tensor's gradient (the scan's, the convolution's, the gate's) through the whole
 * model, under both norms; and its tensors carry the reference module's names. */
static void test_mamba(void **state) {
  const bwt_norm norms[] = {BWT_NORM_RMS, BWT_NORM_LAYER};
  for (int n = 0; n < 2; n++) {
    bwt_model *m = make_model(BWT_ARCH_MAMBA, norms[n], n);
    check(m, 0, 1e-2);
    check(m, 1, 1e-2);
    const bwt_tensor_desc *a = bwt_model_tensor(m, BWT_ROLE_SSM_A, 1, 0), *x = bwt_model_tensor(m, BWT_ROLE_SSM_X, 0, 0);
    assert_string_equal(a->name, "layers.1.mixer.A_log");
    assert_int_equal(a->shape[0], 16); /* Di = 2·8 */
    assert_int_equal(a->shape[1], 16); /* d_state */
    assert_false(a->decay);
    assert_int_equal(x->shape[0], 1 + 2 * 16); /* dt_rank ⌈8/16⌉ + B + C */
    bwt_model_free(m);
  }
}

/* The repository's simplified Mamba: its gradients through the whole model, and its tensors: A_log
 * one per state, a rank-1 dt_proj, the scan's LayerNorm, no norm before the block. */
static void test_mamba_simplified(void **state) {
  bwt_model_config c = {BWT_ARCH_MAMBA, V, K, T, 8, 2, 2, BWT_NORM_LAYER, 0, 3, BWT_POS_LEARNED, 0, BWT_INIT_BWT, 1};
  c.ssm_variant = BWT_SSM_SIMPLIFIED;
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
  const bwt_tensor_desc *a = bwt_model_tensor(m, BWT_ROLE_SSM_A, 1, 0), *dt = bwt_model_find_tensor(m, "layers.0.mixer.dt_proj.weight");
  assert_int_equal(a->ndim, 1);
  assert_int_equal(a->shape[0], 16);
  assert_float_equal(m->params[a->offset + 3], logf(0.4f), 1e-6); /* log(0.1·n), n = 4 */
  assert_int_equal(dt->shape[1], 1);
  assert_true(fabsf(m->params[dt->offset]) <= 0.01f);
  assert_float_equal(m->params[bwt_model_find_tensor(m, "layers.0.mixer.dt_proj.bias")->offset], 0.1f, 0);
  assert_non_null(bwt_model_find_tensor(m, "layers.1.mixer.norm.bias"));
  assert_null(bwt_model_find_tensor(m, "layers.0.norm.weight"));
  test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, 3);
  check(m, 0, 1e-2);
  check(m, 1, 1e-2);
  bwt_model_free(m);
}

/* A mixture of experts (docs/moe.md) through the whole model: every tensor's gradient, the router's
 * through the gates and through the balance loss (weighted 0.5, so that its share is large), with
 * E = 4 top-1 (Switch's gate softmax(r)[e]) and E = 3 top-2 (softmax over the two chosen), under
 * both norms. Every row is supervised, so the capture shows every routing decision: no
 * finite-difference step may change one (the weights' seed is one where none does: under
 * LayerNorm a step of a norm weight often moves a second choice). */
static void test_transformer_experts(void **state) {
  const struct {
    int E, k;
    bwt_norm norm;
    uint64_t seed;
  } runs[] = {{4, 1, BWT_NORM_RMS, 3}, {3, 2, BWT_NORM_LAYER, 14}};
  fixture f;
  make_batch_sup(&f, 1);
  for (int i = 0; i < 2; i++) {
    bwt_model_config c = {BWT_ARCH_TRANSFORMER, V, K, T, 8, 2, 2, runs[i].norm, 0, 3, BWT_POS_LEARNED, 0, BWT_INIT_BWT, 1};
    c.experts = runs[i].E, c.expert_top_k = runs[i].k, c.moe_aux = 0.5;
    bwt_model *m = NULL;
    assert_int_equal(bwt_model_create(&m, &c, 11), BWT_STATUS_OK);
    assert_null(bwt_model_find_tensor(m, "blocks.0.mlp.fc1.weight"));
    const bwt_tensor_desc *router = bwt_model_find_tensor(m, "blocks.1.mlp.router.weight");
    const bwt_tensor_desc *fc1 = bwt_model_find_tensor(m, "blocks.1.mlp.experts.2.fc1.weight");
    assert_non_null(router);
    assert_non_null(fc1);
    assert_int_equal(router->shape[0], runs[i].E);
    assert_int_equal(fc1->shape[0], 4 * 8 / runs[i].k); /* expert_hidden 0: the dense MLP's active width */
    assert_string_equal(bwt_tensor_role_name(router->role), "mlp_router");
    test_fill_uniform(m->params, m->n_params, -0.6f, 0.6f, runs[i].seed);
    /* Larger router logits: wider margins between the choices than a step moves them. */
    for (int l = 0; l < 2; l++) bwt_scale(bwt_model_params_of(m, bwt_model_tensor(m, BWT_ROLE_MLP_ROUTER, l, 0)), 4.0f, router->size);
    const char *name = "";
    double err = fd_check(m, &f, 1, &name);
    print_message("  transformer, %d experts top-%d (%s), balance loss %.4f: worst relative gradient error %.2e (%s), %d route flips\n",
                  runs[i].E, runs[i].k, bwt_norm_name(runs[i].norm), bwt_model_aux_loss(m), err, name, route_flips);
    assert_int_equal(route_flips, 0);
    assert_true(bwt_model_aux_loss(m) > 0);
    assert_true(err < 1e-2);
    bwt_model_free(m);
  }
}

/* The checker must be able to fail: a backward that is 10% off in one tensor is caught. */
static void test_checker_detects_wrong_gradient(void **state) {
  bwt_model *m = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_RMS, 0);
  fixture f;
  make_batch(&f);
  analytic_grad(m, &f, 0);
  const bwt_tensor_desc *d = bwt_model_find_tensor(m, "blocks.0.attn.wk.weight");
  assert_non_null(d);
  /* Recompute by hand with a perturbed gradient for that tensor. */
  double num = 0, den = 0;
  for (size_t j = 0; j < d->size; j += 5) {
    float *p = m->params + d->offset + j, saved = *p;
    *p = saved + 1e-2f;
    double lp = loss_of(m, &f, 0);
    *p = saved - 1e-2f;
    double lm = loss_of(m, &f, 0);
    *p = saved;
    double fd = (lp - lm) / 2e-2, g = 1.1 * m->grads[d->offset + j];
    num += (fd - g) * (fd - g);
    den += g * g;
  }
  assert_true(sqrt(num) / sqrt(den) > 5e-2);
  bwt_model_free(m);
}

/* Masking every head of a layer leaves only the O projection's bias: equal to skipping the
 * attention branch and adding that bias. Checked through the logits of a model whose bias is 0. */
static void test_all_heads_masked_equals_attention_skipped(void **state) {
  bwt_model *a = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_RMS, 0);
  bwt_model *b = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_RMS, 0);
  const bwt_tensor_desc *bo = bwt_model_find_tensor(a, "blocks.1.attn.wo.bias");
  memset(a->params + bo->offset, 0, sizeof(float) * bo->size);
  memset(b->params + bo->offset, 0, sizeof(float) * bo->size);
  fixture f;
  make_batch(&f);
  float mask[2 * 2] = {1, 1, 0, 0};
  uint8_t skip[2] = {0, 1};
  const bwt_forward_options heads_off = {mask, NULL, NULL}, attn_off = {NULL, skip, NULL};
  const float *la = NULL, *lb = NULL;
  assert_int_equal(bwt_model_forward_with(a, &f.batch, &heads_off, &la), BWT_STATUS_OK);
  assert_int_equal(bwt_model_forward_with(b, &f.batch, &attn_off, &lb), BWT_STATUS_OK);
  assert_true(test_max_rel_err(la, lb, B * NSUP * K, 1e-3) < 1e-5);
  bwt_model_free(a);
  bwt_model_free(b);
}

static void test_bad_configs(void **state) {
  bwt_model *m = NULL;
  bwt_model_config c = {BWT_ARCH_TRANSFORMER, V, K, T, 8, 0, 2, BWT_NORM_RMS, 0, 3, BWT_POS_LEARNED, 0, BWT_INIT_BWT, 1};
  assert_int_equal(bwt_model_create(&m, &c, 1), BWT_STATUS_ARG); /* zero layers */
  assert_non_null(strstr(bwt_last_error(), "layers"));
  c.n_layers = 2, c.n_heads = 3;
  assert_int_equal(bwt_model_create(&m, &c, 1), BWT_STATUS_ARG); /* heads do not divide d */
  c.n_heads = 2, c.tied_head = 1, c.n_classes = 5;
  assert_int_equal(bwt_model_create(&m, &c, 1), BWT_STATUS_ARG); /* tied head, K != V */
  assert_null(m);
}

static void test_parameter_count_reference_size(void **state) {
  /* The paper's bijection transformer: d 192, 6 layers, 6 heads, V=40 tokens, T=37 (≈2.68M). */
  bwt_model_config c = {BWT_ARCH_TRANSFORMER, 40, 40, 37, 192, 6, 6, BWT_NORM_RMS, 0, 1, BWT_POS_LEARNED, 0, BWT_INIT_BWT, 1};
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c, 1), BWT_STATUS_OK);
  /* per block: 4 (C² + C) + 2·4C² + 4C + C + 2C (norms) */
  size_t C = 192, block = 4 * (C * C + C) + 8 * C * C + 5 * C + 2 * C;
  assert_int_equal(m->n_params, 40 * C + 37 * C + 6 * block + C + 40 * C);
  print_message("  reference transformer: %zu parameters\n", m->n_params);
  bwt_model_free(m);
}

/* Every tensor of every architecture has a role, and the role lookup finds the tensors the
 * checkpoint names say they are; the architecture table answers for capabilities. */
static void test_roles_and_arch_table(void **state) {
  (void)state;
  char buf[128];
  assert_string_equal(bwt_arch_list(BWT_CAP_CONTINUOUS_INPUT, " or ", buf, sizeof buf), "transformer or lstm or mamba");
  assert_string_equal(bwt_arch_list(BWT_CAP_ATTENTION, ", ", buf, sizeof buf), "transformer");
  assert_string_equal(bwt_arch_list(0, ", ", buf, sizeof buf), "transformer, mlp, window_mlp, lstm, mamba");
  assert_null(bwt_arch_info_of(BWT_ARCH_COUNT));
  assert_false(bwt_arch_has(BWT_ARCH_COUNT, 0));
  for (int a = 0; a < BWT_ARCH_COUNT; a++) {
    bwt_arch arch;
    assert_int_equal(bwt_arch_parse(bwt_arch_name((bwt_arch)a), &arch), BWT_STATUS_OK);
    assert_int_equal(arch, a);
    bwt_model *m = make_model((bwt_arch)a, BWT_NORM_LAYER, 0);
    assert_int_equal(bwt_model_has(m, BWT_CAP_ATTENTION), a == BWT_ARCH_TRANSFORMER);
    for (int i = 0; i < m->n_tensors; i++) {
      const bwt_tensor_desc *d = &m->tensors[i];
      assert_true((unsigned)d->role < BWT_ROLE_COUNT);
      assert_ptr_equal(bwt_model_tensor(m, d->role, d->layer, d->bias), d); /* (role, layer, bias) is unique */
      assert_int_equal(d->bias, strstr(d->name, "bias") != NULL);
    }
    bwt_model_free(m);
  }
  bwt_model *m = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_LAYER, 0);
  const char *expect[][2] = {{"blocks.1.attn.wv.weight", "attn_v"}, {"blocks.0.attn.wk.bias", "attn_k"},
                             {"blocks.1.norm1.bias", "attn_norm"},  {"blocks.0.mlp.fc2.weight", "mlp_out"},
                             {"head.weight", "head"},               {"tok_emb", "token_embedding"}};
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    const bwt_tensor_desc *d = bwt_model_find_tensor(m, expect[i][0]);
    assert_non_null(d);
    assert_string_equal(bwt_tensor_role_name(d->role), expect[i][1]);
  }
  assert_string_equal(bwt_model_tensor(m, BWT_ROLE_ATTN_V, 1, 0)->name, "blocks.1.attn.wv.weight");
  assert_null(bwt_model_tensor(m, BWT_ROLE_ATTN_V, 2, 0)); /* no block 2 */
  assert_null(bwt_model_tensor(m, BWT_ROLE_RECURRENT_IN, 0, 0));
  bwt_model_free(m);
  m = make_model(BWT_ARCH_MLP, BWT_NORM_LAYER, 0); /* ablations need attention */
  fixture f;
  make_batch(&f);
  const uint8_t skip[2] = {1, 0};
  const bwt_forward_options off = {NULL, skip, NULL};
  const float *logits;
  assert_int_equal(bwt_model_forward_with(m, &f.batch, &off, &logits), BWT_STATUS_ARG);
  bwt_model_free(m);
  m = make_model(BWT_ARCH_TRANSFORMER, BWT_NORM_RMS, 1);
  assert_null(bwt_model_tensor(m, BWT_ROLE_HEAD, -1, 0)); /* tied to tok_emb */
  assert_null(bwt_model_tensor(m, BWT_ROLE_ATTN_NORM, 0, 1)); /* RMSNorm has no shift */
  bwt_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transformer_rms_untied),
      cmocka_unit_test(test_transformer_layernorm_tied_ablated),
      cmocka_unit_test(test_transformer_experts),
      cmocka_unit_test(test_mlp),
      cmocka_unit_test(test_window_mlp),
      cmocka_unit_test(test_lstm),
      cmocka_unit_test(test_mamba),
      cmocka_unit_test(test_mamba_simplified),
      cmocka_unit_test(test_sinusoidal_positions),
      cmocka_unit_test(test_position_offsets),
      cmocka_unit_test(test_no_positions_no_attention_bias),
      cmocka_unit_test(test_init_schemes),
      cmocka_unit_test(test_continuous_inputs),
      cmocka_unit_test(test_checker_detects_wrong_gradient),
      cmocka_unit_test(test_all_heads_masked_equals_attention_skipped),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_parameter_count_reference_size),
      cmocka_unit_test(test_roles_and_arch_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
