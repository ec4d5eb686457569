/* Training: schedule, determinism, bit-exact resume, and end-to-end learning of a small bijection. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/checkpoint.h"
#include "bwt/fileio.h"
#include "bwt/train.h"
#include "testutil.h"

static bwt_run_config small_config(bwt_arch arch, int V, int steps) {
  bwt_run_config c;
  memset(&c, 0, sizeof c);
  assert_int_equal(bwt_task_config_default(&c.task, "bijection"), BWT_STATUS_OK);
  c.task.V = V;
  c.task.L = V - 1;
  bwt_train_config_default(&c.train);
  c.train.steps = steps;
  c.train.batch = 16;
  c.train.warmup = 2;
  c.train.lr = 3e-3;
  c.train.eval_seqs = 64;
  c.train.ckpt_every = 0;
  c.train.log_every = 5;
  c.train.threads = 2;
  bwt_task *task = NULL;
  assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
  bwt_model_config_default(&c.model, arch, task);
  c.model.d_model = 16;
  c.model.n_heads = 2;
  bwt_task_free(task);
  return c;
}

static void test_schedule(void **state) {
  bwt_train_config c;
  bwt_train_config_default(&c);
  c.lr = 1e-3, c.warmup = 10, c.steps = 110, c.min_lr_frac = 0.1;
  assert_float_equal(bwt_lr_at(&c, 1), 1e-4, 1e-15);
  assert_float_equal(bwt_lr_at(&c, 10), 1e-3, 1e-15);
  assert_float_equal(bwt_lr_at(&c, 60), 0.55e-3, 1e-12); /* halfway down the cosine */
  assert_float_equal(bwt_lr_at(&c, 110), 1e-4, 1e-12);
}

/* noinline: gcc 12 otherwise mistakes the returned heap pointer for one to the local `data`. */
__attribute__((noinline)) static char *read_all(const char *path, size_t *n) {
  char *data = NULL;
  bwt_status s = bwt_read_file(path, &data, n);
  assert_int_equal(s, BWT_STATUS_OK);
  return data;
}

static void assert_same_file(const char *a, const char *b) {
  size_t na, nb;
  char *da = read_all(a, &na), *db = read_all(b, &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(da, db, na);
  free(da);
  free(db);
}

static void run_to(const bwt_run_config *c, const char *dir, int stop_after) {
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, c), BWT_STATUS_OK);
  tr->stop_after = stop_after;
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
}

/* Same seed and threads: the checkpoints are identical byte for byte. A stop at step 7 and a
 * resume reach the same bytes as the uninterrupted run. */
static void test_determinism_and_resume(void **state) {
  bwt_run_config c = small_config(BWT_ARCH_TRANSFORMER, 5, 16);
  char a[1024], b[1024], r[1024], pa[1100], pb[1100], pr[1100];
  snprintf(a, sizeof a, "%s", test_tmpdir("det_a"));
  snprintf(b, sizeof b, "%s", test_tmpdir("det_b"));
  snprintf(r, sizeof r, "%s", test_tmpdir("det_resume"));
  run_to(&c, a, 0);
  run_to(&c, b, 0);
  snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
  snprintf(pb, sizeof pb, "%s/checkpoint.safetensors", b);
  snprintf(pr, sizeof pr, "%s/checkpoint.safetensors", r);
  assert_same_file(pa, pb);

  run_to(&c, r, 7);
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_resume(&tr, r), BWT_STATUS_OK);
  assert_int_equal(tr->step, 7);
  assert_int_equal(bwt_train_run(tr, r, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  assert_same_file(pa, pr);

  /* The resumed run's metrics log has each logged step once. */
  char log_path[1100];
  snprintf(log_path, sizeof log_path, "%s/metrics.jsonl", r);
  size_t n;
  char *text = read_all(log_path, &n);
  const char *first = strstr(text, "{\"step\":5,");
  assert_non_null(first);
  assert_null(strstr(first + 1, "{\"step\":5,"));
  free(text);

  /* A finished run directory refuses a fresh start. */
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, a, NULL, NULL), BWT_STATUS_ARG);
  bwt_trainer_free(tr);
}

