/* Run configuration: defaults, validation, and config.json in both directions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/train.h"

void bwt_train_config_default(bwt_train_config *c) {
  memset(c, 0, sizeof *c);
  c->steps = 6000; /* defaults: a small transformer that learns the V=20 bijection in minutes */
  c->batch = 64;
  c->lr = 1e-3;
  c->min_lr_frac = 0.1;
  c->warmup = 300;
  c->weight_decay = 0.1;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->eps = 1e-8;
  c->clip = 1.0;
  c->soft_targets = 0;
  c->loss_horizon = 0;
  c->seed = 1;
  c->eval_seed = 12345;
  c->eval_every = 0;
  c->eval_seqs = 2000;
  c->ckpt_every = 500;
  c->lr_v_mult = 1.0;
  c->snapshots = 0;
  c->log_every = 50;
  c->threads = 0;
}

bwt_status bwt_run_config_check(const bwt_run_config *cfg) {
  const bwt_train_config *t = &cfg->train;
  if (t->steps < 1) return bwt_fail(BWT_STATUS_ARG, "steps must be >= 1 (got %d)", t->steps);
  if (t->batch < 1) return bwt_fail(BWT_STATUS_ARG, "batch must be >= 1 (got %d)", t->batch);
  if (!(t->lr > 0) || !isfinite(t->lr)) return bwt_fail(BWT_STATUS_ARG, "lr must be a positive number (got %g)", t->lr);
  if (!(t->min_lr_frac >= 0 && t->min_lr_frac <= 1)) return bwt_fail(BWT_STATUS_ARG, "min-lr-frac must be in [0, 1] (got %g)", t->min_lr_frac);
  if (t->warmup < 0) return bwt_fail(BWT_STATUS_ARG, "warmup must be >= 0 (got %d)", t->warmup);
  if (!(t->weight_decay >= 0) || !isfinite(t->weight_decay)) return bwt_fail(BWT_STATUS_ARG, "weight-decay must be >= 0 (got %g)", t->weight_decay);
  if (!(t->beta1 >= 0 && t->beta1 < 1) || !(t->beta2 >= 0 && t->beta2 < 1)) return bwt_fail(BWT_STATUS_ARG, "betas must be in [0, 1) (got %g, %g)", t->beta1, t->beta2);
  if (!(t->eps > 0)) return bwt_fail(BWT_STATUS_ARG, "eps must be > 0 (got %g)", t->eps);
  if (!(t->clip >= 0) || !isfinite(t->clip)) return bwt_fail(BWT_STATUS_ARG, "clip must be >= 0 (got %g)", t->clip);
  if (t->eval_every < 0 || t->ckpt_every < 0) return bwt_fail(BWT_STATUS_ARG, "eval-every and ckpt-every must be >= 0");
  if (!(t->lr_v_mult > 0) || !isfinite(t->lr_v_mult)) return bwt_fail(BWT_STATUS_ARG, "lr-v-mult must be a positive number (got %g)", t->lr_v_mult);
  if (t->snapshots < 0 || t->snapshots > 1000) return bwt_fail(BWT_STATUS_ARG, "snapshots must be in 0..1000 (got %d)", t->snapshots);
  if (t->eval_seqs < 1) return bwt_fail(BWT_STATUS_ARG, "eval-seqs must be >= 1 (got %d)", t->eval_seqs);
  if (t->loss_horizon < 0) return bwt_fail(BWT_STATUS_ARG, "loss-horizon must be >= 0 (got %d)", t->loss_horizon);
  if (t->log_every < 1) return bwt_fail(BWT_STATUS_ARG, "log-every must be >= 1 (got %d)", t->log_every);
  if (t->threads < 0 || t->threads > 1024) return bwt_fail(BWT_STATUS_ARG, "threads must be in 0..1024 (got %d)", t->threads);
  return BWT_STATUS_OK;
}

/* Seeds are 64-bit: JSON numbers are doubles, so they travel as decimal strings. */
static void add_u64(cJSON *o, const char *key, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  cJSON_AddStringToObject(o, key, buf);
}

