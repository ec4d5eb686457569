/* Run configuration: defaults, validation, and config.json in both directions. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/train.h"

/* Enumerations by name, for the rows. */
static const char *arch_name(int v) { return bwt_arch_name((bwt_arch)v); }
static const char *norm_name(int v) { return bwt_norm_name((bwt_norm)v); }
static const char *positions_name(int v) { return bwt_positions_name((bwt_positions)v); }
static const char *init_name(int v) { return bwt_init_name((bwt_init)v); }
static const char *ssm_variant_name(int v) { return bwt_ssm_variant_name((bwt_ssm_variant)v); }
static const char *decay_name(int v) { return v ? "all" : "matrices"; }
static const char *const loss_names[BWT_LOSS_COUNT] = {"ce", "mse", "policy-gradient"};
const char *bwt_loss_name(bwt_loss l) { return l >= 0 && l < BWT_LOSS_COUNT ? loss_names[l] : "?"; }
bwt_status bwt_loss_parse(const char *s, bwt_loss *l) {
  for (int i = 0; i < BWT_LOSS_COUNT; i++)
    if (strcmp(s, loss_names[i]) == 0) return *l = (bwt_loss)i, BWT_STATUS_OK;
  return bwt_fail(BWT_STATUS_ARG, "unknown loss '%s' (known: ce, mse, policy-gradient)", s);
}
static const char *loss_name(int v) { return bwt_loss_name((bwt_loss)v); }
#define ENUM_PARSE(fn, type, parse)                 \
  static bwt_status fn(const char *s, int *v) {     \
    type x = (type)0;                               \
    bwt_status st = parse(s, &x);                   \
    if (st == BWT_STATUS_OK) *v = (int)x;           \
    return st;                                      \
  }
ENUM_PARSE(arch_parse, bwt_arch, bwt_arch_parse)
ENUM_PARSE(norm_parse, bwt_norm, bwt_norm_parse)
ENUM_PARSE(positions_parse, bwt_positions, bwt_positions_parse)
ENUM_PARSE(init_parse, bwt_init, bwt_init_parse)
ENUM_PARSE(ssm_variant_parse, bwt_ssm_variant, bwt_ssm_variant_parse)
ENUM_PARSE(loss_parse, bwt_loss, bwt_loss_parse)
#undef ENUM_PARSE
static bwt_status decay_parse(const char *s, int *v) {
  if (strcmp(s, "matrices") == 0 || strcmp(s, "all") == 0) return *v = strcmp(s, "all") == 0, BWT_STATUS_OK;
  return bwt_fail(BWT_STATUS_ARG, "unknown decay '%s' (known: matrices, all)", s);
}
_Static_assert(sizeof(bwt_arch) == sizeof(int) && sizeof(bwt_norm) == sizeof(int) &&
                   sizeof(bwt_positions) == sizeof(int) && sizeof(bwt_init) == sizeof(int) && sizeof(bwt_loss) == sizeof(int),
               "ENUM rows are read and written as int");

