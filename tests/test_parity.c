/* Parity with PyTorch (the llm.c approach): tools/torch_reference.py builds the same models in
 * PyTorch and writes, per model, a fixture (tests/fixtures/<name>.safetensors) with its weights, a
 * batch, the logits, the loss, every parameter gradient and the losses of 10 AdamW steps. Here bwt
 * loads the same weights and must reproduce all of them.
 *
 * Tolerances (err = |bwt − torch| / max(|torch|, floor)):
 *   logits      ≤ 1e-5, floor = max|torch logits| (the logits are O(1))
 *   loss        ≤ 1e-5 relative (hard and soft targets)
 *   gradients   ≤ 1e-4, floor per tensor = max(5e-2 · max|torch grad of that tensor|,
 *                                               2e-3 · max|torch grad over all tensors|)
 *   10 losses   ≤ 1e-4 absolute
 * Why the gradient floor is 5e-2 of the tensor's largest entry: against the same model run in
 * float64, torch's own float32 gradients are off by up to ~1.6e-6 · max|grad| of a tensor, and so
 * are bwt's (different summation orders, same size of rounding), so an entry far below its
 * tensor's largest carries an absolute error of ~1e-6 · max and a relative error that says nothing.
 * With this floor the worst rounding error reads ~3e-5, while a 1% change of any entry above
 * 5e-4 · max reads ≥ 1e-4 (test_comparison_detects_one_percent). The global term is for the key
 * biases, whose exact gradient is 0 (softmax ignores a constant shift of a row's scores): both
 * sides hold ~1e-8 of noise there (~4e-8 · max|grad|), and bwt's must stay below 2e-7 · max|grad|.
 * Python is needed only to regenerate the fixtures, never to build or run this test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/kernels.h"
#include "bwt/model.h"
#include "bwt/safetensors.h"
#include "testutil.h"
#include "train/optim.h"

#define LOGIT_TOL 1e-5
#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4
#define GRAD_FLOOR_TENSOR 5e-2
#define GRAD_FLOOR_GLOBAL 2e-3
#define STEPS_TOL 1e-4
#define N_STEPS 10
#define MAX_REPORT 5

/* ---------------------------------------------------------------------------------------------
 * The fixture file, located next to this source file: <dir of __FILE__>/fixtures/<name>. */

static void fixture_path(char *out, size_t n, const char *name) {
  const char *src = __FILE__, *slash = strrchr(src, '/');
  int dir_len = slash ? (int)(slash - src) : 1;
  snprintf(out, n, "%.*s/fixtures/%s.safetensors", dir_len, slash ? src : ".", name);
}

typedef struct {
  const char *name;
  bwt_st_file *file;
  bwt_model *model;
  int B, T, N, K;
  bwt_batch batch;
  double *posterior; /* (B·N, K) one-hot of the target */
  const double *soft;
  const float *logits; /* torch's (B·N, K) logits */
  double loss, loss_soft;
  const double *losses; /* (N_STEPS) */
} parity;

static int meta_int(const bwt_st_file *f, const char *key) {
  const char *v = bwt_safetensors_meta(f, key);
  if (!v) fail_msg("fixture metadata has no '%s'", key);
  char *end = NULL;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0') fail_msg("fixture metadata '%s' = '%s' is not an integer", key, v);
  return (int)x;
}

/* An integer the older fixtures lack (the mamba settings): 0, bwt's default, when absent. */
static int meta_int_or0(const bwt_st_file *f, const char *key) {
  return bwt_safetensors_meta(f, key) ? meta_int(f, key) : 0;
}

static const void *get(const bwt_st_file *f, const char *name, bwt_dtype dtype, int ndim,
                       int64_t d0, int64_t d1, int64_t d2) {
  const int64_t shape[3] = {d0, d1, d2};
  const void *data = NULL;
  if (bwt_safetensors_get(f, name, dtype, ndim, shape, &data) != BWT_STATUS_OK)
    fail_msg("fixture: %s", bwt_last_error());
  return data;
}

/* The torch tensor "<prefix><bwt name>" for tensor d of the model. */
static const float *get_tensor(const bwt_st_file *f, const char *prefix, const bwt_tensor_desc *d) {
  char key[2 * BWT_TENSOR_NAME_MAX];
  snprintf(key, sizeof key, "%s%s", prefix, d->name);
  return get(f, key, BWT_DTYPE_F32, d->ndim, d->shape[0], d->shape[1], 0);
}