static double train_and_eval(bwt_run_config *c, const char *name, bwt_eval_result *r) {
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, test_tmpdir(name), NULL, NULL), BWT_STATUS_OK);
  assert_int_equal(bwt_evaluate(tr->model, tr->task, 99, 512, 128, r), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  return r->overall.entropy_mae;
}

/* V=6, L=5: the transformer learns elimination; the context-free MLP sits at its analytic plateau
 * log2 6 − (1/5)Σ_{t<5} log2(6−t) = 0.68696 bits. */
static void test_end_to_end_small_bijection(void **state) {
  bwt_run_config c = small_config(BWT_ARCH_TRANSFORMER, 6, 4000);
  c.model.d_model = 32;
  c.train.batch = 32;
  c.train.warmup = 30;
  bwt_eval_result r;
  double mae = train_and_eval(&c, "e2e_transformer", &r);
  print_message("  transformer V=6: entropy MAE %.4f bits, KL %.4f bits\n", mae, r.overall.kl_bits);
  assert_true(mae < 0.06); /* measured 0.031 */
  assert_true(r.overall.kl_bits < 0.03); /* measured 0.009 */
  bwt_eval_result_free(&r);

  bwt_run_config m = small_config(BWT_ARCH_MLP, 6, 1000);
  m.model.n_layers = 2;
  double plateau = log2(6.0) - (log2(6) + log2(5) + log2(4) + log2(3) + log2(2)) / 5;
  double mmae = train_and_eval(&m, "e2e_mlp", &r);
  print_message("  context-free MLP V=6: entropy MAE %.4f bits (plateau %.5f)\n", mmae, plateau);
  assert_true(fabs(mmae - plateau) < 0.02); /* measured 0.005 above */
  bwt_eval_result_free(&r);
}

/* A run config for the named task with a small transformer. */
static bwt_run_config task_config(const char *task_name, bwt_task_config *tc, int d_model, int steps) {
  bwt_run_config c = small_config(BWT_ARCH_TRANSFORMER, 6, steps);
  c.task = *tc;
  snprintf(c.task.name, sizeof c.task.name, "%s", task_name);
  bwt_task *task = NULL;
  assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
  bwt_model_config_default(&c.model, BWT_ARCH_TRANSFORMER, task);
  c.model.d_model = d_model, c.model.n_heads = 2;
  bwt_task_free(task);
  return c;
}

/* The HMM (K=8): the transformer tracks the filtering posterior; the context-free MLP, which sees
 * only the current symbol, cannot. */
static void test_long_end_to_end_hmm(void **state) {
  bwt_task_config tc;
  assert_int_equal(bwt_task_config_default(&tc, "hmm"), BWT_STATUS_OK);
  tc.K = 8;
  bwt_run_config c = task_config("hmm", &tc, 32, 3000);
  c.train.batch = 64, c.train.lr = 1e-3, c.train.warmup = 100, c.train.soft_targets = 1;
  bwt_eval_result r;
  double mae = train_and_eval(&c, "e2e_hmm", &r);
  print_message("  transformer HMM K=8: entropy MAE %.4f bits, KL %.4f bits\n", mae, r.overall.kl_bits);
  assert_true(mae < 0.15);              /* measured 0.101 */
  assert_true(r.overall.kl_bits < 0.07); /* measured 0.044 */
  bwt_eval_result_free(&r);
  bwt_task *task = NULL;
  assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
  bwt_model_config_default(&c.model, BWT_ARCH_MLP, task);
  c.model.d_model = 32, c.model.n_layers = 2, c.train.steps = 1000;
  double mmae = train_and_eval(&c, "e2e_hmm_mlp", &r);
  print_message("  context-free MLP HMM K=8: entropy MAE %.4f bits\n", mmae);
  assert_true(mmae > 0.3); /* measured 0.415 */
  bwt_eval_result_free(&r);
  bwt_task_free(task);
}

