/* The generic model: descriptor table, arenas, initialisation, dispatch to the architecture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"
#include "bwt/kernels.h"
#include "model_internal.h"

/* The architectures: one row each, with the operations behind bwt_model_*. */
typedef struct {
  bwt_arch_info info;
  const model_arch_ops *ops;
} arch_entry;

#define ATTENTION_CAPS (BWT_CAP_ATTENTION | BWT_CAP_CAPTURE | BWT_CAP_TRACE | BWT_CAP_CONTINUOUS_INPUT | BWT_CAP_CONTEXT)
static const arch_entry arch_table[] = {
    [BWT_ARCH_TRANSFORMER] = {{"transformer", ATTENTION_CAPS | BWT_CAP_EXPERTS, 2, BWT_NORM_RMS}, &transformer_ops},
    [BWT_ARCH_MLP] = {{"mlp", 0, 4, BWT_NORM_LAYER}, &mlp_ops},
    [BWT_ARCH_WINDOW_MLP] = {{"window_mlp", BWT_CAP_WINDOW | BWT_CAP_CONTEXT, 4, BWT_NORM_LAYER}, &mlp_ops},
    [BWT_ARCH_LSTM] = {{"lstm", BWT_CAP_RECURRENT | BWT_CAP_CONTINUOUS_INPUT | BWT_CAP_CONTEXT, 2, BWT_NORM_LAYER}, &lstm_ops},
    [BWT_ARCH_MAMBA] = {{"mamba", BWT_CAP_RECURRENT | BWT_CAP_SSM | BWT_CAP_CAPTURE | BWT_CAP_CONTINUOUS_INPUT | BWT_CAP_CONTEXT, 2, BWT_NORM_RMS}, &mamba_ops},
};
_Static_assert(sizeof arch_table / sizeof arch_table[0] == BWT_ARCH_COUNT, "one row per architecture");

static const char *const norm_names[] = {"rms", "layer"};
static const char *const positions_names[] = {"learned", "sinusoidal", "none"};
static const char *const init_names[] = {"bwt", "torch"};
static const char *const ssm_variant_names[] = {"mamba", "simplified"};
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))
_Static_assert(COUNT(norm_names) == BWT_NORM_LAYER + 1, "one name per norm");
_Static_assert(COUNT(positions_names) == BWT_POS_NONE + 1, "one name per position encoding");
_Static_assert(COUNT(init_names) == BWT_INIT_TORCH + 1, "one name per initialisation");
_Static_assert(COUNT(ssm_variant_names) == BWT_SSM_SIMPLIFIED + 1, "one name per Mamba variant");

/* Finds s among n names (name(i) gives the i-th); fails naming the known ones. */
static bwt_status parse_name(const char *s, int n, const char *(*name)(int), const char *what, int *out) {
  char known[256] = "";
  for (int i = 0; i < n; i++) {
    if (strcmp(s, name(i)) == 0) return *out = i, BWT_STATUS_OK;
    size_t len = strlen(known);
    snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", name(i));
  }
  return bwt_fail(BWT_STATUS_ARG, "unknown %s '%s' (known: %s)", what, s, known);
}

static const char *arch_at(int i) { return arch_table[i].info.name; }
static const char *norm_at(int i) { return norm_names[i]; }
static const char *positions_at(int i) { return positions_names[i]; }
static const char *init_at(int i) { return init_names[i]; }
static const char *ssm_variant_at(int i) { return ssm_variant_names[i]; }

const bwt_arch_info *bwt_arch_info_of(bwt_arch arch) {
  return (unsigned)arch < BWT_ARCH_COUNT ? &arch_table[arch].info : NULL;
}

int bwt_arch_has(bwt_arch arch, unsigned caps) {
  const bwt_arch_info *a = bwt_arch_info_of(arch);
  return a && (a->caps & caps) == caps;
}

