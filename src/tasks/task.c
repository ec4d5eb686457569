/* The generic task layer: config defaults, dispatch by name, batches, entropy. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/task.h"
#include "task_internal.h"

/* The one list of tasks: X(name) needs bwt_<name>_create (task.h) and <name>_defaults below. */
#define BWT_TASK_LIST(X) X(bijection) X(hmm) X(modular) X(recall) X(sticky)

static void bijection_defaults(bwt_task_config *cfg) {
  cfg->V = 20;
  cfg->L = 19;
  cfg->with_replacement = 0;
  cfg->query = 0;
}

static void hmm_defaults(bwt_task_config *cfg) {
  cfg->S = 5;
  cfg->O = 5;
  cfg->K = 20;
}

static void modular_defaults(bwt_task_config *cfg) {
  cfg->p = 17;
  cfg->length = 16;
  cfg->opaque = 0;
}

static void recall_defaults(bwt_task_config *cfg) {
  cfg->pairs = 64;
  cfg->queries = 3;
  cfg->fillers = 32;
  cfg->key_vocab = 256;
  cfg->value_vocab = 256;
}

static void sticky_defaults(bwt_task_config *cfg) { cfg->chain_len = 1999; }

const bwt_task_field bwt_task_fields[] = {
    {"V", "bijection", offsetof(bwt_task_config, V), 0,
     "V", "bijection: domain size (keys 0..V-1, values V..2V-1)"},
    {"L", "bijection", offsetof(bwt_task_config, L), 0,
     "L", "bijection: keys shown per sequence"},
    {"with_replacement", "bijection", offsetof(bwt_task_config, with_replacement), 1,
     "with-replacement", "bijection: keys drawn with replacement"},
    {"query", "bijection", offsetof(bwt_task_config, query), 1,
     "query", "bijection: paired layout with a trailing query key"},
    {"S", "hmm", offsetof(bwt_task_config, S), 0,
     "S", "hmm: hidden states (the readout's classes)"},
    {"O", "hmm", offsetof(bwt_task_config, O), 0,
     "O", "hmm: observation symbols"},
    {"K", "hmm", offsetof(bwt_task_config, K), 0,
     "K", "hmm: observations per sequence"},
    {"p", "modular", offsetof(bwt_task_config, p), 0,
     "p", "modular: the modulus"},
    {"length", "modular", offsetof(bwt_task_config, length), 0,
     "length", "modular: tokens per sequence"},
    {"opaque", "modular", offsetof(bwt_task_config, opaque), 1,
     "opaque", "modular: values relabelled per sequence, the relabelling shown first"},
    {"pairs", "recall", offsetof(bwt_task_config, pairs), 0,
     "pairs", "recall: key/value pairs shown"},
    {"queries", "recall", offsetof(bwt_task_config, queries), 0,
     "queries", "recall: stored keys queried"},
    {"fillers", "recall", offsetof(bwt_task_config, fillers), 0,
     "fillers", "recall: filler tokens before the queries"},
    {"key_vocab", "recall", offsetof(bwt_task_config, key_vocab), 0,
     "key-vocab", "recall: key tokens"},
    {"value_vocab", "recall", offsetof(bwt_task_config, value_vocab), 0,
     "value-vocab", "recall: value tokens"},
    {"chain_len", "sticky", offsetof(bwt_task_config, chain_len), 0,
     "chain-len", "sticky: positions per sequence"},
    {NULL, NULL, 0, 0, NULL, NULL},
};

int *bwt_task_field_int(bwt_task_config *cfg, const bwt_task_field *f) {
  return (int *)((char *)cfg + f->offset);
}

const char *bwt_task_config_describe(const bwt_task_config *cfg, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "%s", cfg->name);
  for (const bwt_task_field *f = bwt_task_fields; f->key && n < cap; f++) {
    if (strcmp(f->task, cfg->name) != 0) continue;
    int v = *bwt_task_field_int((bwt_task_config *)cfg, f);
    if (f->is_bool)
      n += (size_t)(v ? snprintf(buf + n, cap - n, " %s", f->key) : 0);
    else
      n += (size_t)snprintf(buf + n, cap - n, " %s=%d", f->key, v);
  }
  return buf;
}

#define TASK_NAME(n) #n,
const char *const bwt_task_names[] = {BWT_TASK_LIST(TASK_NAME) NULL};