char *bwt_run_config_to_json(const bwt_run_config *cfg) {
  cJSON *root = cJSON_CreateObject(), *task = cJSON_AddObjectToObject(root, "task");
  cJSON *model = cJSON_AddObjectToObject(root, "model"), *train = cJSON_AddObjectToObject(root, "train");
  const bwt_task_config *tc = &cfg->task;
  cJSON_AddStringToObject(task, "name", tc->name);
  for (const bwt_task_field *f = bwt_task_fields; f->key; f++) {
    if (strcmp(f->task, tc->name) != 0) continue;
    int v = *bwt_task_field_int((bwt_task_config *)tc, f);
    if (f->is_bool)
      cJSON_AddBoolToObject(task, f->key, v);
    else
      cJSON_AddNumberToObject(task, f->key, v);
  }
  const bwt_model_config *mc = &cfg->model;
  cJSON_AddStringToObject(model, "arch", bwt_arch_name(mc->arch));
  cJSON_AddNumberToObject(model, "vocab", mc->vocab);
  cJSON_AddNumberToObject(model, "n_classes", mc->n_classes);
  cJSON_AddNumberToObject(model, "max_T", mc->max_T);
  cJSON_AddStringToObject(model, "positions", bwt_positions_name(mc->positions));
  cJSON_AddNumberToObject(model, "input_dim", mc->input_dim);
  cJSON_AddNumberToObject(model, "d_model", mc->d_model);
  cJSON_AddNumberToObject(model, "n_layers", mc->n_layers);
  cJSON_AddNumberToObject(model, "n_heads", mc->n_heads);
  cJSON_AddStringToObject(model, "norm", bwt_norm_name(mc->norm));
  cJSON_AddBoolToObject(model, "tied_head", mc->tied_head);
  cJSON_AddNumberToObject(model, "window", mc->window);
  const bwt_train_config *t = &cfg->train;
  cJSON_AddNumberToObject(train, "steps", t->steps);
  cJSON_AddNumberToObject(train, "batch", t->batch);
  cJSON_AddNumberToObject(train, "lr", t->lr);
  cJSON_AddNumberToObject(train, "min_lr_frac", t->min_lr_frac);
  cJSON_AddNumberToObject(train, "warmup", t->warmup);
  cJSON_AddNumberToObject(train, "weight_decay", t->weight_decay);
  cJSON_AddNumberToObject(train, "beta1", t->beta1);
  cJSON_AddNumberToObject(train, "beta2", t->beta2);
  cJSON_AddNumberToObject(train, "eps", t->eps);
  cJSON_AddNumberToObject(train, "clip", t->clip);
  cJSON_AddBoolToObject(train, "soft_targets", t->soft_targets);
  cJSON_AddNumberToObject(train, "loss_horizon", t->loss_horizon);
  add_u64(train, "seed", t->seed);
  add_u64(train, "eval_seed", t->eval_seed);
  cJSON_AddNumberToObject(train, "eval_every", t->eval_every);
  cJSON_AddNumberToObject(train, "eval_seqs", t->eval_seqs);
  cJSON_AddNumberToObject(train, "ckpt_every", t->ckpt_every);
  cJSON_AddNumberToObject(train, "snapshots", t->snapshots);
  cJSON_AddNumberToObject(train, "lr_v_mult", t->lr_v_mult);
  cJSON_AddNumberToObject(train, "log_every", t->log_every);
  cJSON_AddNumberToObject(train, "threads", t->threads);
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  return s;
}

/* Readers that name the missing or mistyped field. */
typedef struct {
  const char *what;
  bwt_status status;
} reader;

static const cJSON *field(reader *r, const cJSON *o, const char *sec, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v && r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config has no %s.%s", r->what, sec, key);
  return v;
}