const char *bwt_arch_list(unsigned caps, const char *sep, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < BWT_ARCH_COUNT; i++)
    if ((arch_table[i].info.caps & caps) == caps && len < cap)
      len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? sep : "", arch_table[i].info.name);
  return buf;
}

const char *bwt_arch_name(bwt_arch arch) { return arch_table[arch].info.name; }
const char *bwt_norm_name(bwt_norm norm) { return norm_names[norm]; }
const char *bwt_positions_name(bwt_positions p) { return positions_names[p]; }
const char *bwt_init_name(bwt_init init) { return init_names[init]; }
const char *bwt_ssm_variant_name(bwt_ssm_variant v) { return ssm_variant_names[v]; }

bwt_status bwt_arch_parse(const char *s, bwt_arch *arch) {
  int i;
  BWT_TRY(parse_name(s, BWT_ARCH_COUNT, arch_at, "architecture", &i));
  return *arch = (bwt_arch)i, BWT_STATUS_OK;
}

bwt_status bwt_norm_parse(const char *s, bwt_norm *norm) {
  int i;
  BWT_TRY(parse_name(s, COUNT(norm_names), norm_at, "norm", &i));
  return *norm = (bwt_norm)i, BWT_STATUS_OK;
}

bwt_status bwt_positions_parse(const char *s, bwt_positions *p) {
  int i;
  BWT_TRY(parse_name(s, COUNT(positions_names), positions_at, "positions", &i));
  return *p = (bwt_positions)i, BWT_STATUS_OK;
}

bwt_status bwt_init_parse(const char *s, bwt_init *init) {
  int i;
  BWT_TRY(parse_name(s, COUNT(init_names), init_at, "init", &i));
  return *init = (bwt_init)i, BWT_STATUS_OK;
}

bwt_status bwt_ssm_variant_parse(const char *s, bwt_ssm_variant *v) {
  int i;
  BWT_TRY(parse_name(s, COUNT(ssm_variant_names), ssm_variant_at, "Mamba variant", &i));
  return *v = (bwt_ssm_variant)i, BWT_STATUS_OK;
}

void bwt_model_config_default(bwt_model_config *cfg, bwt_arch arch, const bwt_task *task) {
  memset(cfg, 0, sizeof *cfg);
  cfg->arch = arch;
  cfg->vocab = task->vocab;
  cfg->input_dim = task->input_dim;
  cfg->n_classes = task->n_classes;
  cfg->max_T = task->seq_len;
  cfg->d_model = 64;
  cfg->n_layers = arch_table[arch].info.default_layers;
  cfg->n_heads = 4;
  cfg->norm = arch_table[arch].info.default_norm;
  cfg->tied_head = 0;
  cfg->window = task->seq_len;
  cfg->init = BWT_INIT_BWT;
  cfg->attn_bias = 1;
  cfg->expert_top_k = 1;
  cfg->moe_aux = 0.01;
}

