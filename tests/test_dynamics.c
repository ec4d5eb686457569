/* Gradient dynamics: the routing law and the value formula against the real backward pass, on a
 * hand example and on random small models; a perturbed backward is caught; tracing changes nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/detector.h"
#include "bwt/lab/dynamics.h"
#include "bwt/kernels.h"
#include "bwt/lab/timescales.h"
#include "bwt/train.h"
#include "testutil.h"

/* One head, two positions, hs 1: o_1 = α_10 v_0 + α_11 v_1 with u_1 = 2: b = (2 v_0, 2 v_1). */
static void test_hand_example(void **state) {
  float u[2] = {0.5f, 2.0f}, v[2] = {1.0f, 3.0f}, att[4] = {1, 0, 0.25f, 0.75f}, ds[4], dv[2];
  bwt_attention_trace t = {0, 1, 2, 1, 1, 2, NULL, u, att, v, ds, dv};
  float bmat[4], adv[4], resp[2];
  bwt_dynamics_head(&t, 0, 0, bmat, adv, resp);
  /* Row 1: b = (2, 6), baseline 0.25·2 + 0.75·6 = 5, advantage (0.25·(2−5), 0.75·(6−5)). */
  const float want_b[4] = {0.5f, 0, 2, 6}, want_adv[4] = {0, 0, -0.75f, 0.75f};
  for (int i = 0; i < 4; i++) {
    assert_float_equal(bmat[i], want_b[i], 1e-7);
    assert_float_equal(adv[i], want_adv[i], 1e-7);
  }
  /* v_0 is used by row 0 (α 1, u 0.5) and row 1 (α 0.25, u 2): 1.0; v_1 by row 1 only: 1.5. */
  assert_float_equal(resp[0], 1.0, 1e-7);
  assert_float_equal(resp[1], 1.5, 1e-7);
}

static bwt_model *tiny_model(bwt_task **task, int layers) {
  bwt_task_config tc;
  assert_int_equal(bwt_task_config_default(&tc, "bijection"), BWT_STATUS_OK);
  tc.V = 6, tc.L = 5;
  assert_int_equal(bwt_task_create(task, &tc), BWT_STATUS_OK);
  bwt_model_config mc;
  bwt_model_config_default(&mc, BWT_ARCH_TRANSFORMER, *task);
  mc.d_model = 24, mc.n_layers = layers, mc.n_heads = 3;
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &mc, 11), BWT_STATUS_OK);
  /* Larger weights than the init so that attention is far from uniform. */
  for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 8.0f;
  return m;
}

static void test_verify_random_models(void **state) {
  bwt_task *task;
  bwt_model *m = tiny_model(&task, 3);
  float mask[3 * 3] = {1, 1, 1, 1, 0.5f, 1, 1, 1, 1}; /* (layers, heads) */ /* a partly masked head: u carries the mask */
  const bwt_forward_options opt = {mask, NULL, NULL};
  bwt_dynamics_check c[3];
  assert_int_equal(bwt_dynamics_verify(m, task, &opt, 3, 2, 8, c), BWT_STATUS_OK);
  for (int l = 0; l < 3; l++) {
    double rs = c[l].score_max_abs / c[l].score_scale, rv = c[l].value_max_abs / c[l].value_scale;
    print_message("  block %d: routing law max |diff| %.2e (scale %.2e), values %.2e (scale %.2e)\n", l,
                  c[l].score_max_abs, c[l].score_scale, c[l].value_max_abs, c[l].value_scale);
    assert_true(c[l].score_scale > 0 && c[l].value_scale > 0);
    assert_true(rs < 1e-5 && rv < 1e-5);
  }
  bwt_model_free(m);
  bwt_task_free(task);
}

/* The trace of a backward with one gradient entry off by 0.1% of its scale fails the check, and
 * tracing leaves the model's gradients bit-identical. */