/* The sticky chain through continuous inputs: a one-layer transformer reaches the exact
 * predictive, whose entropy sits just above the chain's floor. */
static void test_end_to_end_sticky(void **state) {
  bwt_task_config tc;
  assert_int_equal(bwt_task_config_default(&tc, "sticky"), BWT_STATUS_OK);
  tc.chain_len = 50;
  bwt_run_config c = task_config("sticky", &tc, 16, 800);
  c.model.n_layers = 1;
  c.train.soft_targets = 1;
  bwt_eval_result r;
  double mae = train_and_eval(&c, "e2e_sticky", &r);
  print_message("  transformer sticky chain: entropy MAE %.4f bits, KL %.4f bits, Bayes %.4f bits (floor %.4f)\n",
                mae, r.overall.kl_bits, r.overall.bayes_entropy, bwt_sticky_floor_bits());
  assert_true(mae < 0.03);               /* measured 0.009 */
  assert_true(r.overall.kl_bits < 0.01); /* measured 0.003 */
  assert_true(r.overall.bayes_entropy > bwt_sticky_floor_bits());
  bwt_eval_result_free(&r);
}

/* Associative recall (4 pairs of 8 keys and 8 values): the loss drops from its plateau between
 * steps 2000 and 4500 depending on the seed, after which every query is answered. The modular
 * recurrence (p = 5, length 8): the transformer learns the Bayesian mixture of program and noise. */
static void test_long_end_to_end_recall_and_modular(void **state) {
  bwt_task_config tc;
  assert_int_equal(bwt_task_config_default(&tc, "recall"), BWT_STATUS_OK);
  tc.pairs = 4, tc.queries = 2, tc.fillers = 0, tc.key_vocab = 8, tc.value_vocab = 8;
  bwt_run_config c = task_config("recall", &tc, 32, 8000);
  c.train.batch = 128, c.train.lr = 1e-3, c.train.warmup = 200;
  bwt_eval_result r;
  double mae = train_and_eval(&c, "e2e_recall", &r);
  print_message("  transformer recall: accuracy %.4f, entropy MAE %.4f bits\n", r.overall.accuracy, mae);
  assert_true(r.overall.accuracy > 0.95); /* measured 1.0 */
  assert_true(mae < 0.05);                /* measured 0.0065 */
  bwt_eval_result_free(&r);

  assert_int_equal(bwt_task_config_default(&tc, "modular"), BWT_STATUS_OK);
  tc.p = 5, tc.length = 8;
  c = task_config("modular", &tc, 32, 3000);
  c.train.batch = 64, c.train.lr = 3e-3, c.train.warmup = 100;
  mae = train_and_eval(&c, "e2e_modular", &r);
  print_message("  transformer modular p=5: entropy MAE %.4f bits, KL %.4f bits\n", mae, r.overall.kl_bits);
  assert_true(mae < 0.15);               /* measured 0.086 */
  assert_true(r.overall.kl_bits < 0.06); /* measured 0.027 */
  bwt_eval_result_free(&r);
}

/* The wind tunnels at the sizes of the Mamba and loss tests: the bijection V=6 L=5, the HMM K=8,
 * a 50-step sticky chain, modular p=5 length 8, recall of 2 pairs over 4 keys and 4 values. */
static void small_tunnel(bwt_task_config *tc, const char *task) {
  assert_int_equal(bwt_task_config_default(tc, task), BWT_STATUS_OK);
  tc->V = 6, tc->L = 5, tc->K = 8, tc->chain_len = 50, tc->p = 5, tc->length = 8;
  tc->pairs = 2, tc->queries = 2, tc->fillers = 0, tc->key_vocab = 4, tc->value_vocab = 4;
}

