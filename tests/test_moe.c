/* The mixture-of-experts MLP (docs/moe.md): known answers, the balance loss by hand, learning,
 * determinism, checkpoints and the config's checks. Its whole-model gradients are checked against
 * finite differences in test_models.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/capture.h"
#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/kernels.h"
#include "bwt/train.h"
#include "testutil.h"

/* A V=6 bijection run: d 32, 2 layers, 2 heads, E experts of which k are chosen. */
static bwt_run_config moe_config(int E, int k, int steps) {
  bwt_run_config c = test_bijection_config(6, 32, 2, 2);
  c.model.experts = E, c.model.expert_top_k = k;
  c.train.steps = steps, c.train.batch = 32, c.train.warmup = 30, c.train.lr = 3e-3;
  c.train.eval_seqs = 64, c.train.ckpt_every = 0, c.train.log_every = 50, c.train.threads = 2;
  return c;
}

static bwt_batch sample(const bwt_run_config *c, bwt_task **task, int B) {
  bwt_batch b;
  assert_int_equal(bwt_task_create(task, &c->task), BWT_STATUS_OK);
  assert_int_equal(bwt_batch_alloc(&b, *task, B), BWT_STATUS_OK);
  assert_int_equal(bwt_task_sample(*task, 5, &b), BWT_STATUS_OK);
  return b;
}

/* Copies every tensor of dense into moe by name; the MLP's fc1/fc2 into each expert, fc2 times
 * scale2 (exact: a power of two); the router zero. */
static void copy_dense(bwt_model *moe, const bwt_model *dense, float scale2) {
  for (int i = 0; i < dense->n_tensors; i++) {
    const bwt_tensor_desc *d = &dense->tensors[i];
    const float *src = dense->params + d->offset;
    int l;
    char part[32];
    if (sscanf(d->name, "blocks.%d.mlp.%31s", &l, part) == 2 && strncmp(part, "fc", 2) == 0) {
      for (int e = 0; e < moe->cfg.experts; e++) {
        char name[2 * BWT_TENSOR_NAME_MAX + 32];
        snprintf(name, sizeof name, "blocks.%d.mlp.experts.%d.%s", l, e, part);
        const bwt_tensor_desc *t = bwt_model_find_tensor(moe, name);
        assert_non_null(t);
        assert_int_equal(t->size, d->size);
        float *dst = moe->params + t->offset;
        for (size_t j = 0; j < d->size; j++) dst[j] = src[j] * (part[2] == '2' ? scale2 : 1.0f);
      }
      continue;
    }
    const bwt_tensor_desc *t = bwt_model_find_tensor(moe, d->name);
    assert_non_null(t);
    memcpy(moe->params + t->offset, src, sizeof(float) * d->size);
  }
  for (int l = 0; l < moe->cfg.n_layers; l++) {
    const bwt_tensor_desc *r = bwt_model_tensor(moe, BWT_ROLE_MLP_ROUTER, l, 0);
    bwt_zero(moe->params + r->offset, r->size);
  }
}

/* Identical experts behind a zero router are the dense MLP: with top-1 every row takes expert 0
 * (ties go to the lower index) with gate softmax(0)_0 = 1/E, so fc2 scaled by E gives the dense
 * logits bit for bit; with top-2 the two gates are 1/2 each and sum to the dense branch (to
 * rounding: x + y/2 + y/2 is not always x + y in floats). The balance loss of a
 * uniform router with every row on one expert is weight·E·(1·1/E) = weight. */
static void test_identical_experts_are_dense(void **state) {
  (void)state;
  bwt_run_config c = moe_config(0, 1, 1);
  bwt_task *task;
  bwt_batch b = sample(&c, &task, 8);
  bwt_model *dense = NULL;
  assert_int_equal(bwt_model_create(&dense, &c.model, 3), BWT_STATUS_OK);
  test_fill_uniform(dense->params, dense->n_params, -0.3f, 0.3f, 4);
  const float *ld = NULL;
  assert_int_equal(bwt_model_forward(dense, &b, &ld), BWT_STATUS_OK);
  int MK = b.B * b.n_sup * task->n_classes;
  float *want = malloc(sizeof(float) * MK);
  memcpy(want, ld, sizeof(float) * MK);
  for (int k = 1; k <= 2; k++) {
    c.model.experts = 4, c.model.expert_top_k = k, c.model.expert_hidden = 4 * 32, c.model.moe_aux = 0.25;
    bwt_model *moe = NULL;
    assert_int_equal(bwt_model_create(&moe, &c.model, 3), BWT_STATUS_OK);
    copy_dense(moe, dense, k == 1 ? 4.0f : 1.0f);
    const float *lm = NULL;
    assert_int_equal(bwt_model_forward(moe, &b, &lm), BWT_STATUS_OK);
    double err = test_max_rel_err(lm, want, MK, 1e-3);
    print_message("  4 identical experts, top-%d: logits against the dense MLP's, max relative difference %.2e; balance loss %.6f\n",
                  k, err, bwt_model_aux_loss(moe));
    assert_true(err < (k == 1 ? 1e-6 : 1e-4)); /* measured 0 and 3.1e-5 */
    assert_float_equal(bwt_model_aux_loss(moe), 2 * 0.25, 1e-6); /* 0.25 per block, two blocks */
    bwt_model_free(moe);
  }
  free(want);
  bwt_model_free(dense);
  bwt_batch_free(&b);
  bwt_task_free(task);
}