static void test_perturbed_backward_is_caught(void **state) {
  bwt_task *task;
  bwt_model *m = tiny_model(&task, 2);
  bwt_batch b;
  assert_int_equal(bwt_batch_alloc(&b, task, 4), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(task, 5, &b), BWT_STATUS_OK);
  size_t M = (size_t)b.B * b.n_sup, K = task->n_classes;
  const float *logits;
  float *probs = malloc(sizeof(float) * M * K), *dl = calloc(M * K, sizeof(float));
  float *plain = malloc(sizeof(float) * m->n_params);
  assert_int_equal(bwt_model_forward(m, &b, &logits), BWT_STATUS_OK);
  bwt_softmax_forward(probs, logits, (int)M, (int)K);
  bwt_xent_backward(dl, probs, b.target, NULL, 1.0f / M, (int)M, (int)K);
  bwt_model_zero_grad(m);
  assert_int_equal(bwt_model_backward(m, &b, dl), BWT_STATUS_OK);
  memcpy(plain, m->grads, sizeof(float) * m->n_params);
  for (int layer = 0; layer < 2; layer++) {
    bwt_model_zero_grad(m);
    bwt_attention_trace t;
    assert_int_equal(bwt_model_backward_traced(m, &b, dl, layer, &t), BWT_STATUS_OK);
    assert_memory_equal(plain, m->grads, sizeof(float) * m->n_params);
    bwt_dynamics_check ok, bad;
    assert_int_equal(bwt_dynamics_check_trace(&t, &ok), BWT_STATUS_OK);
    assert_true(ok.score_max_abs < 1e-5 * ok.score_scale && ok.value_max_abs < 1e-5 * ok.value_scale);
    t.dscore[t.T + 1] += (float)(1e-3 * ok.score_scale); /* query row 1 of sequence 0, head 0 */
    assert_int_equal(bwt_dynamics_check_trace(&t, &bad), BWT_STATUS_OK);
    assert_true(bad.score_max_abs > 0.5e-3 * ok.score_scale);
    t.dv[7] *= 1.01f;
    assert_int_equal(bwt_dynamics_check_trace(&t, &bad), BWT_STATUS_OK);
    assert_true(bad.value_max_abs > 1e-3 * fabs(t.dv[7]));
    print_message("  block %d perturbed: routing %.2e, values %.2e (intact %.2e, %.2e)\n", layer, bad.score_max_abs,
                  bad.value_max_abs, ok.score_max_abs, ok.value_max_abs);
    bwt_attention_trace_free(&t);
  }
  bwt_attention_trace t;
  assert_int_equal(bwt_model_backward_traced(m, &b, dl, 2, &t), BWT_STATUS_ARG);
  bwt_attention_trace_free(&t);
  free(probs);
  free(dl);
  free(plain);
  bwt_batch_free(&b);
  bwt_model_free(m);
  bwt_task_free(task);
}

