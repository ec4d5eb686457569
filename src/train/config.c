/* Run configuration: defaults, validation, and config.json in both directions. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
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

/* The range of every number of a training config, checked on every path in (flags, config files,
 * checkpoint metadata): an open bound excludes its value; every double must also be finite. */
typedef struct {
  const char *name; /* as the flag spells it */
  size_t offset;    /* in bwt_train_config */
  int is_int;
  double lo, hi;
  int lo_open, hi_open;
} train_range;

#define D(field, name, lo, hi, lo_open, hi_open) {name, offsetof(bwt_train_config, field), 0, lo, hi, lo_open, hi_open}
#define I(field, name, lo, hi) {name, offsetof(bwt_train_config, field), 1, lo, hi, 0, 0}
static const train_range train_ranges[] = {
    I(steps, "steps", 1, 1e9),
    I(batch, "batch", 1, 1 << 20),
    D(lr, "lr", 0, 10, 1, 0),
    D(lr_v_mult, "lr-v-mult", 0, 1e4, 1, 0),
    D(min_lr_frac, "min-lr-frac", 0, 1, 0, 0),
    I(warmup, "warmup", 0, 1e9),
    D(weight_decay, "weight-decay", 0, 1e3, 0, 0),
    D(beta1, "beta1", 0, 1, 0, 1),
    D(beta2, "beta2", 0, 1, 0, 1),
    D(eps, "eps", 0, 1, 1, 0),
    D(clip, "clip", 0, 1e12, 0, 0),
    I(loss_horizon, "loss-horizon", 0, 1e9),
    I(position_jitter, "position-jitter", 0, 1 << 20),
    I(position_jitter_from, "position-jitter-from", 0, 1 << 20),
    I(eval_every, "eval-every", 0, 1e9),
    I(eval_seqs, "eval-seqs", 1, 1e8),
    I(ckpt_every, "ckpt-every", 0, 1e9),
    I(snapshots, "snapshots", 0, 1000),
    I(log_every, "log-every", 1, 1e9),
    I(threads, "threads", 0, 1024),
};
#undef D
#undef I

