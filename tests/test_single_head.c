/* The single-head model of Paper II: its gradient against finite differences, and the falsification
 * modes changing only what they claim to. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/single_head.h"
#include "testutil.h"

static double *weight(bwt_single_head *m, int i) { return (double *)m + i; }
enum { N_WEIGHTS = sizeof(bwt_single_head) / sizeof(double) };

/* Central differences (step 1e-5) on every weight, relative error with a floor of 1e-6. */
static double fd_check(bwt_routing mode, int T, int first, int last) {
  bwt_sh_data *d;
  assert_int_equal(bwt_sh_data_create(&d, T, 3), BWT_STATUS_OK);
  bwt_single_head m, g;
  bwt_single_head_init(&m, 9);
  for (int i = 0; i < N_WEIGHTS; i++) *weight(&m, i) *= 5; /* sharper attention than at init */
  bwt_single_head_loss(&m, d, mode, &g);
  double worst = 0;
  for (int i = first; i < last; i++) {
    double *w = weight(&m, i), keep = *w, h = 1e-5;
    *w = keep + h;
    double up = bwt_single_head_loss(&m, d, mode, NULL);
    *w = keep - h;
    double down = bwt_single_head_loss(&m, d, mode, NULL);
    *w = keep;
    double fd = (up - down) / (2 * h), an = *weight(&g, i);
    worst = fmax(worst, fabs(fd - an) / fmax(fabs(fd), 1e-6));
  }
  bwt_sh_data_free(d);
  return worst;
}

static void test_gradient_matches_finite_differences(void **state) {
  double e = fd_check(BWT_ROUTING_GRADIENT, 40, 0, N_WEIGHTS);
  print_message("  full gradient: worst relative error %.2e over %d weights\n", e, N_WEIGHTS);
  assert_true(e < 1e-5);
  int wv = 2 * SH_IN * SH_QK; /* W_V and W_O follow W_Q, W_K */
  e = fd_check(BWT_ROUTING_UNIFORM, 40, wv, N_WEIGHTS);
  print_message("  uniform attention (W_V, W_O): worst relative error %.2e\n", e);
  assert_true(e < 1e-5);
}

/* Every mode has the same value and output gradients as the true gradient at the same weights
 * (frozen, no-baseline) or none on the routing (frozen, uniform); no-baseline changes only W_Q, W_K. */
static void test_modes_change_only_what_they_claim(void **state) {
  bwt_sh_data *d;
  assert_int_equal(bwt_sh_data_create(&d, 60, 4), BWT_STATUS_OK);
  bwt_single_head m, g[4];
  bwt_single_head_init(&m, 5);
  for (int mode = 0; mode < 4; mode++) bwt_single_head_loss(&m, d, (bwt_routing)mode, &g[mode]);
  size_t qk = sizeof g[0].wq, rest = sizeof(bwt_single_head) - 2 * qk;
  for (int mode = BWT_ROUTING_FROZEN; mode <= BWT_ROUTING_NO_BASELINE; mode++)
    assert_memory_equal(g[0].wv, g[mode].wv, rest); /* W_V and W_O, contiguous */
  double zero[SH_IN * SH_QK] = {0};
  assert_memory_equal(g[BWT_ROUTING_FROZEN].wq, zero, qk);
  assert_memory_equal(g[BWT_ROUTING_UNIFORM].wk, zero, qk);
  assert_true(memcmp(g[0].wq, g[BWT_ROUTING_NO_BASELINE].wq, qk) != 0);
  /* Training: frozen routing never moves W_Q, W_K. */
  bwt_single_head trained = m;
  double loss[11];
  assert_int_equal(bwt_single_head_train(&trained, d, BWT_ROUTING_FROZEN, 10, 0.05, 0.5, loss), BWT_STATUS_OK);
  assert_memory_equal(trained.wq, m.wq, qk);
  assert_memory_equal(trained.wk, m.wk, qk);
  assert_true(loss[10] < loss[0]);
  print_message("  Bayes CE %.4f nats on 60 positions; loss %.4f -> %.4f in 10 frozen steps\n", bwt_sh_data_bayes_ce(d),
                loss[0], loss[10]);
  bwt_sh_report r;
  assert_int_equal(bwt_single_head_report(&trained, d, BWT_ROUTING_FROZEN, &r), BWT_STATUS_OK);
  assert_true(r.entropy_mae_bits >= 0 && r.kl_bits >= 0 && r.pc1 > 0 && r.pc1 <= 1);
  bwt_routing parsed;
  assert_int_equal(bwt_routing_parse("no-baseline", &parsed), BWT_STATUS_OK);
  assert_int_equal(parsed, BWT_ROUTING_NO_BASELINE);
  assert_int_equal(bwt_routing_parse("none", &parsed), BWT_STATUS_ARG);
  bwt_sh_data *none;
  assert_int_equal(bwt_sh_data_create(&none, 1, 4), BWT_STATUS_ARG);
  assert_null(none);
  bwt_sh_data_free(d);
}