/* Silhouette against hand-computed values and a brute-force double-precision version. */
static void test_silhouette(void **state) {
  const float two[4 * 2] = {1, 0, 1, 0, 0, 1, 0, 1};
  const int lab2[4] = {0, 0, 1, 1}, lab1[4] = {0, 0, 0, 0}, lab3[3] = {0, 0, 1};
  double per[4];
  assert_float_equal(bwt_silhouette(two, lab2, 4, 2, per), 1.0, 1e-12);
  assert_true(isnan(bwt_silhouette(two, lab1, 4, 2, NULL)));
  const float three[3 * 2] = {1, 0, 1, 0, 0, 1};
  assert_float_equal(bwt_silhouette(three, lab3, 3, 2, per), 2.0 / 3.0, 1e-12); /* a singleton scores 0 */
  assert_float_equal(per[2], 0.0, 0.0);
  enum { N = 60, D = 5 };
  float x[N * D];
  int lab[N];
  test_fill_uniform(x, N * D, -1, 1, 17);
  for (int i = 0; i < N; i++) {
    double nn = 0;
    for (int k = 0; k < D; k++) nn += (double)x[i * D + k] * x[i * D + k];
    for (int k = 0; k < D; k++) x[i * D + k] = (float)(x[i * D + k] / sqrt(nn));
    lab[i] = i % 3; /* three labels on structureless points */
  }
  double want = 0;
  for (int i = 0; i < N; i++) {
    double in = 0, out[3] = {0}, nin = 0, nout[3] = {0};
    for (int j = 0; j < N; j++) {
      if (j == i) continue;
      double dot = 0;
      for (int k = 0; k < D; k++) dot += (double)x[i * D + k] * x[j * D + k];
      if (lab[j] == lab[i]) in += 1 - dot, nin++;
      else out[lab[j]] += 1 - dot, nout[lab[j]]++;
    }
    double a = in / nin, b = INFINITY;
    for (int c = 0; c < 3; c++)
      if (c != lab[i]) b = fmin(b, out[c] / nout[c]);
    want += (b - a) / fmax(a, b) / N;
  }
  double got = bwt_silhouette(x, lab, N, D, NULL);
  print_message("  random points in 3 labels: silhouette %.6f (brute force %.6f)\n", got, want);
  assert_float_equal(got, want, 1e-9);
  assert_true(fabs(got) < 0.2);
}

/* The detector runs its three input kinds on a small model with finite, bounded results. */
static void test_detector_runs(void **state) {
  bwt_task *task;
  bwt_model *m = tiny_model(&task, 2);
  bwt_detector_options o;
  bwt_detector_options_default(&o);
  o.n_seqs = 24, o.batch = 8, o.subsamples = 20, o.subsample_rows = 30;
  bwt_detect_result r[BWT_DETECT_N];
  assert_int_equal(bwt_detect(m, task, &o, r), BWT_STATUS_OK);
  for (int k = 0; k < BWT_DETECT_N; k++) {
    assert_int_equal(r[k].rows, 24 * task->n_sup);
    assert_true(r[k].silhouette >= -1 && r[k].silhouette <= 1);
    assert_true(r[k].fire_rate >= 0 && r[k].fire_rate <= 1);
    print_message("  %s: %d clusters, silhouette %.4f, r %.4f, fires %.0f%%\n", bwt_detect_input_names[k],
                  r[k].clusters, r[k].silhouette, r[k].confidence_r, 100 * r[k].fire_rate);
  }
  assert_true(isnan(r[BWT_DETECT_RANDOM_TOKENS].confidence_r) && !isnan(r[BWT_DETECT_REAL].confidence_r));
  for (int k = 0; k < BWT_DETECT_N; k++) {
    assert_int_equal(r[k].n_sub, 20);
    for (int i = 1; i < r[k].n_sub; i++) assert_true(r[k].sub_silhouette[i - 1] <= r[k].sub_silhouette[i]);
  }
  const char *dir = test_tmpdir("detector");
  assert_int_equal(bwt_detect_figure(&o, r, dir), BWT_STATUS_OK);
  char *json = bwt_detect_to_json(&o, r);
  assert_non_null(strstr(json, "\"shuffled_labels\""));
  free(json);
  for (int k = 0; k < BWT_DETECT_N; k++) bwt_detect_result_free(&r[k]);
  o.layer = 5;
  assert_int_equal(bwt_detect(m, task, &o, r), BWT_STATUS_ARG);
  bwt_model_free(m);
  bwt_task_free(task);
}