bwt_status bwt_model_config_check(const bwt_model_config *c) {
  if ((unsigned)c->arch >= BWT_ARCH_COUNT) return bwt_fail(BWT_STATUS_ARG, "unknown architecture %d", (int)c->arch);
  if ((unsigned)c->positions > BWT_POS_NONE) return bwt_fail(BWT_STATUS_ARG, "unknown positions %d", (int)c->positions);
  if ((unsigned)c->norm > BWT_NORM_LAYER) return bwt_fail(BWT_STATUS_ARG, "unknown norm %d", (int)c->norm);
  if ((unsigned)c->init > BWT_INIT_TORCH) return bwt_fail(BWT_STATUS_ARG, "unknown init %d", (int)c->init);
  if ((unsigned)c->ssm_variant > BWT_SSM_SIMPLIFIED) return bwt_fail(BWT_STATUS_ARG, "unknown Mamba variant %d", (int)c->ssm_variant);
  if (c->input_dim > 0) {
    if (c->vocab != 0) return bwt_fail(BWT_STATUS_ARG, "model: continuous inputs (input_dim %d) take no vocabulary (got vocab %d)", c->input_dim, c->vocab);
    char archs[128];
    if (!bwt_arch_has(c->arch, BWT_CAP_CONTINUOUS_INPUT))
      return bwt_fail(BWT_STATUS_ARG, "model: continuous inputs need --arch %s (%s takes tokens)",
                      bwt_arch_list(BWT_CAP_CONTINUOUS_INPUT, " or ", archs, sizeof archs), bwt_arch_name(c->arch));
    if (c->tied_head) return bwt_fail(BWT_STATUS_ARG, "model: a tied head needs token inputs");
  } else if (c->vocab < 1) {
    return bwt_fail(BWT_STATUS_ARG, "model: vocab must be >= 1 (got %d)", c->vocab);
  }
  if (c->vocab > (1 << 24) || c->input_dim > (1 << 16) || c->input_dim < 0)
    return bwt_fail(BWT_STATUS_ARG, "model: vocab must be at most 2^24 and input_dim in 0..2^16 (got %d, %d)", c->vocab, c->input_dim);
  if (c->n_classes < 2 || c->n_classes > (1 << 24)) return bwt_fail(BWT_STATUS_ARG, "model: n_classes must be in 2..2^24 (got %d)", c->n_classes);
  if (c->max_T < 1 || c->max_T > (1 << 20)) return bwt_fail(BWT_STATUS_ARG, "model: max_T must be in 1..2^20 (got %d)", c->max_T);
  if ((c->tied_head != 0 && c->tied_head != 1) || (c->attn_bias != 0 && c->attn_bias != 1))
    return bwt_fail(BWT_STATUS_ARG, "model: tied_head and attn_bias must be true or false");
  if (c->d_model < 1 || c->d_model > 16384) return bwt_fail(BWT_STATUS_ARG, "model: d_model must be in 1..16384 (got %d)", c->d_model);
  if (c->n_layers < 1 || c->n_layers > 1000) return bwt_fail(BWT_STATUS_ARG, "model: layers must be in 1..1000 (got %d)", c->n_layers);
  if (bwt_arch_has(c->arch, BWT_CAP_ATTENTION)) {
    if (c->n_heads < 1 || c->n_heads > c->d_model) return bwt_fail(BWT_STATUS_ARG, "model: heads must be in 1..d_model (got %d)", c->n_heads);
    if (c->d_model % c->n_heads) return bwt_fail(BWT_STATUS_ARG, "model: heads (%d) must divide d_model (%d)", c->n_heads, c->d_model);
  }
  if (c->tied_head && c->n_classes != c->vocab)
    return bwt_fail(BWT_STATUS_ARG, "model: a tied head needs n_classes == vocab (%d != %d)", c->n_classes, c->vocab);
  if (bwt_arch_has(c->arch, BWT_CAP_SSM) && (c->ssm_state < 0 || c->ssm_state > 1024 || c->ssm_conv < 0 || c->ssm_conv > 64 ||
                                              c->ssm_expand < 0 || c->ssm_expand > 16))
    return bwt_fail(BWT_STATUS_ARG, "model: ssm_state must be in 0..1024, ssm_conv in 0..64 and ssm_expand in 0..16 (0: the default; got %d, %d, %d)",
                    c->ssm_state, c->ssm_conv, c->ssm_expand);
  if (c->experts != 0) {
    char archs[128];
    if (!bwt_arch_has(c->arch, BWT_CAP_EXPERTS))
      return bwt_fail(BWT_STATUS_ARG, "model: experts need --arch %s (%s has no MLP of experts)",
                      bwt_arch_list(BWT_CAP_EXPERTS, " or ", archs, sizeof archs), bwt_arch_name(c->arch));
    if (c->experts < 2 || c->experts > MOE_MAX_EXPERTS)
      return bwt_fail(BWT_STATUS_ARG, "model: experts must be 0 (the dense MLP) or in 2..%d (got %d)", MOE_MAX_EXPERTS, c->experts);
    if (c->expert_top_k < 1 || c->expert_top_k > 2 || c->expert_top_k > c->experts)
      return bwt_fail(BWT_STATUS_ARG, "model: expert-top-k must be 1 or 2, at most experts (got %d of %d)", c->expert_top_k, c->experts);
    if (c->expert_hidden < 0 || c->expert_hidden > (1 << 20))
      return bwt_fail(BWT_STATUS_ARG, "model: expert-hidden must be in 0..2^20 (0: 4·d_model/expert-top-k; got %d)", c->expert_hidden);
    if (!(c->moe_aux >= 0 && c->moe_aux <= 1e3))
      return bwt_fail(BWT_STATUS_ARG, "model: moe-aux must be in [0, 1000] (got %g)", c->moe_aux);
  }
  if (bwt_arch_has(c->arch, BWT_CAP_WINDOW) && (c->window < 1 || c->window > c->max_T))
    return bwt_fail(BWT_STATUS_ARG, "model: window must be in 1..%d (got %d)", c->max_T, c->window);
  return BWT_STATUS_OK;
}