static double get_num(reader *r, const cJSON *o, const char *sec, const char *key) {
  const cJSON *v = field(r, o, sec, key);
  if (v && !cJSON_IsNumber(v) && r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not a number", r->what, sec, key);
  return v && cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int get_int(reader *r, const cJSON *o, const char *sec, const char *key) {
  double d = get_num(r, o, sec, key);
  if ((d != floor(d) || fabs(d) > 2147483647.0) && r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not an integer", r->what, sec, key);
  return (int)d;
}

static int get_bool(reader *r, const cJSON *o, const char *sec, const char *key) {
  const cJSON *v = field(r, o, sec, key);
  if (v && !cJSON_IsBool(v) && r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not true/false", r->what, sec, key);
  return v && cJSON_IsTrue(v);
}

static const char *get_str(reader *r, const cJSON *o, const char *sec, const char *key) {
  const cJSON *v = field(r, o, sec, key);
  if (v && !cJSON_IsString(v) && r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not a string", r->what, sec, key);
  return v && cJSON_IsString(v) ? v->valuestring : "";
}

static uint64_t get_u64(reader *r, const cJSON *o, const char *sec, const char *key) {
  const char *s = get_str(r, o, sec, key);
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if ((!*s || *end) && r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not an unsigned integer string", r->what, sec, key);
  return (uint64_t)v;
}

bwt_status bwt_run_config_from_json(bwt_run_config *cfg, const char *json, const char *what) {
  memset(cfg, 0, sizeof *cfg);
  cJSON *root = cJSON_Parse(json);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return bwt_fail(BWT_STATUS_FORMAT, "%s: the config is not a JSON object", what);
  }
  reader r = {what, BWT_STATUS_OK};
  const cJSON *task = field(&r, root, "config", "task"), *model = field(&r, root, "config", "model");
  const cJSON *train = field(&r, root, "config", "train");
  if (r.status == BWT_STATUS_OK) {
    bwt_task_config *tc = &cfg->task;
    const char *name = get_str(&r, task, "task", "name");
    if (r.status == BWT_STATUS_OK && bwt_task_config_default(tc, name) != BWT_STATUS_OK)
      r.status = bwt_fail(BWT_STATUS_FORMAT, "%s: %s", what, bwt_last_error());
    for (const bwt_task_field *f = bwt_task_fields; f->key && r.status == BWT_STATUS_OK; f++)
      if (strcmp(f->task, tc->name) == 0)
        *bwt_task_field_int(tc, f) = f->is_bool ? get_bool(&r, task, "task", f->key) : get_int(&r, task, "task", f->key);
    bwt_model_config *mc = &cfg->model;
    const char *arch = get_str(&r, model, "model", "arch"), *norm = get_str(&r, model, "model", "norm");
    if (r.status == BWT_STATUS_OK && bwt_arch_parse(arch, &mc->arch)) r.status = BWT_STATUS_FORMAT;
    if (r.status == BWT_STATUS_OK && bwt_norm_parse(norm, &mc->norm)) r.status = BWT_STATUS_FORMAT;
    mc->vocab = get_int(&r, model, "model", "vocab");
    mc->n_classes = get_int(&r, model, "model", "n_classes");
    mc->max_T = get_int(&r, model, "model", "max_T");
    /* Runs written before continuous inputs existed have no "input_dim": they take tokens. */
    if (cJSON_GetObjectItemCaseSensitive(model, "input_dim")) mc->input_dim = get_int(&r, model, "model", "input_dim");
    /* Runs written before sinusoids existed have no "positions": they are learned. */
    const cJSON *positions = cJSON_GetObjectItemCaseSensitive(model, "positions");
    if (positions && r.status == BWT_STATUS_OK &&
        (!cJSON_IsString(positions) || bwt_positions_parse(positions->valuestring, &mc->positions) != BWT_STATUS_OK))
      r.status = bwt_fail(BWT_STATUS_FORMAT, "%s: config model.positions must be \"learned\" or \"sinusoidal\"", what);
    mc->d_model = get_int(&r, model, "model", "d_model");
    mc->n_layers = get_int(&r, model, "model", "n_layers");
    mc->n_heads = get_int(&r, model, "model", "n_heads");
    mc->tied_head = get_bool(&r, model, "model", "tied_head");
    mc->window = get_int(&r, model, "model", "window");
    bwt_train_config *t = &cfg->train;
    t->steps = get_int(&r, train, "train", "steps");
    t->batch = get_int(&r, train, "train", "batch");
    t->lr = get_num(&r, train, "train", "lr");
    t->min_lr_frac = get_num(&r, train, "train", "min_lr_frac");
    t->warmup = get_int(&r, train, "train", "warmup");
    t->weight_decay = get_num(&r, train, "train", "weight_decay");
    t->beta1 = get_num(&r, train, "train", "beta1");
    t->beta2 = get_num(&r, train, "train", "beta2");
    t->eps = get_num(&r, train, "train", "eps");
    t->clip = get_num(&r, train, "train", "clip");
    t->soft_targets = get_bool(&r, train, "train", "soft_targets");
    /* Runs written before the horizon existed have none: every position is trained. */
    if (cJSON_GetObjectItemCaseSensitive(train, "loss_horizon")) t->loss_horizon = get_int(&r, train, "train", "loss_horizon");
    t->seed = get_u64(&r, train, "train", "seed");
    t->eval_seed = get_u64(&r, train, "train", "eval_seed");
    t->eval_every = get_int(&r, train, "train", "eval_every");
    t->eval_seqs = get_int(&r, train, "train", "eval_seqs");
    t->ckpt_every = get_int(&r, train, "train", "ckpt_every");
    /* Runs written before snapshots existed have none. */
    if (cJSON_GetObjectItemCaseSensitive(train, "snapshots")) t->snapshots = get_int(&r, train, "train", "snapshots");
    t->lr_v_mult = 1.0; /* runs written before the EM-like schedule existed have none */
    if (cJSON_GetObjectItemCaseSensitive(train, "lr_v_mult")) t->lr_v_mult = get_num(&r, train, "train", "lr_v_mult");
    t->log_every = get_int(&r, train, "train", "log_every");
    t->threads = get_int(&r, train, "train", "threads");
  }
  cJSON_Delete(root);
  char why[512];
  if (r.status != BWT_STATUS_OK) {
    if (r.status == BWT_STATUS_FORMAT && strncmp(bwt_last_error(), what, strlen(what)) != 0) {
      snprintf(why, sizeof why, "%s", bwt_last_error()); /* bwt_fail overwrites the message */
      return bwt_fail(BWT_STATUS_FORMAT, "%s: %s", what, why);
    }
    return r.status;
  }
  if (bwt_run_config_check(cfg) != BWT_STATUS_OK) {
    snprintf(why, sizeof why, "%s", bwt_last_error());
    return bwt_fail(BWT_STATUS_FORMAT, "%s: %s", what, why);
  }
  return BWT_STATUS_OK;
}