/* Opens the fixture, builds the bwt model from its config and loads the torch weights into it. */
static void parity_open(parity *p, const char *name) {
  char path[4096];
  memset(p, 0, sizeof *p);
  p->name = name;
  fixture_path(path, sizeof path, name);
  if (bwt_safetensors_open(&p->file, path) != BWT_STATUS_OK)
    fail_msg("cannot read fixture %s: %s (regenerate: /usr/bin/python3 tools/torch_reference.py)", path,
             bwt_last_error());
  const bwt_st_file *f = p->file;

  bwt_model_config c;
  memset(&c, 0, sizeof c);
  const char *arch = bwt_safetensors_meta(f, "arch"), *norm = bwt_safetensors_meta(f, "norm");
  assert_non_null(arch);
  assert_non_null(norm);
  assert_int_equal(bwt_arch_parse(arch, &c.arch), BWT_STATUS_OK);
  assert_int_equal(bwt_norm_parse(norm, &c.norm), BWT_STATUS_OK);
  c.vocab = meta_int(f, "vocab");
  c.n_classes = meta_int(f, "n_classes");
  c.max_T = meta_int(f, "max_T");
  c.d_model = meta_int(f, "d_model");
  c.n_layers = meta_int(f, "n_layers");
  c.n_heads = meta_int(f, "n_heads");
  c.tied_head = meta_int(f, "tied_head");
  c.window = meta_int(f, "window");
  c.ssm_state = meta_int_or0(f, "ssm_state");
  c.ssm_conv = meta_int_or0(f, "ssm_conv");
  c.ssm_expand = meta_int_or0(f, "ssm_expand");
  c.ssm_variant = (bwt_ssm_variant)meta_int_or0(f, "ssm_variant");
  c.init = BWT_INIT_BWT;
  c.attn_bias = 1; /* the fixtures' transformers have attention biases */
  if (bwt_model_create(&p->model, &c, 1) != BWT_STATUS_OK) fail_msg("bwt_model_create: %s", bwt_last_error());
  bwt_model *m = p->model;

  /* Every bwt tensor must be in the fixture under its name, with bwt's shape ... */
  size_t loaded = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *d = &m->tensors[i];
    memcpy(m->params + d->offset, get_tensor(f, "param.", d), sizeof(float) * d->size);
    loaded += d->size;
  }
  assert_int_equal(loaded, m->n_params);
  /* ... and the fixture may hold no parameter bwt lacks: besides the 8 batch and result entries
   * read below, it holds exactly one param.* and one grad.* per bwt tensor. */
  if (bwt_safetensors_count(f) != 2 * m->n_tensors + 8)
    fail_msg("fixture %s holds %d tensors; bwt's %s has %d tensors, so expected %d (a parameter bwt lacks?)",
             name, bwt_safetensors_count(f), arch, m->n_tensors, 2 * m->n_tensors + 8);

  int B = p->B = meta_int(f, "B"), T = p->T = meta_int(f, "T"), N = p->N = meta_int(f, "n_sup");
  int K = p->K = c.n_classes, M = B * N;
  const int32_t *tokens = get(f, "tokens", BWT_DTYPE_I32, 2, B, T, 0);
  const int32_t *sup_pos = get(f, "sup_pos", BWT_DTYPE_I32, 2, B, N, 0);
  const int32_t *targets = get(f, "targets", BWT_DTYPE_I32, 2, B, N, 0);
  p->soft = get(f, "soft_targets", BWT_DTYPE_F64, 3, B, N, K);
  p->logits = get(f, "logits", BWT_DTYPE_F32, 2, M, K, 0);
  p->loss = *(const double *)get(f, "loss", BWT_DTYPE_F64, 1, 1, 0, 0);
  p->loss_soft = *(const double *)get(f, "loss_soft", BWT_DTYPE_F64, 1, 1, 0, 0);
  p->losses = get(f, "losses", BWT_DTYPE_F64, 1, N_STEPS, 0, 0);

  /* The batch by hand: the posterior is the one-hot of the target. The fixture's arrays are
   * read-only; the batch only reads them. */
  p->posterior = calloc((size_t)M * K, sizeof(double));
  assert_non_null(p->posterior);
  for (int r = 0; r < M; r++) {
    assert_true(targets[r] >= 0 && targets[r] < K);
    p->posterior[(size_t)r * K + targets[r]] = 1.0;
  }
  p->batch = (bwt_batch){B, T, N, K, 0, (int32_t *)tokens, NULL, (int32_t *)sup_pos, (int32_t *)targets,
                         p->posterior};
}

static void parity_close(parity *p) {
  bwt_model_free(p->model);
  bwt_safetensors_close(p->file);
  free(p->posterior);
}

/* ---------------------------------------------------------------------------------------------
 * Comparison. Returns the number of entries with err > tol (err as in the header); reports the
 * first MAX_REPORT of them and the worst error through *worst. */