size_t model_add_tensor(bwt_model *m, const char *name, tensor_id id, int ndim, int d0, int d1, tensor_init init) {
  model_impl *impl = m->impl;
  if (m->n_tensors == impl->cap) {
    /* The table grows during build only; a failed grow is reported by bwt_model_create. */
    int cap = impl->cap ? 2 * impl->cap : 64;
    bwt_tensor_desc *t = bwt_realloc(m->tensors, sizeof *t * cap, NULL);
    if (t) m->tensors = t;
    tensor_start *ini = bwt_realloc(impl->init, sizeof *ini * cap, NULL);
    if (ini) impl->init = ini;
    if (!t || !ini) return impl->table_oom = 1, 0;
    impl->cap = cap;
  }
  bwt_tensor_desc *t = &m->tensors[m->n_tensors];
  memset(t, 0, sizeof *t);
  if (strlen(name) >= sizeof t->name) impl->table_oom = 1; /* reported as a failed build */
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  t->shape[0] = d0;
  t->shape[1] = ndim == 2 ? d1 : 0;
  t->size = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
  t->offset = m->n_params;
  t->decay = ndim == 2 && init != INIT_SSM_A_LOG; /* Mamba's A_log is not decayed (the reference's _no_weight_decay) */
  t->role = id.role;
  t->layer = id.layer;
  t->bias = ndim == 1 && init != INIT_ONES && init != INIT_SSM_A_LOG_SHARED;
  impl->init[m->n_tensors++] = (tensor_start){init, ndim == 2 ? d1 : 0};
  m->n_params += t->size;
  return t->offset;
}

size_t model_add_bias(bwt_model *m, const char *name, tensor_id id, int n, int fan_in) {
  size_t off = model_add_tensor(m, name, id, 1, n, 0, INIT_BIAS);
  model_impl *impl = m->impl;
  if (!impl->table_oom) impl->init[m->n_tensors - 1].fan_in = fan_in;
  return off;
}

size_t model_declare_positions(bwt_model *m) {
  if (m->cfg.positions != BWT_POS_LEARNED) return 0;
  return model_add_tensor(m, "pos_emb", TENSOR_ID(BWT_ROLE_POSITION, -1), 2, m->cfg.max_T, m->cfg.d_model, INIT_EMBEDDING);
}

