/* Wind tunnels: tasks whose Bayes posterior is known exactly.
 *
 * A task samples a batch of sequences from a seed and gives, for every supervised position, the
 * position, a sampled target class and the exact posterior over the output classes given everything
 * to the left. Every sequence of a task has the same length T and the same number of supervised
 * positions n_sup, so a batch is a set of flat arrays.
 *
 * Inputs are either tokens (vocab > 0) or continuous vectors (input_dim > 0). The output classes are
 * the model's readout: for next-token tasks they are the vocabulary itself (n_classes == vocab, so a
 * tied head is possible); a task with its own readout (the HMM's S states) has n_classes != vocab.
 *
 * Shapes: B batch, T sequence length, N = n_sup supervised positions per sequence, K = n_classes. */
#ifndef BWT_TASK_H
#define BWT_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/status.h"

typedef struct {
  int B, T, n_sup, n_classes, input_dim;
  int32_t *tokens;   /* (B,T) input tokens; NULL for continuous-input tasks */
  float *inputs;     /* (B,T,input_dim) continuous inputs; NULL for token tasks */
  int32_t *sup_pos;  /* (B,N) position of each supervised row, increasing within a sequence */
  int32_t *target;   /* (B,N) sampled target class (the hard label) */
  double *posterior; /* (B,N,K) exact posterior; each row sums to 1 */
  int32_t *pos_offset; /* (B) sequence b's tokens from pos_offset_from on are embedded at positions
                          shifted by pos_offset[b] (NULL = none): the trainer's --position-jitter;
                          tasks never set it */
  int pos_offset_from;
} bwt_batch;

/* The configuration of every task, flat, so that it is one JSON object and one set of flags.
 * Fields a task does not use are ignored by it. */
typedef struct {
  char name[32];        /* "bijection" */
  int V;                /* bijection: domain size (keys 0..V-1, values V..2V-1) */
  int L;                /* bijection: number of keys shown */
  int with_replacement; /* bijection: keys drawn with replacement */
  int query;            /* bijection: paired layout with a trailing query token */
  int S;                /* hmm: hidden states (the readout's classes) */
  int O;                /* hmm: observation symbols */
  int K;                /* hmm: observations per sequence */
  int p;                /* modular: the modulus (values 0..p-1) */
  int length;           /* modular: tokens per sequence */
  int opaque;           /* modular: a fresh relabelling of the values per sequence, shown in a header */
  int pairs;            /* recall: key/value pairs shown (N) */
  int queries;          /* recall: stored keys queried (M) */
  int fillers;          /* recall: filler tokens between the pairs and the queries (F) */
  int key_vocab;        /* recall: key tokens */
  int value_vocab;      /* recall: value tokens */
  int chain_len;        /* sticky: positions per sequence (inputs shown, next symbols predicted) */
} bwt_task_config;

/* The fields of bwt_task_config each task uses, for config files, descriptions and bwt's flags:
 * every entry names its key, its task, where its int lives, its command-line flag and help; the
 * table ends with a NULL key. */
typedef struct {
  const char *key, *task;
  size_t offset; /* of an int in bwt_task_config */
  int is_bool;
  const char *flag; /* --flag */
  const char *help;
} bwt_task_field;
extern const bwt_task_field bwt_task_fields[];
int *bwt_task_field_int(bwt_task_config *cfg, const bwt_task_field *f);
/* "hmm S=5 O=5 K=20" (the name and the task's own fields) into buf; returns buf. */
const char *bwt_task_config_describe(const bwt_task_config *cfg, char *buf, size_t cap);

typedef struct bwt_task bwt_task;

typedef struct {
  /* Fills `out` (allocated by bwt_batch_alloc for this task and B) with B sequences; sequence b is
   * drawn from the rng stream (seed, first + b), so results depend on neither threads nor batching. */
  bwt_status (*sample)(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out);
  void (*destroy)(bwt_task *task);
} bwt_task_ops;

struct bwt_task {
  const bwt_task_ops *ops;
  bwt_task_config cfg;
  int vocab;        /* input token vocabulary; 0 for continuous inputs */
  int input_dim;    /* continuous input width; 0 for token inputs */
  int seq_len;      /* T */
  int n_sup;        /* supervised positions per sequence */
  int n_classes;    /* K: size of the model's readout */
  int answer_lo;    /* [answer_lo, answer_hi): the classes that can be answers (for the */
  int answer_hi;    /*   renormalised entropy variant); the whole range if all can */
  int hyp_lo;       /* [hyp_lo, hyp_lo + n_hyp): the input tokens that stand for the task's */
  int n_hyp;        /*   hypotheses (the key frames' tokens); n_hyp 0 if none. A task that sets
                         none gets its answer slice when its readout is its vocabulary */
  void *impl;
};

/* Sets cfg's name and every task's fields to their defaults (bijection: V=20, L=19, sep-vocab,
 * no query; hmm: S=5, O=5, K=20; modular: p=17, length 16, integer tokens; recall: 64 pairs,
 * 3 queries, 32 fillers, 256 keys and 256 values; sticky: 1999 positions); fails for an unknown
 * name. */
bwt_status bwt_task_config_default(bwt_task_config *cfg, const char *name);
/* Validates cfg and creates the task; impossible sizes fail with BWT_STATUS_ARG and a message. */
bwt_status bwt_task_create(bwt_task **out, const bwt_task_config *cfg);
void bwt_task_free(bwt_task *task);
/* Sequence b of the batch is sequence first + b of the stream `seed` (bwt_task_sample: first = 0).
 * A sequence is a function of (seed, index) alone: training batch s of a run is sequences 0..B-1 of
 * seed bwt_hash2(train.seed, s); held-out sequence j is sequence j of bwt_eval_stream_seed(eval_seed)
 * (bwt/eval.h); bwt sample --seed S writes sequences 0..n-1 of seed S. */
bwt_status bwt_task_sample(const bwt_task *task, uint64_t seed, bwt_batch *out);
bwt_status bwt_task_sample_at(const bwt_task *task, uint64_t seed, uint64_t first, bwt_batch *out);

/* Names of the available tasks, NULL-terminated. */
extern const char *const bwt_task_names[];

bwt_status bwt_batch_alloc(bwt_batch *batch, const bwt_task *task, int B);
void bwt_batch_free(bwt_batch *batch);

/* Entropy in bits of a distribution of K probabilities (0 log 0 = 0). */
double bwt_entropy_bits(const double *p, int K);

/* Task constructors, one per file in src/tasks/. */
bwt_status bwt_bijection_create(bwt_task **out, const bwt_task_config *cfg);
bwt_status bwt_hmm_create(bwt_task **out, const bwt_task_config *cfg);
bwt_status bwt_modular_create(bwt_task **out, const bwt_task_config *cfg);
bwt_status bwt_recall_create(bwt_task **out, const bwt_task_config *cfg);
bwt_status bwt_sticky_create(bwt_task **out, const bwt_task_config *cfg);

/* The sticky chain's fixed pieces (src/tasks/sticky.c): its 8×8 transition matrix, the 8×20
 * symbol embeddings μ, and the floor: the mean row entropy of the transitions, in bits. */
void bwt_sticky_transitions(double P[8][8]);
void bwt_sticky_embeddings(double mu[8][20]);
double bwt_sticky_floor_bits(void);

#endif