typedef struct {
  const char *name;
  void (*defaults)(bwt_task_config *cfg);
  bwt_status (*create)(bwt_task **out, const bwt_task_config *cfg);
} task_entry;

#define TASK_ENTRY(n) {#n, n##_defaults, bwt_##n##_create},
static const task_entry task_table[] = {BWT_TASK_LIST(TASK_ENTRY)};
#define N_TASKS ((int)(sizeof task_table / sizeof task_table[0]))

/* "bijection, hmm, ..." into buf, for error messages. */
static const char *known_names(char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < N_TASKS; i++) {
    int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", task_table[i].name);
    if (w < 0 || (size_t)w >= cap - n) break;
    n += (size_t)w;
  }
  return buf;
}

/* The table row of a name, or NULL. `name` need not be NUL-terminated within `max` bytes. */
static const task_entry *find_task(const char *name, size_t max) {
  for (int i = 0; i < N_TASKS; i++) {
    size_t len = strlen(task_table[i].name);
    if (len < max && strncmp(name, task_table[i].name, max) == 0) return &task_table[i];
  }
  return NULL;
}

bwt_status bwt_task_config_default(bwt_task_config *cfg, const char *name) {
  if (!cfg || !name) return bwt_fail(BWT_STATUS_ARG, "bwt_task_config_default: NULL argument");
  memset(cfg, 0, sizeof *cfg);
  const task_entry *e = find_task(name, sizeof cfg->name);
  char known[256];
  if (!e) return bwt_fail(BWT_STATUS_ARG, "unknown task '%.64s' (known: %s)", name, known_names(known, sizeof known));
  snprintf(cfg->name, sizeof cfg->name, "%s", e->name);
  for (int i = 0; i < N_TASKS; i++) task_table[i].defaults(cfg); /* every task's fields */
  return BWT_STATUS_OK;
}

bwt_status bwt_task_create(bwt_task **out, const bwt_task_config *cfg) {
  if (!out || !cfg) return bwt_fail(BWT_STATUS_ARG, "bwt_task_create: NULL argument");
  *out = NULL;
  const task_entry *e = find_task(cfg->name, sizeof cfg->name);
  char known[256];
  if (!e)
    return bwt_fail(BWT_STATUS_ARG, "unknown task '%.*s' (known: %s)", (int)sizeof cfg->name, cfg->name,
                    known_names(known, sizeof known));
  BWT_TRY(e->create(out, cfg));
  bwt_task *t = *out;
  if (t->n_hyp == 0 && t->vocab > 0 && t->n_classes == t->vocab) t->hyp_lo = t->answer_lo, t->n_hyp = t->answer_hi - t->answer_lo;
  return BWT_STATUS_OK;
}

void bwt_task_free(bwt_task *task) {
  if (task && task->ops && task->ops->destroy) task->ops->destroy(task);
}

bwt_status bwt_task_sample(const bwt_task *task, uint64_t seed, bwt_batch *out) {
  return bwt_task_sample_at(task, seed, 0, out);
}

bwt_status bwt_task_sample_at(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out) {
  if (!task || !out) return bwt_fail(BWT_STATUS_ARG, "bwt_task_sample: NULL argument");
  if (out->B < 1 || out->T != task->seq_len || out->n_sup != task->n_sup ||
      out->n_classes != task->n_classes || out->input_dim != task->input_dim)
    return bwt_fail(BWT_STATUS_ARG,
                    "batch shape (B=%d, T=%d, n_sup=%d, K=%d, input_dim=%d) does not fit task %s "
                    "(T=%d, n_sup=%d, K=%d, input_dim=%d)",
                    out->B, out->T, out->n_sup, out->n_classes, out->input_dim, task->cfg.name,
                    task->seq_len, task->n_sup, task->n_classes, task->input_dim);
  if ((task->vocab > 0 ? !out->tokens : !out->inputs) || !out->sup_pos || !out->target || !out->posterior)
    return bwt_fail(BWT_STATUS_ARG, "batch for task %s is not allocated (use bwt_batch_alloc)", task->cfg.name);
  return task->ops->sample(task, seed, first, out);
}

/* a*b*c as size_t, or 0 if it overflows (all factors >= 0). */
static size_t mul3(size_t a, size_t b, size_t c) {
  if (b && a > SIZE_MAX / b) return 0;
  if (c && a * b > SIZE_MAX / c) return 0;
  return a * b * c;
}