const float *model_positions(bwt_model *m, size_t wpe, int T) {
  if (m->cfg.positions == BWT_POS_LEARNED) return m->params + wpe;
  model_impl *impl = m->impl;
  int C = m->cfg.d_model;
  if (T > impl->sin_rows) {
    float *table = bwt_buffer_alloc((size_t)T * C, "position table");
    if (!table) return NULL;
    /* PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(the same angle), in double; zeros for none. */
    for (int t = 0; t < T && m->cfg.positions == BWT_POS_SINUSOIDAL; t++)
      for (int i = 0; i < C; i++) {
        double angle = t / pow(10000.0, (double)(i / 2 * 2) / C);
        table[(size_t)t * C + i] = (float)(i % 2 ? cos(angle) : sin(angle));
      }
    bwt_buffer_free(impl->sinusoids);
    impl->sinusoids = table;
    impl->sin_rows = T;
  }
  return impl->sinusoids;
}

float *model_position_grads(bwt_model *m, size_t wpe) {
  return m->cfg.positions == BWT_POS_LEARNED ? m->grads + wpe : NULL;
}

bwt_status model_reserve(float **buf, size_t *cap, size_t n, const char *what) {
  if (n <= *cap) return BWT_STATUS_OK;
  bwt_buffer_free(*buf);
  *cap = 0;
  *buf = bwt_buffer_alloc(n, what);
  if (!*buf) return BWT_STATUS_NOMEM;
  *cap = n;
  return BWT_STATUS_OK;
}

bwt_status model_reserve_index(int32_t **idx, size_t *cap, size_t n) {
  if (n <= *cap) return BWT_STATUS_OK;
  free(*idx);
  *cap = 0;
  *idx = bwt_calloc(n, sizeof(int32_t), "row indices");
  if (!*idx) return BWT_STATUS_NOMEM;
  *cap = n;
  return BWT_STATUS_OK;
}

/* How a tensor of each kind starts under each scheme: N(0, std), U(−bound, bound) or a constant. */
typedef enum { START_CONSTANT, START_NORMAL, START_UNIFORM, START_A_LOG, START_A_LOG_SHARED, START_DT_BIAS } start_dist;
typedef struct {
  start_dist dist;
  float value; /* the constant, std or bound */
} start_rule;

/* bwt: GPT-2's scheme (N(0, 0.02), residual writers scaled by 1/√(2·n_layers), zero biases).
 * torch: PyTorch's module defaults, as the reference scripts leave them (nn.Embedding N(0, 1),
 * nn.Linear weights and biases U(±1/√fan_in)). */
static start_rule start_rule_for(const bwt_model *m, const tensor_start *ts) {
  float resid = 0.02f / sqrtf(2.0f * (float)m->cfg.n_layers), fan = ts->fan_in > 0 ? 1.0f / sqrtf((float)ts->fan_in) : 0;
  int torch = m->cfg.init == BWT_INIT_TORCH;
  switch (ts->kind) {
    case INIT_ZEROS: return (start_rule){START_CONSTANT, 0};
    case INIT_ONES: return (start_rule){START_CONSTANT, 1};
    case INIT_EMBEDDING: return torch ? (start_rule){START_NORMAL, 1} : (start_rule){START_NORMAL, 0.02f};
    case INIT_WEIGHT: return torch ? (start_rule){START_UNIFORM, fan} : (start_rule){START_NORMAL, 0.02f};
    case INIT_WEIGHT_RESIDUAL: return torch ? (start_rule){START_UNIFORM, fan} : (start_rule){START_NORMAL, resid};
    case INIT_BIAS: return torch ? (start_rule){START_UNIFORM, fan} : (start_rule){START_CONSTANT, 0};
    case INIT_UNIFORM_HIDDEN: return (start_rule){START_UNIFORM, 1.0f / sqrtf((float)m->cfg.d_model)};
    case INIT_SSM_A_LOG: return (start_rule){START_A_LOG, 0};
    case INIT_SSM_DT_BIAS: return (start_rule){START_DT_BIAS, 0};
    case INIT_SSM_A_LOG_SHARED: return (start_rule){START_A_LOG_SHARED, 0};
    case INIT_SSM_DT_WEIGHT_SIMPLIFIED: return (start_rule){START_UNIFORM, 0.01f};
    case INIT_SSM_DT_BIAS_SIMPLIFIED: return (start_rule){START_CONSTANT, 0.1f};
  }
  return (start_rule){START_CONSTANT, 0};
}