/* Mamba (Gu & Dao's block, d 32, 2 layers) learns every wind tunnel: the bijection, the sticky chain
 * through continuous inputs, the modular recurrence and associative recall (2 pairs of 4 keys and 4
 * values) to within a tenth of a bit, the HMM well below the context-free plateau. Recall's binding
 * is a sudden transition at this budget (one build measured 53% accuracy, this one 100%), so its
 * bounds ask only that it beats chance clearly. */
static void test_long_end_to_end_mamba(void **state) {
  static const struct {
    const char *task;
    int steps, batch, soft;
    double lr, max_mae, min_accuracy; /* min_accuracy < 0: no point-mass rows to score */
  } runs[] = {
      {"bijection", 1500, 32, 0, 3e-3, 0.08, -1},  /* measured 0.047 (V=6, L=5) */
      {"hmm", 1500, 64, 1, 3e-3, 0.25, -1},        /* measured 0.154 at 2 threads, 0.094 at 1 (K=8; context-free: 0.414) */
      {"sticky", 800, 16, 1, 3e-3, 0.02, -1},      /* measured 0.005 (50 positions) */
      {"modular", 1500, 64, 0, 3e-3, 0.12, -1},    /* measured 0.064 (p=5, length 8) */
      {"recall", 2000, 64, 0, 3e-3, 1.25, 0.40},   /* measured 0.005 bits, 100% (an earlier build: 1.01, 53%; chance 2 bits, 25%) */
  };
  for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
    bwt_task_config tc;
    small_tunnel(&tc, runs[i].task);
    bwt_run_config c = task_config(runs[i].task, &tc, 32, runs[i].steps);
    bwt_task *task = NULL;
    assert_int_equal(bwt_task_create(&task, &c.task), BWT_STATUS_OK);
    bwt_model_config_default(&c.model, BWT_ARCH_MAMBA, task);
    bwt_task_free(task);
    c.model.d_model = 32, c.model.n_layers = 2;
    c.train.batch = runs[i].batch, c.train.lr = runs[i].lr, c.train.warmup = runs[i].steps / 15;
    c.train.soft_targets = runs[i].soft;
    char name[64];
    snprintf(name, sizeof name, "e2e_mamba_%s", runs[i].task);
    bwt_eval_result r;
    double mae = train_and_eval(&c, name, &r);
    print_message("  mamba %s: entropy MAE %.4f bits, KL %.4f bits, accuracy %.3f\n", runs[i].task, mae, r.overall.kl_bits,
                  r.overall.n_point_mass ? r.overall.accuracy : NAN);
    assert_true(mae < runs[i].max_mae);
    if (runs[i].min_accuracy >= 0) assert_true(r.overall.accuracy > runs[i].min_accuracy);
    bwt_eval_result_free(&r);
  }
}

/* --loss mse and --loss policy-gradient train a transformer on every wind tunnel. The squared error
 * is a proper scoring rule: it calibrates towards the posterior (MAE bounded like cross-entropy's,
 * looser). REINFORCE maximises the expected reward Σ p·q, whose optimum is the posterior's mode: the
 * model's entropy collapses below the Bayes entropy, and where the answer is determined it is right. */