bwt_status bwt_batch_alloc(bwt_batch *batch, const bwt_task *task, int B) {
  if (!batch || !task) return bwt_fail(BWT_STATUS_ARG, "bwt_batch_alloc: NULL argument");
  memset(batch, 0, sizeof *batch);
  if (B < 1) return bwt_fail(BWT_STATUS_ARG, "batch size must be >= 1 (got B=%d)", B);
  if (task->seq_len < 1 || task->n_sup < 1 || task->n_classes < 1 || (task->vocab > 0) == (task->input_dim > 0))
    return bwt_fail(BWT_STATUS_ARG, "task %s has an invalid shape (T=%d, n_sup=%d, K=%d, vocab=%d, input_dim=%d)",
                    task->cfg.name, task->seq_len, task->n_sup, task->n_classes, task->vocab, task->input_dim);
  size_t n_in = mul3((size_t)B, (size_t)task->seq_len, task->vocab > 0 ? 1 : (size_t)task->input_dim);
  size_t n_sup = mul3((size_t)B, (size_t)task->n_sup, 1);
  size_t n_post = mul3((size_t)B, (size_t)task->n_sup, (size_t)task->n_classes);
  if (!n_in || !n_sup || !n_post || n_post > SIZE_MAX / sizeof(double))
    return bwt_fail(BWT_STATUS_ARG, "batch of B=%d sequences of task %s is too large to address", B, task->cfg.name);
  batch->B = B;
  batch->T = task->seq_len;
  batch->n_sup = task->n_sup;
  batch->n_classes = task->n_classes;
  batch->input_dim = task->input_dim;
  if (task->vocab > 0)
    batch->tokens = bwt_calloc(n_in, sizeof *batch->tokens, "batch tokens (B,T)");
  else
    batch->inputs = bwt_calloc(n_in, sizeof *batch->inputs, "batch inputs (B,T,input_dim)");
  batch->sup_pos = bwt_calloc(n_sup, sizeof *batch->sup_pos, "batch positions (B,N)");
  batch->target = bwt_calloc(n_sup, sizeof *batch->target, "batch targets (B,N)");
  batch->posterior = bwt_calloc(n_post, sizeof *batch->posterior, "batch posteriors (B,N,K)");
  if ((!batch->tokens && !batch->inputs) || !batch->sup_pos || !batch->target || !batch->posterior) {
    bwt_batch_free(batch); /* the message of the failed allocation stays */
    return BWT_STATUS_NOMEM;
  }
  return BWT_STATUS_OK;
}

void bwt_batch_free(bwt_batch *batch) {
  if (!batch) return;
  free(batch->tokens);
  free(batch->inputs);
  free(batch->sup_pos);
  free(batch->target);
  free(batch->posterior);
  free(batch->pos_offset);
  batch->pos_offset = NULL;
  batch->tokens = NULL;
  batch->inputs = NULL;
  batch->sup_pos = NULL;
  batch->target = NULL;
  batch->posterior = NULL;
}

bwt_status task_sample_batch(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out,
                             size_t scratch_bytes, task_sample_fn fn) {
  int T = task->seq_len, N = task->n_sup, K = task->n_classes, D = task->input_dim;
  int failed = 0;
#pragma omp parallel
  {
    void *scratch = scratch_bytes ? bwt_malloc(scratch_bytes, NULL) : NULL;
    if (scratch_bytes && !scratch) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int b = 0; b < out->B; b++) {
      if (scratch_bytes && !scratch) continue;
      bwt_rng rng;
      bwt_rng_seed(&rng, seed, first + (uint64_t)b);
      task_sequence seq = {out->tokens ? out->tokens + (size_t)b * T : NULL,
                           out->inputs ? out->inputs + (size_t)b * T * D : NULL,
                           out->sup_pos + (size_t)b * N, out->target + (size_t)b * N,
                           out->posterior + (size_t)b * N * K};
      fn(task, &rng, scratch, &seq);
    }
    free(scratch);
  }
  if (failed) return bwt_fail(BWT_STATUS_NOMEM, "out of memory sampling the %s task", task->cfg.name);
  return BWT_STATUS_OK;
}

double bwt_entropy_bits(const double *p, int K) {
  double h = 0;
  for (int k = 0; k < K; k++)
    if (p[k] > 0) h -= p[k] * log2(p[k]);
  return h;
}