bwt_status bwt_run_config_check(const bwt_run_config *cfg) {
  const bwt_train_config *t = &cfg->train;
  BWT_TRY(bwt_model_config_check(&cfg->model));
  for (size_t i = 0; i < sizeof train_ranges / sizeof train_ranges[0]; i++) {
    const train_range *r = &train_ranges[i];
    const char *field = (const char *)t + r->offset;
    double v = r->is_int ? *(const int *)field : *(const double *)field;
    int ok = isfinite(v) && (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
    if (!ok)
      return bwt_fail(BWT_STATUS_ARG, "%s must be in %s%g, %g%s (got %g)", r->name, r->lo_open ? "(" : "[", r->lo, r->hi,
                      r->hi_open ? ")" : "]", v);
  }
  if (t->lr * t->weight_decay >= 1)
    return bwt_fail(BWT_STATUS_ARG, "lr x weight-decay must be below 1, or decay flips the weights' sign (got %g x %g)", t->lr, t->weight_decay);
  if (t->soft_targets != 0 && t->soft_targets != 1) return bwt_fail(BWT_STATUS_ARG, "soft_targets must be true or false");
  if (t->decay_all != 0 && t->decay_all != 1) return bwt_fail(BWT_STATUS_ARG, "decay must be matrices or all");
  if (t->position_jitter > 0 && cfg->model.positions == BWT_POS_NONE)
    return bwt_fail(BWT_STATUS_ARG, "position-jitter shifts positions, and the model has none (--positions learned or sinusoidal)");
  return BWT_STATUS_OK;
}

/* Seeds are 64-bit: JSON numbers are doubles, so they travel as decimal strings. */
static int add_u64(cJSON *o, const char *key, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
  return cJSON_AddStringToObject(o, key, buf) != NULL;
}

char *bwt_run_config_to_json(const bwt_run_config *cfg) {
  bwt_alloc_hooks_install();
  cJSON *root = cJSON_CreateObject(), *task = cJSON_AddObjectToObject(root, "task");
  cJSON *model = cJSON_AddObjectToObject(root, "model"), *train = cJSON_AddObjectToObject(root, "train");
  int ok = task && model && train; /* every cJSON allocation succeeded: a partial config is never written */
  const bwt_task_config *tc = &cfg->task;
  ok &= !!cJSON_AddStringToObject(task, "name", tc->name);
  for (const bwt_task_field *f = bwt_task_fields; f->key; f++) {
    if (strcmp(f->task, tc->name) != 0) continue;
    int v = *bwt_task_field_int((bwt_task_config *)tc, f);
    ok &= !!(f->is_bool ? cJSON_AddBoolToObject(task, f->key, v) : cJSON_AddNumberToObject(task, f->key, v));
  }
  const bwt_model_config *mc = &cfg->model;
  ok &= !!cJSON_AddStringToObject(model, "arch", bwt_arch_name(mc->arch));
  ok &= !!cJSON_AddNumberToObject(model, "vocab", mc->vocab);
  ok &= !!cJSON_AddNumberToObject(model, "n_classes", mc->n_classes);
  ok &= !!cJSON_AddNumberToObject(model, "max_T", mc->max_T);
  ok &= !!cJSON_AddStringToObject(model, "positions", bwt_positions_name(mc->positions));
  ok &= !!cJSON_AddNumberToObject(model, "input_dim", mc->input_dim);
  ok &= !!cJSON_AddNumberToObject(model, "d_model", mc->d_model);
  ok &= !!cJSON_AddNumberToObject(model, "n_layers", mc->n_layers);
  ok &= !!cJSON_AddNumberToObject(model, "n_heads", mc->n_heads);
  ok &= !!cJSON_AddStringToObject(model, "norm", bwt_norm_name(mc->norm));
  ok &= !!cJSON_AddBoolToObject(model, "tied_head", mc->tied_head);
  ok &= !!cJSON_AddStringToObject(model, "init", bwt_init_name(mc->init));
  ok &= !!cJSON_AddBoolToObject(model, "attn_bias", mc->attn_bias);
  ok &= !!cJSON_AddNumberToObject(model, "window", mc->window);
  const bwt_train_config *t = &cfg->train;
  ok &= !!cJSON_AddNumberToObject(train, "steps", t->steps);
  ok &= !!cJSON_AddNumberToObject(train, "batch", t->batch);
  ok &= !!cJSON_AddNumberToObject(train, "lr", t->lr);
  ok &= !!cJSON_AddNumberToObject(train, "min_lr_frac", t->min_lr_frac);
  ok &= !!cJSON_AddNumberToObject(train, "warmup", t->warmup);
  ok &= !!cJSON_AddNumberToObject(train, "weight_decay", t->weight_decay);
  ok &= !!cJSON_AddStringToObject(train, "decay", t->decay_all ? "all" : "matrices");
  ok &= !!cJSON_AddNumberToObject(train, "beta1", t->beta1);
  ok &= !!cJSON_AddNumberToObject(train, "beta2", t->beta2);
  ok &= !!cJSON_AddNumberToObject(train, "eps", t->eps);
  ok &= !!cJSON_AddNumberToObject(train, "clip", t->clip);
  ok &= !!cJSON_AddBoolToObject(train, "soft_targets", t->soft_targets);
  ok &= !!cJSON_AddNumberToObject(train, "loss_horizon", t->loss_horizon);
  ok &= !!cJSON_AddNumberToObject(train, "position_jitter", t->position_jitter);
  ok &= !!cJSON_AddNumberToObject(train, "position_jitter_from", t->position_jitter_from);
  ok &= add_u64(train, "seed", t->seed) && add_u64(train, "eval_seed", t->eval_seed);
  ok &= !!cJSON_AddNumberToObject(train, "eval_every", t->eval_every);
  ok &= !!cJSON_AddNumberToObject(train, "eval_seqs", t->eval_seqs);
  ok &= !!cJSON_AddNumberToObject(train, "ckpt_every", t->ckpt_every);
  ok &= !!cJSON_AddNumberToObject(train, "snapshots", t->snapshots);
  ok &= !!cJSON_AddNumberToObject(train, "lr_v_mult", t->lr_v_mult);
  ok &= !!cJSON_AddNumberToObject(train, "log_every", t->log_every);
  ok &= !!cJSON_AddNumberToObject(train, "threads", t->threads);
  if (t->init_from[0]) ok &= !!cJSON_AddStringToObject(train, "init_from", t->init_from);
  char *s = ok ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!s) bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting a run config");
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
  if (d == floor(d) && fabs(d) <= 2147483647.0) return (int)d; /* the only values an int can take */
  if (r->status == BWT_STATUS_OK)
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not an integer in the range of int", r->what, sec, key);
  return 0;
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
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if ((*s < '0' || *s > '9' || *end || errno) && r->status == BWT_STATUS_OK) /* digits only: no sign, no blank */
    r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is not an unsigned integer string", r->what, sec, key);
  return (uint64_t)v;
}