/* Routing on a constructed router, by hand: choices, gates, the balance loss and its gradient. */
static void test_routing_by_hand(void **state) {
  (void)state;
  enum { N = 4, E = 3 };
  const float logits[N * E] = {2, 0, 1, /* */ 0, 0, 0, /* */ -1, 3, 3, /* */ 0.5f, 0.25f, 1};
  float probs[N * E], gate[N * 2], coef[E];
  int32_t expert[N * 2];
  /* top-1: the largest logit, ties to the lower index; the gate is softmax(r) there. */
  bwt_moe_route_forward(probs, expert, gate, logits, N, E, 1);
  const int32_t first[N] = {0, 0, 1, 2};
  for (int n = 0; n < N; n++) {
    assert_int_equal(expert[n], first[n]);
    double z = 0;
    for (int e = 0; e < E; e++) z += exp(logits[n * E + e]);
    assert_float_equal(gate[n], exp(logits[n * E + first[n]]) / z, 1e-6);
  }
  /* The balance loss: f = (2, 1, 1)/4, P_e the column means of softmax; aux = w·E·Σ f_e P_e. */
  double w = 0.1, P[E] = {0}, f[E] = {0.5, 0.25, 0.25}, want = 0;
  for (int n = 0; n < N; n++)
    for (int e = 0; e < E; e++) P[e] += probs[n * E + e] / N;
  for (int e = 0; e < E; e++) want += f[e] * P[e];
  want *= w * E;
  double got = bwt_moe_balance_loss(coef, probs, expert, w, N, E, 1);
  print_message("  balance loss %.8f, by hand %.8f\n", got, want);
  assert_float_equal(got, want, 1e-7);
  for (int e = 0; e < E; e++) assert_float_equal(coef[e], w * E * f[e] / N, 1e-7);
  /* Its gradient through the softmax against central differences of the loss in the logits
   * (f held: no choice moves for a step of 1e-3). */
  float dlogits[N * E] = {0}, zero_dgate[N] = {0};
  bwt_moe_route_backward(dlogits, zero_dgate, coef, probs, expert, gate, N, E, 1);
  for (int i = 0; i < N * E; i++) {
    float lp[N * E], p2[N * E], g2[N];
    int32_t x2[N];
    double side[2];
    for (int s = 0; s < 2; s++) {
      memcpy(lp, logits, sizeof lp);
      lp[i] += s ? -1e-3f : 1e-3f;
      bwt_moe_route_forward(p2, x2, g2, lp, N, E, 1);
      double l = 0;
      for (int n = 0; n < N; n++)
        for (int e = 0; e < E; e++) l += w * E * f[e] * p2[n * E + e] / N;
      side[s] = l;
    }
    assert_float_equal(dlogits[i], (side[0] - side[1]) / 2e-3, 2e-4);
  }
  /* top-2: the two largest in order, gates the softmax over those two. */
  bwt_moe_route_forward(probs, expert, gate, logits, N, E, 2);
  const int32_t pairs[N * 2] = {0, 2, 0, 1, 1, 2, 2, 0};
  for (int i = 0; i < N * 2; i++) assert_int_equal(expert[i], pairs[i]);
  assert_float_equal(gate[0], 1 / (1 + exp(-1.0)), 1e-6);
  assert_float_equal(gate[2], 0.5, 1e-7);
  assert_float_equal(gate[6] + gate[7], 1.0, 1e-7);
}

/* The model's balance loss is the formula on its router's captured probabilities and choices: a
 * one-block model, whose block runs on the supervised rows only, the rows the capture shows. */