/* Both arms start from the same weights on the same sequence; the summary follows SPEC.md §6's
 * definitions, recomputed here from the curves. */
static void test_em_vs_sgd_summary(void **state) {
  const uint64_t seeds[3] = {42, 2024, 1337};
  bwt_em_config c = {80, 40, 0.01, 0.1, BWT_ROUTING_GRADIENT, 3, seeds};
  bwt_em_result r;
  assert_int_equal(bwt_em_vs_sgd(&c, &r, NULL, NULL), BWT_STATUS_OK);
  int len = c.steps + 1;
  double mean_final = 0, cross = 0, d[3];
  for (int i = 0; i < 3; i++) {
    assert_true(r.sgd[i * len] == r.em[i * len]);
    mean_final += r.sgd[i * len + c.steps] / 3;
    d[i] = r.sgd[i * len + c.steps] - r.em[i * len + c.steps];
  }
  assert_float_equal(r.sgd_mean_final, mean_final, 1e-15);
  for (int i = 0; i < 3; i++) {
    int t = 0;
    while (t < len && !(r.em[i * len + t] < mean_final)) t++;
    assert_int_equal(r.em_cross[i], t < len ? t : -1);
    cross += t;
  }
  if (r.em_cross[0] > 0 && r.em_cross[1] > 0 && r.em_cross[2] > 0) assert_float_equal(r.speedup, c.steps / (cross / 3), 1e-12);
  int extreme = 0; /* the 8 sign flips of three differences */
  for (int m = 0; m < 8; m++) {
    double sum = 0;
    for (int i = 0; i < 3; i++) sum += m >> i & 1 ? -d[i] : d[i];
    extreme += fabs(sum) >= fabs(d[0] + d[1] + d[2]) * (1 - 1e-12);
  }
  assert_float_equal(r.p_exact, extreme / 8.0, 1e-15);
  print_message("  T=80, 40 steps: speed-up %.2f, paired t %.2f, sign-flip p %.3f\n", r.speedup, r.t_stat, r.p_exact);
  assert_true(r.floor_nats > 1.829 && r.floor_nats < 1.8292);
  bwt_em_result_free(&r);
  const bwt_routing modes[2] = {BWT_ROUTING_GRADIENT, BWT_ROUTING_UNIFORM};
  bwt_falsify_result f;
  c.n_seeds = 1;
  assert_int_equal(bwt_falsify(&c, modes, 2, &f, NULL, NULL), BWT_STATUS_OK);
  assert_true(f.loss[0] != f.loss[len]); /* uniform attention is another model from the first step */
  bwt_falsify_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradient_matches_finite_differences),
      cmocka_unit_test(test_modes_change_only_what_they_claim),
      cmocka_unit_test(test_em_vs_sgd_summary),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
