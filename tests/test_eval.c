/* Metrics against hand-computed values. */
#include <math.h>
#include <string.h>

#include "bwt/eval.h"
#include "testutil.h"

enum { K = 4, NSUP = 2, B = 2 };

typedef struct {
  bwt_task task;
  bwt_batch batch;
  int32_t tokens[B], sup_pos[B * NSUP], target[B * NSUP];
  double q[B * NSUP * K];
} fixture;

/* Row 0 of each sequence: q uniform over classes 2,3; row 1: a point mass on class 3. */
static void setup_fixture(fixture *f) {
  memset(f, 0, sizeof *f);
  f->task.n_sup = NSUP;
  f->task.n_classes = K;
  f->task.answer_lo = 2;
  f->task.answer_hi = 4;
  for (int b = 0; b < B; b++) {
    double *q0 = f->q + (b * NSUP) * K, *q1 = q0 + K;
    q0[2] = q0[3] = 0.5;
    q1[3] = 1.0;
    f->target[b * NSUP] = 2;
    f->target[b * NSUP + 1] = 3;
    f->sup_pos[b * NSUP] = 0;
    f->sup_pos[b * NSUP + 1] = 1;
  }
  f->batch = (bwt_batch){B, 2, NSUP, K, 0, f->tokens, NULL, f->sup_pos, f->target, f->q};
}

static bwt_eval_result evaluate(fixture *f, const float *logits) {
  bwt_eval_acc *acc = NULL;
  bwt_eval_result r;
  assert_int_equal(bwt_eval_acc_create(&acc, &f->task), BWT_STATUS_OK);
  bwt_eval_add(acc, logits, &f->batch);
  assert_int_equal(bwt_eval_finish(acc, &r), BWT_STATUS_OK);
  bwt_eval_acc_free(acc);
  return r;
}

/* Uniform logits: H(p) = 2 bits everywhere; H(q) = 1 and 0; KL = log2 4 − H(q). */
static void test_uniform_model(void **state) {
  fixture f;
  setup_fixture(&f);
  float logits[B * NSUP * K] = {0};
  bwt_eval_result r = evaluate(&f, logits);
  assert_float_equal(r.overall.entropy_mae, (1.0 + 2.0) / 2, 1e-12);
  assert_float_equal(r.pos[0].entropy_mae, 1.0, 1e-12);
  assert_float_equal(r.pos[1].entropy_mae, 2.0, 1e-12);
  /* Renormalised over classes 2,3: uniform over two = 1 bit; |1−1| and |1−0|. */
  assert_float_equal(r.overall.entropy_mae_renorm, 0.5, 1e-12);
  assert_float_equal(r.overall.kl_bits, (1.0 + 2.0) / 2, 1e-12);
  /* TV: row 0 ½(¼+¼+¼+¼) = ½; row 1 ½(¼·3 + ¾) = ¾. */
  assert_float_equal(r.overall.tv, (0.5 + 0.75) / 2, 1e-12);
  assert_float_equal(r.overall.ce_bits, 2.0, 1e-12);
  assert_float_equal(r.overall.bayes_entropy, 0.5, 1e-12);
  assert_float_equal(r.overall.excess_ce_bits, 1.5, 1e-12);
  assert_int_equal(r.overall.n_point_mass, 2);
  assert_float_equal(r.entropy_mae_curves, 1.5, 1e-12);
  bwt_eval_result_free(&r);
}

/* A model that is exactly Bayes (up to float logits of −60 for impossible classes): every error
 * measure is ~0 and the point-mass rows are right. */
static void test_bayes_model(void **state) {
  fixture f;
  setup_fixture(&f);
  float logits[B * NSUP * K];
  for (int i = 0; i < B * NSUP * K; i++) logits[i] = f.q[i] > 0 ? (float)log(f.q[i]) : -60.0f;
  bwt_eval_result r = evaluate(&f, logits);
  assert_true(r.overall.entropy_mae < 1e-9); /* e^-60 leaks ~1e-25 mass: far below this */
  assert_true(r.overall.kl_bits < 1e-12);
  assert_true(r.overall.tv < 1e-12);
  assert_float_equal(r.overall.accuracy, 1.0, 0);
  bwt_eval_result_free(&r);
}

/* Hand-computed KL for p = (0.1, 0.2, 0.3, 0.4) against q = (0, 0, ½, ½). */
static void test_kl_value(void **state) {
  fixture f;
  setup_fixture(&f);
  float logits[B * NSUP * K];
  const double p[K] = {0.1, 0.2, 0.3, 0.4};
  for (int r = 0; r < B * NSUP; r++)
    for (int k = 0; k < K; k++) logits[r * K + k] = (float)log(p[k]);
  bwt_eval_result r = evaluate(&f, logits);
  double kl0 = 0.5 * log2(0.5 / 0.3) + 0.5 * log2(0.5 / 0.4), kl1 = log2(1 / 0.4);
  assert_float_equal(r.pos[0].kl_bits, kl0, 1e-6);
  assert_float_equal(r.pos[1].kl_bits, kl1, 1e-6);
  assert_float_equal(r.overall.accuracy, 1.0, 0); /* argmax p = class 3 = the point mass */
  bwt_eval_result_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uniform_model),
      cmocka_unit_test(test_bayes_model),
      cmocka_unit_test(test_kl_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