static void test_long_losses_every_tunnel(void **state) {
  static const struct {
    const char *task;
    int soft, steps;
    double mse_kl_frac; /* the squared error's KL at most this fraction of the uniform predictor's */
  } runs[] = {
      {"bijection", 0, 600, 0.6}, /* measured 0.054; policy gradient: H 0.056 against Bayes 1.898 */
      {"hmm", 1, 2000, 0.8},      /* measured 0.605 (it leaves the context-free plateau late); 0.451 against 1.908 */
      {"sticky", 1, 600, 0.6},    /* measured 0.006; 0.043 against 2.646 */
      {"modular", 0, 600, 0.6},   /* measured 0.449; 0.880 against 1.567 */
      {"recall", 0, 600, 0.6},    /* measured 0.006; 0.056 against 0 (at half accuracy: collapsed on a guess) */
  };
  for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
    for (int loss = BWT_LOSS_MSE; loss <= BWT_LOSS_PG; loss++) {
      bwt_task_config tc;
      small_tunnel(&tc, runs[i].task);
      bwt_run_config c = task_config(runs[i].task, &tc, 32, runs[i].steps);
      c.model.n_layers = 2;
      c.train.batch = 32, c.train.warmup = 40, c.train.soft_targets = runs[i].soft, c.train.loss = loss;
      char name[64];
      snprintf(name, sizeof name, "loss_%s_%s", bwt_loss_name((bwt_loss)loss), runs[i].task);
      bwt_eval_result r;
      double mae = train_and_eval(&c, name, &r);
      const bwt_metrics *o = &r.overall;
      double uniform = log2((double)c.model.n_classes); /* the untrained model's entropy, about */
      print_message("  %-15s %-9s entropy MAE %.4f bits, KL %.4f (uniform %.4f), H(model) %.4f, H(Bayes) %.4f\n",
                    bwt_loss_name((bwt_loss)loss), runs[i].task, mae, o->kl_bits, uniform - o->bayes_entropy,
                    o->model_entropy, o->bayes_entropy);
      assert_true(isfinite(mae));
      if (loss == BWT_LOSS_MSE) assert_true(o->kl_bits < runs[i].mse_kl_frac * (uniform - o->bayes_entropy));
      else assert_true(o->model_entropy < fmin(o->bayes_entropy + 0.1, uniform - 0.5));
      bwt_eval_result_free(&r);
    }
}

/* The mixture-of-experts MLP (4 experts, top-1 and top-2, equal active parameters) trains a
 * transformer on the wind tunnels: its KL to the posterior well below the uniform predictor's. The
 * HMM is not here: at this size the MoE model was still at the context-free plateau after 1500 steps
 * (top-1: KL 0.413 of the uniform 0.414), longer than this test can afford; `bwt reproduce moe`
 * measures it at d 64 and 3000 steps. */
static void test_long_moe_every_tunnel(void **state) {
  static const struct {
    const char *task;
    int soft, steps;
    double max_kl_frac; /* KL at most this fraction of the uniform predictor's; measured in the comments */
  } runs[] = {
      {"bijection", 0, 600, 0.3}, /* measured 0.017 (top-1) and 0.017 (top-2) of it */
      {"sticky", 1, 600, 0.3},    /* 0.006, 0.005 */
      {"modular", 0, 600, 0.6},   /* 0.387, 0.355 */
      {"recall", 0, 600, 0.3},    /* 0.148, 0.180 */
  };
  for (size_t i = 0; i < sizeof runs / sizeof *runs; i++)
    for (int k = 1; k <= 2; k++) {
      bwt_task_config tc;
      small_tunnel(&tc, runs[i].task);
      bwt_run_config c = task_config(runs[i].task, &tc, 32, runs[i].steps);
      c.model.n_layers = 2, c.model.experts = 4, c.model.expert_top_k = k;
      c.train.batch = 32, c.train.warmup = 40, c.train.soft_targets = runs[i].soft;
      char name[64];
      snprintf(name, sizeof name, "moe_top%d_%s", k, runs[i].task);
      bwt_eval_result r;
      double mae = train_and_eval(&c, name, &r);
      double uniform = log2((double)c.model.n_classes) - r.overall.bayes_entropy;
      print_message("  moe top-%d %-9s entropy MAE %.4f bits, KL %.4f (uniform %.4f)\n", k, runs[i].task, mae,
                    r.overall.kl_bits, uniform);
      assert_true(r.overall.kl_bits < runs[i].max_kl_frac * uniform);
      bwt_eval_result_free(&r);
    }
}

/* --loss-horizon H: the loss is the mean over the first H positions of each sequence, and the
 * other rows send no gradient; H = n_sup is the ordinary loss. */