/* Row makers: M_ model, T_ train. A range [lo, hi]; an open bound excludes its value. */
#define AT(sec, field) offsetof(bwt_run_config, sec.field)
#define ROW(sec, key, flag, type, field, def, flags, absent, help) \
  {#sec, key, flag, type, AT(sec, field), 0, def, 0, 0, 0, 0, flags, absent, help, NULL, NULL, NULL}
#define RANGED(sec, key, flag, type, field, def, lo, hi, lo_open, hi_open, flags, absent, help) \
  {#sec, key, flag, type, AT(sec, field), 0, def, lo, hi, lo_open, hi_open, BWT_SETTING_RANGE | (flags), absent, help, NULL, NULL, NULL}
#define ENUM(sec, key, flag, field, def, flags, absent, fn, bad, help) \
  {#sec, key, flag, BWT_SETTING_ENUM, AT(sec, field), 0, def, 0, 0, 0, 0, flags, absent, help, fn##_name, fn##_parse, bad}
#define T_INT(key, flag, field, def, lo, hi, help) RANGED(train, key, flag, BWT_SETTING_INT, field, def, lo, hi, 0, 0, 0, 0, help)
#define T_INT_NEW(key, flag, field, def, lo, hi, help) \
  RANGED(train, key, flag, BWT_SETTING_INT, field, def, lo, hi, 0, 0, BWT_SETTING_OPTIONAL, def, help)
#define T_DBL(key, flag, field, def, lo, hi, lo_open, hi_open, help) \
  RANGED(train, key, flag, BWT_SETTING_DOUBLE, field, def, lo, hi, lo_open, hi_open, 0, 0, help)
#define OPT BWT_SETTING_OPTIONAL
const bwt_setting bwt_settings[] = {
    /* model: the defaults are bwt train's (a small transformer that learns the V=20 bijection in
     * minutes); vocab, n_classes, max_T and input_dim come from the task. */
    ENUM(model, "arch", "arch", arch, BWT_ARCH_TRANSFORMER, 0, 0, arch, NULL,
         "transformer | mlp (context-free) | window_mlp | lstm | mamba"),
    ROW(model, "vocab", NULL, BWT_SETTING_INT, vocab, 0, 0, 0, "input tokens"),
    ROW(model, "n_classes", NULL, BWT_SETTING_INT, n_classes, 0, 0, 0, "readout size"),
    ROW(model, "max_T", NULL, BWT_SETTING_INT, max_T, 0, 0, 0, "learned positions"),
    /* Runs written before sinusoids existed have no "positions": they are learned. */
    ENUM(model, "positions", "positions", positions, BWT_POS_LEARNED, OPT | BWT_SETTING_BAD_TYPE, BWT_POS_LEARNED,
         positions, "must be \"learned\", \"sinusoidal\" or \"none\"",
         "learned | sinusoidal (fixed, any length) | none (any length; the causal mask lets a model count): the last two for evaluating longer sequences"),
    /* Runs written before continuous inputs existed have no "input_dim": they take tokens. */
    ROW(model, "input_dim", NULL, BWT_SETTING_INT, input_dim, 0, OPT, 0, "continuous input width"),
    ROW(model, "d_model", "d-model", BWT_SETTING_INT, d_model, 64, 0, 0, "model width"),
    ROW(model, "n_layers", "layers", BWT_SETTING_INT, n_layers, 2, 0, 0, "blocks"),
    ROW(model, "n_heads", "heads", BWT_SETTING_INT, n_heads, 4, 0, 0, "attention heads (transformer)"),
    ENUM(model, "norm", "norm", norm, BWT_NORM_RMS, 0, 0, norm, NULL,
         "rms | layer | auto (rms for transformer, layer for the baselines)"),
    ROW(model, "tied_head", "tied-head", BWT_SETTING_BOOL, tied_head, 0, 0, 0, "output head tied to the token embedding"),
    /* Runs written before these two existed have bwt's initialisation and attention biases. */
    ENUM(model, "init", "init", init, BWT_INIT_BWT, OPT, BWT_INIT_BWT, init, NULL,
         "bwt (N(0, 0.02), GPT-2's) | torch (PyTorch's defaults, as the reference scripts)"),
    ROW(model, "attn_bias", NULL, BWT_SETTING_BOOL, attn_bias, 1, OPT, 1, "transformer: Q, K, V, O projections with biases"),
    ROW(model, "window", "window", BWT_SETTING_INT, window, 0, 0, 0, "window_mlp: tokens seen (0 = whole sequence)"),
    /* Runs written before Mamba existed have none: 0 is the reference's default. */
    ROW(model, "ssm_state", "ssm-state", BWT_SETTING_INT, ssm_state, 0, OPT, 0, "mamba: state size per channel, d_state (0 = 16)"),
    ROW(model, "ssm_conv", "ssm-conv", BWT_SETTING_INT, ssm_conv, 0, OPT, 0, "mamba: causal convolution taps, d_conv (0 = 4)"),
    ROW(model, "ssm_expand", "ssm-expand", BWT_SETTING_INT, ssm_expand, 0, OPT, 0, "mamba: inner channels per model channel, expand (0 = 2)"),
    ENUM(model, "ssm_variant", "ssm-variant", ssm_variant, BWT_SSM_MAMBA, OPT, BWT_SSM_MAMBA, ssm_variant, NULL,
         "mamba: mamba (Gu & Dao's block) | simplified (the reference repository's clamped block, for its numbers)"),
    /* Runs written before the mixture of experts existed have a dense MLP (docs/moe.md). */
    ROW(model, "experts", "experts", BWT_SETTING_INT, experts, 0, OPT, 0,
        "transformer: experts per block's MLP, a mixture of experts (0 = the dense MLP, else 2..64)"),
    ROW(model, "expert_top_k", "expert-top-k", BWT_SETTING_INT, expert_top_k, 1, OPT, 1,
        "transformer with --experts: experts chosen per row, 1 (gate softmax(r)[e], Switch) or 2 (softmax over the two, Mixtral)"),
    ROW(model, "expert_hidden", "expert-hidden", BWT_SETTING_INT, expert_hidden, 0, OPT, 0,
        "transformer with --experts: each expert's hidden width (0 = 4·d_model/expert-top-k: the dense MLP's active parameters)"),
    RANGED(model, "moe_aux", "moe-aux", BWT_SETTING_DOUBLE, moe_aux, 0.01, 0, 1e3, 0, 0, OPT, 0.01,
           "transformer with --experts: weight of the load-balancing loss (Switch Transformer), added to the training loss"),

    /* train */
    T_INT("steps", "steps", steps, 6000, 1, 1e9, "optimisation steps"),
    T_INT("batch", "batch", batch, 64, 1, 1 << 20, "sequences per step"),
    T_DBL("lr", "lr", lr, 1e-3, 0, 10, 1, 0, "peak learning rate (AdamW)"),
    T_DBL("min_lr_frac", "min-lr-frac", min_lr_frac, 0.1, 0, 1, 0, 0, "cosine decays to this fraction of lr"),
    T_INT("warmup", "warmup", warmup, 300, 0, 1e9, "linear warmup steps"),
    T_DBL("weight_decay", "weight-decay", weight_decay, 0.1, 0, 1e3, 0, 0, "decoupled weight decay"),
    /* Absent before it existed: matrices only. */
    ENUM(train, "decay", "decay", decay_all, 0, OPT, 0, decay, "must be \"matrices\" or \"all\"",
         "matrices (2-D tensors) | all (norms and biases too, torch.optim.AdamW's way)"),
    T_DBL("beta1", "beta1", beta1, 0.9, 0, 1, 0, 1, "AdamW beta1"),
    T_DBL("beta2", "beta2", beta2, 0.999, 0, 1, 0, 1, "AdamW beta2"),
    T_DBL("eps", "eps", eps, 1e-8, 0, 1, 1, 0, "AdamW epsilon"),
    T_DBL("clip", "clip", clip, 1.0, 0, 1e12, 0, 0, "global gradient-norm clip (0 = off)"),
    ROW(train, "soft_targets", "soft-targets", BWT_SETTING_BOOL, soft_targets, 0, 0, 0,
        "train against the exact posterior instead of sampled targets"),
    /* Runs written before other losses existed trained with cross-entropy. */
    ENUM(train, "loss", "loss", loss, BWT_LOSS_CE, OPT, BWT_LOSS_CE, loss, "must be \"ce\", \"mse\" or \"policy-gradient\"",
         "ce (cross-entropy) | mse (squared error of the predicted distribution) | policy-gradient (REINFORCE on sampled answers, a sequence-level reward, the model's expected reward as baseline)"),
    /* Runs written before the horizon and the jitter existed have none. */
    T_INT_NEW("loss_horizon", "loss-horizon", loss_horizon, 0, 0, 1e9,
              "train only on the first N supervised positions (0 = all); evaluation uses all"),
    T_INT_NEW("position_jitter", "position-jitter", position_jitter, 0, 0, 1 << 20,
              "shift each training sequence's positions by a uniform 0..N (0 = off), so that longer sequences' positions are seen in training; evaluation never shifts; learned positions need --max-T >= length + N"),
    T_INT_NEW("position_jitter_from", "position-jitter-from", position_jitter_from, 0, 0, 1 << 20,
              "--position-jitter shifts positions from this one on; those before it (a fixed header: the HMM's 53 tokens) keep their place"),
    ROW(train, "seed", "seed", BWT_SETTING_U64, seed, 1, 0, 0, "seed of the weights and the training batches"),
    ROW(train, "eval_seed", "eval-seed", BWT_SETTING_U64, eval_seed, 12345, 0, 0, "seed of the held-out evaluation stream"),
    T_INT("eval_every", "eval-every", eval_every, 0, 0, 1e9, "evaluate every N steps (0 = at the end only)"),
    T_INT("eval_seqs", "eval-seqs", eval_seqs, 2000, 1, 1e8, "held-out sequences per evaluation"),
    T_INT("ckpt_every", "ckpt-every", ckpt_every, 500, 0, 1e9, "checkpoint every N steps (and at the end)"),
    /* Runs written before snapshots existed have none. */
    T_INT_NEW("snapshots", "snapshots", snapshots, 0, 0, 1000,
              "weights-only snapshots at N log-spaced steps (for bwt geometry --series)"),
    /* Runs written before the EM-like schedule existed have none (1 = off). */
    RANGED(train, "lr_v_mult", "lr-v-mult", BWT_SETTING_DOUBLE, lr_v_mult, 1.0, 0, 1e4, 1, 0, OPT, 1.0,
           "learning-rate multiplier of the attention value projections (Paper II's EM-like schedule: 10)"),
    T_INT("log_every", "log-every", log_every, 50, 1, 1e9, "log a metrics line every N steps"),
    T_INT("threads", "threads", threads, 0, 0, 1024,
          "threads (0 = OMP_NUM_THREADS or all cores); results are bit-identical for equal thread counts"),
    /* Runs that started from fresh weights have none. */
    {"train", "init_from", "init-from", BWT_SETTING_STRING, AT(train, init_from), sizeof ((bwt_train_config *)0)->init_from,
     0, 0, 0, 0, 0, OPT | BWT_SETTING_OMIT_EMPTY, 0,
     "start from this checkpoint's (or run directory's) weights: a curriculum's next stage; the model must match", NULL, NULL, NULL},
    {NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};
#undef AT
#undef ROW
#undef RANGED
#undef ENUM
#undef T_INT
#undef T_INT_NEW
#undef T_DBL
#undef OPT

void *bwt_setting_ptr(bwt_run_config *cfg, const bwt_setting *s) { return (char *)cfg + s->offset; }

const bwt_setting *bwt_setting_find(const char *section, const char *key) {
  for (const bwt_setting *s = bwt_settings; s->key; s++)
    if (strcmp(s->section, section) == 0 && strcmp(s->key, key) == 0) return s;
  return NULL;
}

/* Sets the setting to v (a number; STRING: ""). */
static void setting_set(bwt_run_config *cfg, const bwt_setting *s, double v) {
  void *p = bwt_setting_ptr(cfg, s);
  switch (s->type) {
    case BWT_SETTING_INT:
    case BWT_SETTING_BOOL:
    case BWT_SETTING_ENUM: *(int *)p = (int)v; break;
    case BWT_SETTING_DOUBLE: *(double *)p = v; break;
    case BWT_SETTING_U64: *(uint64_t *)p = (uint64_t)v; break;
    case BWT_SETTING_STRING: *(char *)p = '\0'; break;
  }
}

void bwt_run_config_default(bwt_run_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  bwt_task_config_default(&cfg->task, "bijection");
  for (const bwt_setting *s = bwt_settings; s->key; s++) setting_set(cfg, s, s->def);
}

void bwt_train_config_default(bwt_train_config *c) {
  bwt_run_config cfg;
  bwt_run_config_default(&cfg);
  *c = cfg.train;
}

/* The ranges of the rows, checked on every path in (flags, config files, checkpoint metadata):
 * every double must also be finite. */
bwt_status bwt_run_config_check(const bwt_run_config *cfg) {
  const bwt_train_config *t = &cfg->train;
  BWT_TRY(bwt_model_config_check(&cfg->model));
  for (const bwt_setting *r = bwt_settings; r->key; r++) {
    if (!(r->flags & BWT_SETTING_RANGE)) continue;
    const void *field = bwt_setting_ptr((bwt_run_config *)cfg, r);
    double v = r->type == BWT_SETTING_INT ? *(const int *)field : *(const double *)field;
    int ok = isfinite(v) && (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
    if (!ok)
      return bwt_fail(BWT_STATUS_ARG, "%s must be in %s%g, %g%s (got %g)", r->flag, r->lo_open ? "(" : "[", r->lo, r->hi,
                      r->hi_open ? ")" : "]", v);
  }
  if (t->lr * t->weight_decay >= 1)
    return bwt_fail(BWT_STATUS_ARG, "lr x weight-decay must be below 1, or decay flips the weights' sign (got %g x %g)", t->lr, t->weight_decay);
  if (t->soft_targets != 0 && t->soft_targets != 1) return bwt_fail(BWT_STATUS_ARG, "soft_targets must be true or false");
  if (t->loss < 0 || t->loss >= BWT_LOSS_COUNT) return bwt_fail(BWT_STATUS_ARG, "loss must be ce, mse or policy-gradient");
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

/* Adds row s of cfg to o; 0 if cJSON ran out of memory. */
static int add_setting(cJSON *o, const bwt_run_config *cfg, const bwt_setting *s) {
  const void *p = bwt_setting_ptr((bwt_run_config *)cfg, s);
  switch (s->type) {
    case BWT_SETTING_INT: return !!cJSON_AddNumberToObject(o, s->key, *(const int *)p);
    case BWT_SETTING_BOOL: return !!cJSON_AddBoolToObject(o, s->key, *(const int *)p);
    case BWT_SETTING_DOUBLE: return !!cJSON_AddNumberToObject(o, s->key, *(const double *)p);
    case BWT_SETTING_U64: return add_u64(o, s->key, *(const uint64_t *)p);
    case BWT_SETTING_STRING:
      if ((s->flags & BWT_SETTING_OMIT_EMPTY) && !*(const char *)p) return 1;
      return !!cJSON_AddStringToObject(o, s->key, (const char *)p);
    case BWT_SETTING_ENUM: return !!cJSON_AddStringToObject(o, s->key, s->name(*(const int *)p));
  }
  return 0;
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
  for (const bwt_setting *s = bwt_settings; s->key && ok; s++)
    ok &= add_setting(strcmp(s->section, "model") == 0 ? model : train, cfg, s);
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

/* Reads row s from o into cfg: a missing optional setting takes its `absent` value. */
static void read_setting(reader *r, const cJSON *o, bwt_run_config *cfg, const bwt_setting *s) {
  if ((s->flags & BWT_SETTING_OPTIONAL) && !cJSON_GetObjectItemCaseSensitive(o, s->key)) {
    setting_set(cfg, s, s->absent);
    return;
  }
  void *p = bwt_setting_ptr(cfg, s);
  switch (s->type) {
    case BWT_SETTING_INT: *(int *)p = get_int(r, o, s->section, s->key); break;
    case BWT_SETTING_BOOL: *(int *)p = get_bool(r, o, s->section, s->key); break;
    case BWT_SETTING_DOUBLE: *(double *)p = get_num(r, o, s->section, s->key); break;
    case BWT_SETTING_U64: *(uint64_t *)p = get_u64(r, o, s->section, s->key); break;
    case BWT_SETTING_STRING: {
      const char *v = get_str(r, o, s->section, s->key);
      if (strlen(v) >= s->size && r->status == BWT_STATUS_OK)
        r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s is too long", r->what, s->section, s->key);
      else
        memcpy(p, v, strlen(v) + 1);
      break;
    }
    case BWT_SETTING_ENUM: {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, s->key);
      if (r->status != BWT_STATUS_OK) break;
      if (v && !cJSON_IsString(v) && (s->flags & BWT_SETTING_BAD_TYPE)) {
        r->status = bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s %s", r->what, s->section, s->key, s->bad);
        break;
      }
      const char *name = get_str(r, o, s->section, s->key);
      if (r->status == BWT_STATUS_OK && s->parse(name, (int *)p) != BWT_STATUS_OK)
        r->status = s->bad ? bwt_fail(BWT_STATUS_FORMAT, "%s: config %s.%s %s", r->what, s->section, s->key, s->bad)
                           : BWT_STATUS_FORMAT;
      break;
    }
  }
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
    for (const bwt_setting *s = bwt_settings; s->key; s++)
      read_setting(&r, strcmp(s->section, "model") == 0 ? model : train, cfg, s);
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