static void init_weights(bwt_model *m, uint64_t seed) {
  model_impl *impl = m->impl;
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *t = &m->tensors[i];
    start_rule r = start_rule_for(m, &impl->init[i]);
    float *w = m->params + t->offset, v = r.value;
    bwt_rng rng;
    bwt_rng_seed(&rng, seed, (uint64_t)i); /* one stream per tensor: adding a tensor moves no other */
    for (size_t j = 0; j < t->size; j++) {
      switch (r.dist) {
        case START_CONSTANT: w[j] = v; break;
        case START_NORMAL: w[j] = v * (float)bwt_rng_normal(&rng); break;
        case START_UNIFORM: w[j] = v * (float)(2.0 * bwt_rng_uniform(&rng) - 1.0); break;
        case START_A_LOG: w[j] = (float)log(1.0 + (double)(j % (size_t)t->shape[1])); break;
        case START_A_LOG_SHARED: w[j] = (float)log(0.1 * (double)(j + 1)); break; /* torch.log(0.1·arange(1, N+1)) */
        case START_DT_BIAS: { /* Mamba's: Δ = exp(U(log 0.001, log 0.1)) ≥ 1e-4, stored as softplus⁻¹(Δ) */
          double dt = fmax(exp(log(0.001) + bwt_rng_uniform(&rng) * (log(0.1) - log(0.001))), 1e-4);
          w[j] = (float)(dt + log(-expm1(-dt)));
          break;
        }
      }
    }
  }
}

/* The model with its tensor table built but no arenas. */
static bwt_status build_table(bwt_model **out, const bwt_model_config *cfg) {
  *out = NULL;
  BWT_TRY(bwt_model_config_check(cfg));
  bwt_model *m = bwt_calloc(1, sizeof *m, "model");
  model_impl *impl = bwt_calloc(1, sizeof *impl, "model");
  if (!m || !impl) return free(m), free(impl), BWT_STATUS_NOMEM;
  m->cfg = *cfg;
  m->impl = impl;
  impl->ops = arch_table[cfg->arch].ops;
  bwt_status s = impl->ops->build(m);
  if (s == BWT_STATUS_OK && impl->table_oom) s = bwt_fail(BWT_STATUS_NOMEM, "cannot build the tensor table (out of memory, or a name over %d characters)", BWT_TENSOR_NAME_MAX - 1);
  if (s != BWT_STATUS_OK) {
    bwt_model_free(m);
    return s;
  }
  *out = m;
  return BWT_STATUS_OK;
}

bwt_status bwt_model_count_params(const bwt_model_config *cfg, size_t *n_params) {
  bwt_model *m = NULL;
  BWT_TRY(build_table(&m, cfg));
  *n_params = m->n_params;
  bwt_model_free(m);
  return BWT_STATUS_OK;
}

bwt_status bwt_model_create(bwt_model **out, const bwt_model_config *cfg, uint64_t seed) {
  bwt_model *m = NULL;
  BWT_TRY(build_table(&m, cfg));
  m->params = bwt_buffer_alloc(m->n_params, "parameters");
  m->grads = bwt_buffer_alloc(m->n_params, "gradients");
  if (!m->params || !m->grads) {
    bwt_model_free(m);
    return BWT_STATUS_NOMEM;
  }
  init_weights(m, seed);
  *out = m;
  return BWT_STATUS_OK;
}

void bwt_model_free(bwt_model *m) {
  if (!m) return;
  model_impl *impl = m->impl;
  if (impl) {
    if (impl->ops && impl->arch) impl->ops->destroy(m);
    free(impl->init);
    bwt_buffer_free(impl->sinusoids);
    free(impl);
  }
  free(m->tensors);
  bwt_buffer_free(m->params);
  bwt_buffer_free(m->grads);
  free(m);
}