static void test_loss_horizon(void **state) {
  for (int H = 1; H <= 4; H += 3) { /* n_sup = 4 */
    bwt_run_config c = small_config(BWT_ARCH_TRANSFORMER, 5, 10);
    c.train.loss_horizon = H;
    bwt_trainer *tr = NULL;
    assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
    double loss, norm, lr;
    assert_int_equal(bwt_trainer_step(tr, &loss, &norm, &lr), BWT_STATUS_OK);
    const bwt_batch *b = &tr->batch;
    int K = b->n_classes;
    double want = 0;
    for (int s = 0; s < b->B; s++)
      for (int j = 0; j < b->n_sup; j++) {
        size_t r = (size_t)s * b->n_sup + j;
        double gsum = 0;
        for (int k = 0; k < K; k++) gsum += fabs(tr->dlogits[r * K + k]);
        if (j < H) {
          want -= log(tr->probs[r * K + b->target[r]]);
          assert_true(gsum > 0);
        } else {
          assert_true(gsum == 0);
        }
      }
    want /= (double)b->B * H;
    assert_float_equal(loss, want, 1e-9 * want);
    bwt_trainer_free(tr);
  }
}

static void test_bad_run_config(void **state) {
  bwt_run_config c = small_config(BWT_ARCH_TRANSFORMER, 5, 10);
  bwt_trainer *tr = NULL;
  c.train.batch = 0;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_ARG);
  c.train.batch = 4;
  c.model.n_layers = 0;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_ARG);
  assert_null(tr);
  /* Writing into a path below a regular file fails with a message naming it. */
  c.model.n_layers = 1;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  char bad[1100];
  snprintf(bad, sizeof bad, "%s/file", test_tmpdir("unwritable"));
  assert_int_equal(bwt_write_file_atomic(bad, "x", 1), BWT_STATUS_OK);
  strcat(bad, "/run");
  assert_int_equal(bwt_train_run(tr, bad, NULL, NULL), BWT_STATUS_IO);
  assert_non_null(strstr(bwt_last_error(), "file"));
  bwt_trainer_free(tr);
}

/* --init-from: a run starts from another run's weights (a curriculum's next stage: another task
 * setting, the same model), with fresh optimiser state; a model that does not match is refused. */