static void test_balance_loss_of_model(void **state) {
  (void)state;
  bwt_run_config c = moe_config(4, 1, 1);
  c.model.n_layers = 1, c.model.moe_aux = 0.3;
  bwt_task *task;
  bwt_batch b = sample(&c, &task, 16);
  bwt_model *m = NULL;
  assert_int_equal(bwt_model_create(&m, &c.model, 9), BWT_STATUS_OK);
  test_fill_uniform(m->params, m->n_params, -0.5f, 0.5f, 2);
  bwt_capture cap;
  assert_int_equal(bwt_model_capture(m, &b, NULL, BWT_CAPTURE_ROUTER_PROBS | BWT_CAPTURE_EXPERT, &cap, NULL), BWT_STATUS_OK);
  int M = b.B * b.n_sup, E = 4;
  assert_int_equal(cap.E, E);
  assert_int_equal(cap.top_k, 1);
  double f[4] = {0}, P[4] = {0}, want = 0;
  for (int r = 0; r < M; r++) {
    int e = (int)cap.expert[r], best = 0;
    for (int j = 1; j < E; j++)
      if (cap.router_probs[r * E + j] > cap.router_probs[r * E + best]) best = j;
    assert_int_equal(e, best); /* the first choice is the most probable expert */
    f[e] += 1.0 / M;
    for (int j = 0; j < E; j++) P[j] += cap.router_probs[r * E + j] / M;
  }
  for (int e = 0; e < E; e++) want += 0.3 * E * f[e] * P[e];
  print_message("  one block, %d rows: balance loss %.8f, from the captured router %.8f\n", M, bwt_model_aux_loss(m), want);
  assert_float_equal(bwt_model_aux_loss(m), want, 1e-6);
  bwt_capture_free(&cap);
  /* A dense model has neither the points nor an auxiliary loss. */
  c.model.experts = 0;
  bwt_model *d = NULL;
  assert_int_equal(bwt_model_create(&d, &c.model, 9), BWT_STATUS_OK);
  assert_int_equal(bwt_model_capture(d, &b, NULL, BWT_CAPTURE_EXPERT, &cap, NULL), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "no 'expert' capture point"));
  bwt_capture_free(&cap);
  const float *logits;
  assert_int_equal(bwt_model_forward(d, &b, &logits), BWT_STATUS_OK);
  assert_true(bwt_model_aux_loss(d) == 0);
  bwt_model_free(d);
  bwt_model_free(m);
  bwt_batch_free(&b);
  bwt_task_free(task);
}

static double train_and_eval(bwt_run_config *c, const char *name) {
  bwt_trainer *tr = NULL;
  bwt_eval_result r;
  assert_int_equal(bwt_trainer_create(&tr, c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, test_tmpdir(name), NULL, NULL), BWT_STATUS_OK);
  assert_int_equal(bwt_evaluate(tr->model, tr->task, 99, 512, 128, &r), BWT_STATUS_OK);
  double mae = r.overall.entropy_mae;
  print_message("  %s: entropy MAE %.4f bits, KL %.4f bits\n", name, mae, r.overall.kl_bits);
  bwt_eval_result_free(&r);
  bwt_trainer_free(tr);
  return mae;
}

/* The V=6 bijection learns with 4 experts, top-1 and top-2, in 600 steps: far below the
 * context-free plateau of 0.687 bits (test_train.c). */
static void test_long_moe_learns_bijection(void **state) {
  (void)state;
  bwt_run_config c = moe_config(4, 1, 600);
  double mae1 = train_and_eval(&c, "moe_top1");
  c = moe_config(4, 2, 600);
  double mae2 = train_and_eval(&c, "moe_top2");
  assert_true(mae1 < 0.2); /* measured 0.107 */
  assert_true(mae2 < 0.2); /* measured 0.109 */
}

/* noinline: gcc 12 otherwise mistakes the returned heap pointer for one to a local. */
__attribute__((noinline)) static char *read_all(const char *path, size_t *n) {
  char *data = NULL;
  assert_int_equal(bwt_read_file(path, &data, n), BWT_STATUS_OK);
  return data;
}

/* Two runs with the same seed and threads write identical checkpoints; the checkpoint loads back
 * (its config.json and tensor names) into the same model and logits. */