bwt_status bwt_model_check_task(const bwt_model *m, const bwt_task *task) {
  const bwt_model_config *c = &m->cfg;
  if (task->input_dim != c->input_dim)
    return bwt_fail(BWT_STATUS_ARG, "model: task '%s' has %s, the model takes %s", task->cfg.name,
                    task->input_dim ? "continuous inputs" : "tokens", c->input_dim ? "continuous inputs" : "tokens");
  if (task->vocab > c->vocab) return bwt_fail(BWT_STATUS_ARG, "model: task vocab %d exceeds the model's %d", task->vocab, c->vocab);
  if (task->n_classes != c->n_classes) return bwt_fail(BWT_STATUS_ARG, "model: task has %d output classes, the model %d", task->n_classes, c->n_classes);
  if (c->positions == BWT_POS_LEARNED && task->seq_len > c->max_T)
    return bwt_fail(BWT_STATUS_ARG, "model: task sequences have length %d, but the model has learned positions for %d (train with --max-T, or --positions sinusoidal)", task->seq_len, c->max_T);
  return BWT_STATUS_OK;
}

static bwt_status check_batch(const bwt_model *m, const bwt_batch *batch) {
  if (m->cfg.input_dim > 0) {
    if (!batch->inputs || batch->input_dim != m->cfg.input_dim)
      return bwt_fail(BWT_STATUS_ARG, "model: batch has no inputs of width %d", m->cfg.input_dim);
  } else if (!batch->tokens) {
    return bwt_fail(BWT_STATUS_ARG, "model: batch has no tokens");
  }
  if (m->cfg.positions == BWT_POS_LEARNED && batch->T > m->cfg.max_T)
    return bwt_fail(BWT_STATUS_ARG, "model: sequences of length %d, but the model has learned positions for %d (train with --max-T, or --positions sinusoidal)", batch->T, m->cfg.max_T);
  if (batch->pos_offset && batch->pos_offset_from < 0)
    return bwt_fail(BWT_STATUS_ARG, "model: positions shifted from %d, which is negative", batch->pos_offset_from);
  for (int b = 0; batch->pos_offset && b < batch->B; b++) {
    int off = batch->pos_offset[b];
    if (off < 0 || off > (1 << 20))
      return bwt_fail(BWT_STATUS_ARG, "model: position offset %d of sequence %d is outside 0..2^20", off, b);
    if (m->cfg.positions == BWT_POS_LEARNED && off + batch->T > m->cfg.max_T)
      return bwt_fail(BWT_STATUS_ARG, "model: sequence %d shifted by %d needs positions up to %d, but the model has learned positions for %d (train with --max-T)", b, off, off + batch->T - 1, m->cfg.max_T);
  }
  if (batch->n_classes != m->cfg.n_classes) return bwt_fail(BWT_STATUS_ARG, "model: batch has %d classes, the model %d", batch->n_classes, m->cfg.n_classes);
  size_t n = m->cfg.input_dim > 0 ? 0 : (size_t)batch->B * batch->T;
  for (size_t i = 0; i < n; i++)
    if (batch->tokens[i] < 0 || batch->tokens[i] >= m->cfg.vocab)
      return bwt_fail(BWT_STATUS_ARG, "model: token %d at index %zu is outside the vocabulary 0..%d", batch->tokens[i], i, m->cfg.vocab - 1);
  return BWT_STATUS_OK;
}