static void test_init_from(void **state) {
  bwt_run_config c = small_config(BWT_ARCH_TRANSFORMER, 5, 6);
  c.train.threads = 1;
  char first[1024], path[1100];
  snprintf(first, sizeof first, "%s", test_tmpdir("init_from"));
  run_to(&c, first, 0);
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", first);
  bwt_run_config src_cfg;
  bwt_model *src = NULL;
  int step;
  assert_int_equal(bwt_checkpoint_load(path, &src_cfg, &src, NULL, NULL, &step), BWT_STATUS_OK);
  bwt_run_config next = c;
  next.task.L = 3; /* another setting of the task: the model is the same */
  assert_true(strlen(path) < sizeof next.train.init_from);
  memcpy(next.train.init_from, path, strlen(path) + 1);
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &next), BWT_STATUS_OK);
  assert_memory_equal(tr->model->params, src->params, sizeof(float) * src->n_params);
  for (size_t i = 0; i < tr->model->n_params; i++) assert_true(tr->adam_m[i] == 0 && tr->adam_v[i] == 0);
  bwt_trainer_free(tr);
  bwt_run_config stage = next;
  next.model.d_model = 8; /* another model */
  assert_int_equal(bwt_trainer_create(&tr, &next), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "--init-from"));
  assert_null(tr);
  /* A stage stopped and resumed after its source is gone: the resume reads its own checkpoint only. */
  char second[1024];
  snprintf(second, sizeof second, "%s", test_tmpdir("init_from_next"));
  run_to(&stage, second, 2);
  assert_int_equal(remove(path), 0);
  assert_int_equal(bwt_trainer_resume(&tr, second), BWT_STATUS_OK);
  assert_string_equal(tr->cfg.train.init_from, stage.train.init_from);
  assert_int_equal(bwt_train_run(tr, second, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  bwt_model_free(src);
}

/* --position-jitter: each step's offsets lie in 0..N, differ between sequences, leave the sequences
 * those of an unshifted run, survive a stop and resume bit for bit, and are refused where they
 * cannot apply (learned rows too few, no positions). */
static void test_position_jitter(void **state) {
  bwt_run_config plain = small_config(BWT_ARCH_TRANSFORMER, 5, 12), c = plain;
  c.train.position_jitter = 6;
  c.train.position_jitter_from = 1; /* the first key keeps position 0 */
  c.model.max_T = 15; /* T = 2L − 1 = 7, plus the jitter, with room */
  plain.model.max_T = c.model.max_T;
  bwt_trainer *tr = NULL, *ref = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_trainer_create(&ref, &plain), BWT_STATUS_OK);
  assert_null(ref->batch.pos_offset);
  assert_int_equal(tr->batch.pos_offset_from, 1);
  double loss, norm, lr;
  int seen[7] = {0};
  for (int step = 0; step < 3; step++) {
    assert_int_equal(bwt_trainer_step(tr, &loss, &norm, &lr), BWT_STATUS_OK);
    assert_int_equal(bwt_trainer_step(ref, &loss, &norm, &lr), BWT_STATUS_OK);
    assert_memory_equal(tr->batch.tokens, ref->batch.tokens, sizeof(int32_t) * tr->batch.B * tr->batch.T);
    for (int b = 0; b < tr->batch.B; b++) {
      int o = tr->batch.pos_offset[b];
      assert_true(o >= 0 && o <= 6);
      seen[o]++;
    }
  }
  int distinct = 0;
  for (int o = 0; o <= 6; o++) distinct += seen[o] > 0;
  assert_true(distinct >= 5); /* 48 draws of 7 values */
  bwt_trainer_free(ref);
  bwt_trainer_free(tr);

  char a[1024], r[1024], pa[1100], pr[1100];
  snprintf(a, sizeof a, "%s", test_tmpdir("jitter_a"));
  snprintf(r, sizeof r, "%s", test_tmpdir("jitter_resume"));
  run_to(&c, a, 0);
  run_to(&c, r, 5);
  assert_int_equal(bwt_trainer_resume(&tr, r), BWT_STATUS_OK);
  assert_int_equal(tr->cfg.train.position_jitter, 6);
  assert_int_equal(tr->cfg.train.position_jitter_from, 1);
  assert_int_equal(bwt_train_run(tr, r, NULL, NULL), BWT_STATUS_OK);
  bwt_trainer_free(tr);
  snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
  snprintf(pr, sizeof pr, "%s/checkpoint.safetensors", r);
  assert_same_file(pa, pr);

  c.model.max_T = 12; /* 7 + 6 > 12 */
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "--max-T >= 13"));
  c.model.positions = BWT_POS_NONE;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_ARG);
  assert_non_null(strstr(bwt_last_error(), "position-jitter"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_schedule),
      cmocka_unit_test(test_determinism_and_resume),
      cmocka_unit_test(test_end_to_end_small_bijection),
      cmocka_unit_test(test_long_end_to_end_hmm),
      cmocka_unit_test(test_end_to_end_sticky),
      cmocka_unit_test(test_long_end_to_end_recall_and_modular),
      cmocka_unit_test(test_long_end_to_end_mamba),
      cmocka_unit_test(test_long_losses_every_tunnel),
      cmocka_unit_test(test_long_moe_every_tunnel),
      cmocka_unit_test(test_loss_horizon),
      cmocka_unit_test(test_bad_run_config),
      cmocka_unit_test(test_init_from),
      cmocka_unit_test(test_position_jitter),
  };
  test_filters_from_env();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