static size_t compare(const char *what, const float *got, const float *want, size_t n, double floor,
                      double tol, double *worst) {
  size_t bad = 0;
  *worst = 0;
  for (size_t i = 0; i < n; i++) {
    double err = fabs((double)got[i] - (double)want[i]) / fmax(fabs((double)want[i]), floor);
    if (!(err <= *worst)) *worst = err; /* NaN is the worst */
    if (!(err <= tol)) {
      if (bad < MAX_REPORT)
        print_message("  MISMATCH %s[%zu]: bwt %.9g, torch %.9g (error %.3g > %.1g, floor %.3g)\n", what, i,
                      (double)got[i], (double)want[i], err, tol, floor);
      bad++;
    }
  }
  if (bad > MAX_REPORT) print_message("  ... %zu mismatches in %s in all\n", bad, what);
  return bad;
}

static double max_abs(const float *x, size_t n) {
  double mx = 0;
  for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)x[i]));
  return mx;
}

static double grad_floor(const float *want, size_t n, double global_max) {
  return fmax(fmax(GRAD_FLOOR_TENSOR * max_abs(want, n), GRAD_FLOOR_GLOBAL * global_max), 1e-30);
}

static double global_grad_max(const parity *p) {
  double mx = 0;
  for (int i = 0; i < p->model->n_tensors; i++) {
    const bwt_tensor_desc *d = &p->model->tensors[i];
    mx = fmax(mx, max_abs(get_tensor(p->file, "grad.", d), d->size));
  }
  return mx;
}

/* Forward + mean hard cross-entropy; probs and dlogits (M,K) are caller scratch. When dlogits is
 * not NULL, also zero_grad + backward of that loss. Returns the loss; *logits as the model's. */
static double step_loss(parity *p, float *probs, float *dlogits, const float **logits) {
  bwt_model *m = p->model;
  int M = p->B * p->N, K = p->K;
  if (bwt_model_forward(m, &p->batch, logits) != BWT_STATUS_OK)
    fail_msg("forward: %s", bwt_last_error());
  bwt_softmax_forward(probs, *logits, M, K);
  double loss = bwt_xent_loss(*logits, p->batch.target, NULL, M, K);
  if (dlogits) {
    memset(dlogits, 0, sizeof(float) * (size_t)M * K);
    bwt_xent_backward(dlogits, probs, p->batch.target, NULL, 1.0f / M, M, K);
    bwt_model_zero_grad(m);
    if (bwt_model_backward(m, &p->batch, dlogits) != BWT_STATUS_OK)
      fail_msg("backward: %s", bwt_last_error());
  }
  return loss;
}

static void run_parity(const char *name) {
  parity p;
  parity_open(&p, name);
  bwt_model *m = p.model;
  int M = p.B * p.N, K = p.K;
  float *probs = calloc((size_t)M * K, sizeof(float));
  float *dlogits = calloc((size_t)M * K, sizeof(float));
  assert_non_null(probs);
  assert_non_null(dlogits);
  size_t bad = 0;

  /* Logits and losses. */
  const float *logits = NULL;
  double loss = step_loss(&p, probs, dlogits, &logits);
  double logit_err = 0;
  bad += compare("logits", logits, p.logits, (size_t)M * K, max_abs(p.logits, (size_t)M * K), LOGIT_TOL,
                 &logit_err);
  double loss_err = fabs(loss - p.loss) / fabs(p.loss);
  double loss_soft = bwt_xent_loss(logits, NULL, p.soft, M, K);
  double soft_err = fabs(loss_soft - p.loss_soft) / fabs(p.loss_soft);
  if (!(loss_err <= LOSS_TOL))
    print_message("  MISMATCH loss: bwt %.12g, torch %.12g\n", loss, p.loss), bad++;
  if (!(soft_err <= LOSS_TOL))
    print_message("  MISMATCH soft-target loss: bwt %.12g, torch %.12g\n", loss_soft, p.loss_soft), bad++;

  /* Every parameter gradient, within GRAD_TOL or, where torch's own float32 gradients are further than
   * a quarter of that from its float64 ones (the simplified Mamba's clamps and LayerNorm), four times
   * that distance (the fixture's grad_noise, by this measure). */
  const char *noise = bwt_safetensors_meta(p.file, "grad_noise");
  double grad_tol = noise ? fmax(GRAD_TOL, 4 * strtod(noise, NULL)) : GRAD_TOL;
  double gmax = global_grad_max(&p), grad_err = 0;
  const char *worst_tensor = "";
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *d = &m->tensors[i];
    const float *want = get_tensor(p.file, "grad.", d);
    double err = 0;
    double floor = grad_floor(want, d->size, gmax);
    bad += compare(d->name, m->grads + d->offset, want, d->size, floor, grad_tol, &err);
    if (!(err <= grad_err)) grad_err = err, worst_tensor = d->name;
  }

  /* Ten AdamW steps on the same batch, from the fixture's weights. */
  bwt_train_config tc;
  bwt_train_config_default(&tc);
  tc.lr = 1e-3, tc.beta1 = 0.9, tc.beta2 = 0.999, tc.eps = 1e-8, tc.weight_decay = 0.1, tc.clip = 1.0;
  float *adam_m = calloc(m->n_params, sizeof(float)), *adam_v = calloc(m->n_params, sizeof(float));
  assert_non_null(adam_m);
  assert_non_null(adam_v);
  /* As many steps as torch's float32 and float64 runs agree on (fixtures without the count: all). */
  int n_steps = bwt_safetensors_meta(p.file, "steps_determinate") ? meta_int(p.file, "steps_determinate") : N_STEPS;
  double steps_err = 0;
  for (int t = 1; t <= n_steps; t++) {
    double l = step_loss(&p, probs, dlogits, &logits);
    double err = fabs(l - p.losses[t - 1]);
    if (!(err <= steps_err)) steps_err = err;
    if (!(err <= STEPS_TOL))
      print_message("  MISMATCH loss before step %d: bwt %.9f, torch %.9f\n", t, l, p.losses[t - 1]), bad++;
    optim_clip(m, tc.clip);
    optim_adamw(m, adam_m, adam_v, &tc, tc.lr, t);
  }

  print_message("  %-28s logits %.1e  loss %.1e  soft loss %.1e  grads %.1e (%s; tol %.1e)  %d-step losses %.1e abs\n",
                name, logit_err, loss_err, soft_err, grad_err, worst_tensor, grad_tol, n_steps, steps_err);
  free(adam_m);
  free(adam_v);
  free(probs);
  free(dlogits);
  parity_close(&p);
  assert_int_equal(bad, 0);
}