bwt_status bwt_model_forward_with(bwt_model *m, const bwt_batch *batch, const bwt_forward_options *opt,
                                  const float **logits) {
  BWT_TRY(check_batch(m, batch));
  model_impl *impl = m->impl;
  bwt_forward_options o = opt ? *opt : (bwt_forward_options){NULL, NULL, NULL, NULL};
  if ((o.head_mask || o.skip_attn || o.skip_mlp) && !bwt_model_has(m, BWT_CAP_ATTENTION))
    return bwt_fail(BWT_STATUS_ARG, "head and branch ablations need a transformer (this model is %s)", bwt_arch_name(m->cfg.arch));
  if (o.skip_block && !bwt_model_has(m, BWT_CAP_ATTENTION) && !bwt_model_has(m, BWT_CAP_SSM))
    return bwt_fail(BWT_STATUS_ARG, "block ablations need a transformer or Mamba (this model is %s)", bwt_arch_name(m->cfg.arch));
  impl->fwd = o;
  impl->aux_loss = 0;
  return impl->ops->forward(m, batch, logits);
}

bwt_status bwt_model_forward(bwt_model *m, const bwt_batch *batch, const float **logits) {
  return bwt_model_forward_with(m, batch, NULL, logits);
}

double bwt_model_aux_loss(const bwt_model *m) { return ((const model_impl *)m->impl)->aux_loss; }

bwt_status bwt_model_backward(bwt_model *m, const bwt_batch *batch, const float *dlogits) {
  return ((model_impl *)m->impl)->ops->backward(m, batch, dlogits, NULL);
}

void bwt_model_zero_grad(bwt_model *m) { bwt_zero(m->grads, m->n_params); }

const bwt_tensor_desc *bwt_model_find_tensor(const bwt_model *m, const char *name) {
  for (int i = 0; i < m->n_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}

const bwt_tensor_desc *bwt_model_tensor(const bwt_model *m, bwt_tensor_role role, int layer, int bias) {
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *t = &m->tensors[i];
    if (t->role == role && t->layer == layer && t->bias == !!bias) return t;
  }
  return NULL;
}

float *bwt_model_params_of(const bwt_model *m, const bwt_tensor_desc *t) { return t ? m->params + t->offset : NULL; }

static const char *const role_names[] = {
    [BWT_ROLE_TOKEN_EMBEDDING] = "token_embedding", [BWT_ROLE_INPUT_PROJ] = "input_proj",
    [BWT_ROLE_POSITION] = "position",               [BWT_ROLE_WINDOW_PROJ] = "window_proj",
    [BWT_ROLE_ATTN_NORM] = "attn_norm",             [BWT_ROLE_ATTN_Q] = "attn_q",
    [BWT_ROLE_ATTN_K] = "attn_k",                   [BWT_ROLE_ATTN_V] = "attn_v",
    [BWT_ROLE_ATTN_O] = "attn_o",                   [BWT_ROLE_MLP_NORM] = "mlp_norm",
    [BWT_ROLE_MLP_IN] = "mlp_in",                   [BWT_ROLE_MLP_OUT] = "mlp_out",
    [BWT_ROLE_RECURRENT_IN] = "recurrent_in",       [BWT_ROLE_RECURRENT_HIDDEN] = "recurrent_hidden",
    [BWT_ROLE_SSM_NORM] = "ssm_norm",               [BWT_ROLE_SSM_IN] = "ssm_in",
    [BWT_ROLE_SSM_CONV] = "ssm_conv",               [BWT_ROLE_SSM_X] = "ssm_x",
    [BWT_ROLE_SSM_DT] = "ssm_dt",                   [BWT_ROLE_SSM_A] = "ssm_a",
    [BWT_ROLE_SSM_D] = "ssm_d",                     [BWT_ROLE_SSM_OUT] = "ssm_out",
    [BWT_ROLE_FINAL_NORM] = "final_norm",           [BWT_ROLE_HEAD] = "head",
    [BWT_ROLE_MLP_ROUTER] = "mlp_router",
};
_Static_assert(COUNT(role_names) == BWT_ROLE_COUNT, "one name per role");

const char *bwt_tensor_role_name(bwt_tensor_role role) { return (unsigned)role < BWT_ROLE_COUNT ? role_names[role] : "unknown"; }