static void test_moe_determinism_and_checkpoint(void **state) {
  (void)state;
  bwt_run_config c = moe_config(3, 2, 30);
  c.model.expert_hidden = 24, c.model.moe_aux = 0.05;
  char dir[2][1024], path[2][1100];
  for (int i = 0; i < 2; i++) {
    snprintf(dir[i], sizeof dir[i], "%s", test_tmpdir(i ? "moe_det_b" : "moe_det_a"));
    bwt_trainer *tr = NULL;
    assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
    assert_int_equal(bwt_train_run(tr, dir[i], NULL, NULL), BWT_STATUS_OK);
    bwt_trainer_free(tr);
    snprintf(path[i], sizeof path[i], "%s/checkpoint.safetensors", dir[i]);
  }
  size_t na, nb;
  char *a = read_all(path[0], &na), *b = read_all(path[1], &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, na);
  free(a);
  free(b);
  bwt_run_config back;
  bwt_model *m = NULL;
  int step = 0;
  assert_int_equal(bwt_checkpoint_load(path[0], &back, &m, NULL, NULL, &step), BWT_STATUS_OK);
  assert_int_equal(step, 30);
  assert_int_equal(back.model.experts, 3);
  assert_int_equal(back.model.expert_top_k, 2);
  assert_int_equal(back.model.expert_hidden, 24);
  assert_float_equal(back.model.moe_aux, 0.05, 1e-15);
  assert_non_null(bwt_model_find_tensor(m, "blocks.1.mlp.experts.2.fc2.bias"));
  assert_int_equal(bwt_model_find_tensor(m, "blocks.0.mlp.experts.0.fc1.weight")->shape[0], 24);
  bwt_model_free(m);
  /* A config.json written before the experts existed loads as a dense model. */
  char *json = bwt_run_config_to_json(&c);
  assert_non_null(json);
  cJSON *root = cJSON_Parse(json), *model = cJSON_GetObjectItem(root, "model");
  const char *keys[] = {"experts", "expert_top_k", "expert_hidden", "moe_aux"};
  for (int i = 0; i < 4; i++) {
    assert_non_null(cJSON_GetObjectItem(model, keys[i]));
    cJSON_DeleteItemFromObject(model, keys[i]);
  }
  free(json);
  json = cJSON_Print(root);
  cJSON_Delete(root);
  assert_int_equal(bwt_run_config_from_json(&back, json, "old config"), BWT_STATUS_OK);
  assert_int_equal(back.model.experts, 0);
  assert_int_equal(back.model.expert_top_k, 1);
  free(json);
}

/* The config's checks: one clear line each. */
static void test_moe_config_errors(void **state) {
  (void)state;
  const struct {
    bwt_arch arch;
    int E, k, hidden;
    double aux;
    const char *message;
  } bad[] = {
      {BWT_ARCH_LSTM, 4, 1, 0, 0.01, "experts need --arch transformer (lstm has no MLP of experts)"},
      {BWT_ARCH_TRANSFORMER, 1, 1, 0, 0.01, "experts must be 0 (the dense MLP) or in 2..64 (got 1)"},
      {BWT_ARCH_TRANSFORMER, 65, 1, 0, 0.01, "experts must be 0 (the dense MLP) or in 2..64 (got 65)"},
      {BWT_ARCH_TRANSFORMER, 4, 3, 0, 0.01, "expert-top-k must be 1 or 2, at most experts (got 3 of 4)"},
      {BWT_ARCH_TRANSFORMER, 4, 0, 0, 0.01, "expert-top-k must be 1 or 2"},
      {BWT_ARCH_TRANSFORMER, 4, 1, -1, 0.01, "expert-hidden must be in 0..2^20"},
      {BWT_ARCH_TRANSFORMER, 4, 1, 0, -0.5, "moe-aux must be in [0, 1000] (got -0.5)"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    bwt_run_config c = moe_config(bad[i].E, bad[i].k, 1);
    c.model.arch = bad[i].arch, c.model.expert_hidden = bad[i].hidden, c.model.moe_aux = bad[i].aux;
    if (bad[i].arch == BWT_ARCH_LSTM) c.model.norm = BWT_NORM_LAYER;
    assert_int_equal(bwt_run_config_check(&c), BWT_STATUS_ARG);
    if (!strstr(bwt_last_error(), bad[i].message)) fail_msg("got '%s', want '%s'", bwt_last_error(), bad[i].message);
    assert_null(strchr(bwt_last_error(), '\n'));
  }
  bwt_run_config ok = moe_config(2, 2, 1); /* top-k equal to the experts */
  assert_int_equal(bwt_run_config_check(&ok), BWT_STATUS_OK);
  ok.model.experts = 0, ok.model.expert_top_k = 7; /* ignored without experts */
  assert_int_equal(bwt_run_config_check(&ok), BWT_STATUS_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identical_experts_are_dense),
      cmocka_unit_test(test_routing_by_hand),
      cmocka_unit_test(test_balance_loss_of_model),
      cmocka_unit_test(test_moe_config_errors),
      cmocka_unit_test(test_moe_determinism_and_checkpoint),
      cmocka_unit_test(test_long_moe_learns_bijection),
  };
  test_filters_from_env();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