static void test_transformer_rms_untied(void **state) { run_parity("transformer_rms_untied"); }
static void test_transformer_layernorm_tied(void **state) { run_parity("transformer_layernorm_tied"); }
static void test_mlp(void **state) { run_parity("mlp"); }
static void test_window_mlp(void **state) { run_parity("window_mlp"); }
static void test_lstm(void **state) { run_parity("lstm"); }
/* Mamba against tools/torch_reference.py's Mixer, written from the paper's equations and the
 * reference module's semantics (sequential scan), same tolerances. */
static void test_mamba(void **state) { run_parity("mamba"); }
static void test_mamba_simplified(void **state) { run_parity("mamba_simplified"); }

/* The comparison must be able to fail: bwt's gradient matches the fixture, but not once one entry
 * of the fixture's gradient is moved by 1%; the report then names exactly that entry. */
static void test_comparison_detects_one_percent(void **state) {
  parity p;
  parity_open(&p, "transformer_rms_untied");
  bwt_model *m = p.model;
  int M = p.B * p.N, K = p.K;
  float *probs = calloc((size_t)M * K, sizeof(float));
  float *dlogits = calloc((size_t)M * K, sizeof(float));
  assert_non_null(probs);
  assert_non_null(dlogits);
  const float *logits = NULL;
  step_loss(&p, probs, dlogits, &logits);

  const bwt_tensor_desc *d = bwt_model_find_tensor(m, "blocks.0.attn.wk.weight");
  assert_non_null(d);
  float *want = malloc(sizeof(float) * d->size);
  assert_non_null(want);
  memcpy(want, get_tensor(p.file, "grad.", d), sizeof(float) * d->size);
  double gmax = global_grad_max(&p), floor = grad_floor(want, d->size, gmax), err = 0;
  assert_int_equal(compare(d->name, m->grads + d->offset, want, d->size, floor, GRAD_TOL, &err), 0);
  /* An entry of middling size: the first with |g| in [0.1, 0.5]·max. */
  double mx = max_abs(want, d->size);
  size_t j = 0;
  while (j < d->size && !(fabs(want[j]) >= 0.1 * mx && fabs(want[j]) <= 0.5 * mx)) j++;
  assert_true(j < d->size);
  want[j] *= 1.01f;
  print_message("  perturbing %s[%zu] by 1%% (a mismatch report is expected below):\n", d->name, j);
  assert_int_equal(compare(d->name, m->grads + d->offset, want, d->size, floor, GRAD_TOL, &err), 1);
  assert_true(err > 5e-3);
  free(want);
  free(probs);
  free(dlogits);
  parity_close(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transformer_rms_untied),
      cmocka_unit_test(test_transformer_layernorm_tied),
      cmocka_unit_test(test_mlp),
      cmocka_unit_test(test_window_mlp),
      cmocka_unit_test(test_lstm),
      cmocka_unit_test(test_mamba),
      cmocka_unit_test(test_mamba_simplified),
      cmocka_unit_test(test_comparison_detects_one_percent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