bwt_status bwt_run_config_from_json(bwt_run_config *cfg, const char *json, const char *what) {
  bwt_alloc_hooks_install();
  memset(cfg, 0, sizeof *cfg);
  long failures = bwt_alloc_failures();
  cJSON *root = cJSON_Parse(json);
  if (!root && bwt_alloc_failures() != failures) return bwt_fail(BWT_STATUS_NOMEM, "out of memory parsing the config of %s", what);
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
      r.status = bwt_fail(BWT_STATUS_FORMAT, "%s: config model.positions must be \"learned\", \"sinusoidal\" or \"none\"", what);
    mc->d_model = get_int(&r, model, "model", "d_model");
    mc->n_layers = get_int(&r, model, "model", "n_layers");
    mc->n_heads = get_int(&r, model, "model", "n_heads");
    mc->tied_head = get_bool(&r, model, "model", "tied_head");
    mc->window = get_int(&r, model, "model", "window");
    /* Runs written before these existed have bwt's initialisation and attention biases. */
    mc->init = BWT_INIT_BWT;
    if (cJSON_GetObjectItemCaseSensitive(model, "init") && r.status == BWT_STATUS_OK &&
        bwt_init_parse(get_str(&r, model, "model", "init"), &mc->init) != BWT_STATUS_OK)
      r.status = BWT_STATUS_FORMAT;
    mc->attn_bias = 1;
    if (cJSON_GetObjectItemCaseSensitive(model, "attn_bias")) mc->attn_bias = get_bool(&r, model, "model", "attn_bias");
    bwt_train_config *t = &cfg->train;
    t->steps = get_int(&r, train, "train", "steps");
    t->batch = get_int(&r, train, "train", "batch");
    t->lr = get_num(&r, train, "train", "lr");
    t->min_lr_frac = get_num(&r, train, "train", "min_lr_frac");
    t->warmup = get_int(&r, train, "train", "warmup");
    t->weight_decay = get_num(&r, train, "train", "weight_decay");
    const cJSON *decay = cJSON_GetObjectItemCaseSensitive(train, "decay"); /* absent before it existed */
    if (decay && r.status == BWT_STATUS_OK) {
      const char *d = get_str(&r, train, "train", "decay");
      if (strcmp(d, "all") == 0) t->decay_all = 1;
      else if (strcmp(d, "matrices") != 0 && r.status == BWT_STATUS_OK)
        r.status = bwt_fail(BWT_STATUS_FORMAT, "%s: config train.decay must be \"matrices\" or \"all\"", what);
    }
    t->beta1 = get_num(&r, train, "train", "beta1");
    t->beta2 = get_num(&r, train, "train", "beta2");
    t->eps = get_num(&r, train, "train", "eps");
    t->clip = get_num(&r, train, "train", "clip");
    t->soft_targets = get_bool(&r, train, "train", "soft_targets");
    /* Runs written before the horizon existed have none: every position is trained. */
    if (cJSON_GetObjectItemCaseSensitive(train, "loss_horizon")) t->loss_horizon = get_int(&r, train, "train", "loss_horizon");
    /* Runs written before the jitter existed have none. */
    if (cJSON_GetObjectItemCaseSensitive(train, "position_jitter"))
      t->position_jitter = get_int(&r, train, "train", "position_jitter");
    if (cJSON_GetObjectItemCaseSensitive(train, "position_jitter_from"))
      t->position_jitter_from = get_int(&r, train, "train", "position_jitter_from");
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
    if (cJSON_GetObjectItemCaseSensitive(train, "init_from")) { /* runs that started from fresh weights have none */
      const char *from = get_str(&r, train, "train", "init_from");
      if (strlen(from) >= sizeof t->init_from && r.status == BWT_STATUS_OK)
        r.status = bwt_fail(BWT_STATUS_FORMAT, "%s: config train.init_from is too long", what);
      else
        memcpy(t->init_from, from, strlen(from) + 1);
    }
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