/* A run of a 2-block, 2-head transformer of width 16 on the bijection V=5, one thread. */
static bwt_run_config tiny_run(int steps, int batch) {
  bwt_run_config c;
  memset(&c, 0, sizeof c);
  assert_int_equal(bwt_task_config_default(&c.task, "bijection"), BWT_STATUS_OK);
  c.task.V = 5, c.task.L = 4;
  bwt_train_config_default(&c.train);
  c.train.steps = steps, c.train.batch = batch, c.train.warmup = 2, c.train.threads = 1;
  bwt_task *task = NULL;
  assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
  bwt_model_config_default(&c.model, BWT_ARCH_TRANSFORMER, task);
  c.model.d_model = 16, c.model.n_layers = 2, c.model.n_heads = 2;
  bwt_task_free(task);
  return c;
}

/* --lr-v-mult scales the step of the value projections only: after one step from the same start,
 * every other tensor is bit-identical. */
static void test_lr_v_mult_moves_only_values(void **state) {
  bwt_run_config c = tiny_run(3, 4);
  c.train.warmup = 0;
  bwt_trainer *a = NULL, *b = NULL;
  assert_int_equal(bwt_trainer_create(&a, &c), BWT_STATUS_OK);
  c.train.lr_v_mult = 10;
  assert_int_equal(bwt_trainer_create(&b, &c), BWT_STATUS_OK);
  double loss, gn, lr;
  assert_int_equal(bwt_trainer_step(a, &loss, &gn, &lr), BWT_STATUS_OK);
  assert_int_equal(bwt_trainer_step(b, &loss, &gn, &lr), BWT_STATUS_OK);
  int values = 0;
  for (int i = 0; i < a->model->n_tensors; i++) {
    const bwt_tensor_desc *d = &a->model->tensors[i];
    int same = memcmp(a->model->params + d->offset, b->model->params + d->offset, sizeof(float) * d->size) == 0;
    int is_value = strstr(d->name, ".attn.wv.") != NULL;
    values += is_value;
    if (is_value && strstr(d->name, "weight")) assert_false(same);
    if (!is_value) assert_true(same);
  }
  assert_int_equal(values, 4); /* weight and bias of 2 blocks */
  c.train.lr_v_mult = 0;
  assert_int_equal(bwt_run_config_check(&c), BWT_STATUS_ARG);
  bwt_trainer_free(a);
  bwt_trainer_free(b);
}

/* The training log carries every block's attention gradient norms; the report's ratios are theirs. */
static void test_timescales_log(void **state) {
  bwt_run_config c = tiny_run(20, 8);
  c.train.log_every = 5, c.train.eval_seqs = 8, c.train.ckpt_every = 0;
  const char *dir = test_tmpdir("timescales_run");
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  bwt_timescales t;
  assert_int_equal(bwt_timescales_read(dir, 20, &t), BWT_STATUS_OK);
  assert_int_equal(t.L, 2);
  assert_int_equal(t.n, 4);
  for (int i = 0; i < 4; i++) assert_int_equal(t.step[i], 5 * (i + 1));
  for (size_t i = 0; i < 4 * 2 * BWT_TS_PARTS; i++) assert_true(t.grad[i] > 0 && t.update[i] > 0);
  /* No logged step falls in the first 10% (2 steps): the early phase is the first logged step. */
  for (int l = 0; l < 2; l++) {
    const double *g = t.grad + (size_t)l * BWT_TS_PARTS;
    assert_float_equal(t.qv_early[l], g[BWT_TS_Q] / g[BWT_TS_V], 1e-15);
    print_message("  block %d: |grad W_Q| / |grad W_V| early %.4f, over the run %.4f\n", l, t.qv_early[l], t.qv_all[l]);
  }
  bwt_timescales_free(&t);
  assert_int_equal(bwt_timescales_read(test_tmpdir("timescales_none"), 20, &t), BWT_STATUS_IO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hand_example),
      cmocka_unit_test(test_verify_random_models),
      cmocka_unit_test(test_perturbed_backward_is_caught),
      cmocka_unit_test(test_timescales_log),
      cmocka_unit_test(test_lr_v_mult_moves_only_values),
      cmocka_unit_test(test_silhouette),
      cmocka_unit_test(test_detector_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
