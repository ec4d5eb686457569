/* Training (SPEC.md §3): AdamW, linear warmup then cosine decay, global-norm clipping, a fresh
 * seeded batch every step, hard- or soft-target cross-entropy; run directories that checkpoint
 * atomically and resume bit-exactly.
 *
 * The batch of step s is drawn from seed bwt_hash2(train.seed, s), so a resumed run sees exactly
 * the batches the uninterrupted run would have seen; no generator state needs saving. */
#ifndef BWT_TRAIN_H
#define BWT_TRAIN_H

#include <stdint.h>

#include "bwt/eval.h"
#include "bwt/model.h"
#include "bwt/task.h"

/* The training objective (bwt train --loss). */
typedef enum {
  BWT_LOSS_CE,  /* cross-entropy against the sampled (or, soft, the exact) target */
  BWT_LOSS_MSE, /* squared error between the predicted distribution and the one-hot (or soft) target */
  BWT_LOSS_PG,  /* REINFORCE: an answer sampled at each supervised position, rewarded 1 when right (a
                   soft target: its exact probability); the sequence's mean reward against the model's
                   own expected mean reward (the baseline) weights the log-probabilities of its answers */
  BWT_LOSS_COUNT
} bwt_loss;
const char *bwt_loss_name(bwt_loss l);
bwt_status bwt_loss_parse(const char *s, bwt_loss *l);

typedef struct {
  int steps;           /* total optimisation steps */
  int batch;           /* sequences per step */
  double lr;           /* peak learning rate */
  double lr_v_mult;    /* the attention value projections (W_V, its bias) learn at lr_v_mult · lr: the
                          EM-like schedule of Paper II (1 = off) */
  double min_lr_frac;  /* the cosine decays to min_lr_frac · lr at the last step */
  int warmup;          /* linear warmup steps (from lr/warmup at step 1) */
  double weight_decay; /* decoupled, on 2-D tensors only (embeddings, projections, head) unless decay_all */
  int decay_all;       /* weight decay on every tensor, norms and biases too (torch.optim.AdamW's default) */
  double beta1, beta2, eps;
  double clip;         /* global gradient-norm clip; 0 = off */
  int soft_targets;    /* the exact posterior as the target instead of the sampled token */
  int loss;            /* bwt_loss: the objective (the reported loss: cross-entropy, squared error, or
                          for policy gradient the expected error rate 1 − Σ p·y) */
  int loss_horizon;    /* train only on the first this many supervised positions (0 = all); */
                       /* evaluation always uses every position */
  int position_jitter; /* each training sequence is embedded at positions shifted by a uniform
                          0..position_jitter drawn from its batch's seed (0 = off), so that a model
                          trained on short sequences has seen the positions of longer ones;
                          evaluation never shifts */
  int position_jitter_from; /* the first position shifted: those before it (a task's fixed header,
                               the HMM's 53 tokens) keep their place */
  uint64_t seed;       /* weights and training batches */
  uint64_t eval_seed;  /* the held-out evaluation stream */
  int eval_every;      /* evaluate every this many steps (0 = only at the end) */
  int eval_seqs;       /* held-out sequences per evaluation */
  int ckpt_every;      /* checkpoint every this many steps (0 = only at the end) */
  int snapshots;       /* weights-only snapshots on a log-spaced schedule, snapshots/step_NNNNNNN.safetensors
                          (0 = none; see bwt_snapshot_due) */
  int log_every;       /* metrics.jsonl / progress line every this many steps */
  int threads;         /* OpenMP and OpenBLAS threads; 0 = leave as the environment says */
  char init_from[512]; /* a checkpoint whose weights the run starts from instead of fresh ones (a
                          curriculum's next stage, a fine-tune): its model must have the same tensors;
                          the optimiser state and schedule start afresh. "" = fresh weights */
} bwt_train_config;

/* A whole run: what config.json holds. */
typedef struct {
  bwt_task_config task;
  bwt_model_config model; /* vocab, n_classes and max_T come from the task */
  bwt_train_config train;
} bwt_run_config;

/* Settings as data: one row per setting of config.json's "model" and "train" sections, from which
 * the defaults, the range checks, config.json in both directions, and bwt train's flags and --help
 * are generated (the "task" section is bwt_task_fields). Adding a setting is one row here (plus
 * its field and its use). Rows are in config.json's order. */
typedef enum {
  BWT_SETTING_INT,    /* int */
  BWT_SETTING_BOOL,   /* int 0/1: JSON true/false, a flag without a value */
  BWT_SETTING_DOUBLE, /* double (finite) */
  BWT_SETTING_U64,    /* uint64_t: a JSON decimal string (a double cannot hold 64 bits) */
  BWT_SETTING_STRING, /* char[size] */
  BWT_SETTING_ENUM,   /* an int-sized enum, by name in JSON and on the command line */
} bwt_setting_type;

enum {
  BWT_SETTING_OPTIONAL = 1,   /* may be absent (files written before it existed): then `absent` */
  BWT_SETTING_RANGE = 2,      /* checked against lo..hi (lo_open, hi_open exclude the bound) */
  BWT_SETTING_OMIT_EMPTY = 4, /* a STRING written only when not "" */
  BWT_SETTING_BAD_TYPE = 8,   /* ENUM: `bad` also covers a value that is not a string */
};

typedef struct {
  const char *section; /* "model" | "train" */
  const char *key;     /* in config.json */
  const char *flag;    /* bwt train --flag; NULL = none (derived from the task, or a flag of its own) */
  bwt_setting_type type;
  size_t offset;       /* in bwt_run_config */
  size_t size;         /* STRING: capacity, with its NUL */
  double def;          /* default (ENUM: the value; STRING: "") */
  double lo, hi;       /* with BWT_SETTING_RANGE */
  int lo_open, hi_open;
  unsigned flags;
  double absent;       /* with BWT_SETTING_OPTIONAL: the value of a file without it */
  const char *help;    /* --help text */
  const char *(*name)(int v);                 /* ENUM: value -> name */
  bwt_status (*parse)(const char *s, int *v); /* ENUM: name -> value, or a message */
  const char *bad;     /* ENUM: config.json's message for a bad name (NULL = parse's own) */
} bwt_setting;

extern const bwt_setting bwt_settings[]; /* ends with a NULL key */
/* Where s lives in cfg. */
void *bwt_setting_ptr(bwt_run_config *cfg, const bwt_setting *s);
/* The row of section.key, or NULL. */
const bwt_setting *bwt_setting_find(const char *section, const char *key);
/* Every row's default, and the bijection's task with its defaults. */
void bwt_run_config_default(bwt_run_config *cfg);

void bwt_train_config_default(bwt_train_config *cfg);
/* Checks a run config for impossible values (clear message); creates nothing. */
bwt_status bwt_run_config_check(const bwt_run_config *cfg);
/* JSON text of cfg (malloc'd; caller frees). */
char *bwt_run_config_to_json(const bwt_run_config *cfg);
/* Parses JSON text written by bwt_run_config_to_json; `what` names the source in messages. */
bwt_status bwt_run_config_from_json(bwt_run_config *cfg, const char *json, const char *what);

/* The task stream of the batch of 1-based training step t: bwt_hash2(seed, t − 1). */
uint64_t bwt_train_batch_seed(uint64_t seed, int t);
/* The learning rate at 1-based step t. */
double bwt_lr_at(const bwt_train_config *cfg, int t);
/* Whether step t (1..steps) is on the snapshot schedule: the distinct values of round(steps^(i/(n−1)))
 * for i = 0..n−1 (step 1 through the last step, evenly spaced in log steps; fewer when they collide). */
int bwt_snapshot_due(const bwt_train_config *cfg, int t);

/* Sets the OpenMP and OpenBLAS thread count (n <= 0: the environment's, OMP_NUM_THREADS or all
 * cores) and pins the threads to CPUs when they use every CPU the process may (src/core/threads.c).
 * Fails (BWT_STATUS_NOMEM, changing nothing) when an address-space limit leaves too little room for
 * OpenBLAS's per-thread buffers, where OpenBLAS itself would hang. */
bwt_status bwt_set_threads(int n);

/* Data parallelism over `size` processes (the MPI build of the CLI sets it; the engine knows no MPI):
 * process `rank` trains its share of each step's global batch of train.batch sequences, and
 * sum(ctx, grads, n, extras, n_extras), called on every process after its backward, replaces grads
 * and extras by their sums over the processes, identically on all of them. */
typedef struct {
  int rank, size;
  bwt_status (*sum)(void *ctx, float *grads, size_t n, double *extras, int n_extras);
  void *ctx;
} bwt_data_parallel;

typedef struct {
  bwt_run_config cfg;
  bwt_task *task;
  bwt_model *model;
  float *adam_m, *adam_v; /* (n_params) optimiser moments */
  int step;               /* steps done */
  int stop_after;         /* bwt_train_run stops (with a checkpoint) after this step; 0 = run to the end */
  bwt_batch batch;
  float *probs, *dlogits; /* (B·n_sup, K) */
  int32_t *pg_action;     /* policy gradient (B·n_sup): the sampled answers, */
  double *pg_reward, *pg_expected, *pg_weight; /* their rewards, the expected ones, each row's weight */
  bwt_eval_result final;  /* the held-out evaluation at the end of bwt_train_run (n_seqs 0 before) */
  int resumed;            /* continues a run directory's checkpoint (bwt_trainer_resume) */
  int lock_fd;            /* the run directory's lock while the trainer holds it; -1 before */
  int eval_logged;        /* resumed: the log holds the evaluation of the checkpoint's step */
  double lr_before;       /* > 0: bwt_trainer_set_lr changed the learning rate from this */
  char notes[1024];       /* resumed: what the log repair dropped, for a warning ("" if nothing) */
  bwt_data_parallel dp;   /* size 1 unless bwt_trainer_set_parallel */
  int shard_first;        /* the index in the global batch of this process's first sequence */
  int stop_agreed;        /* data parallel: some process asked to stop during the last step */
  int out_of_step;        /* data parallel: a step failed before its sum, so the processes no longer
                           * take their steps together (the caller must stop them all: MPI_Abort) */
} bwt_trainer;

/* Creates task, model (fresh weights from cfg->train.seed) and optimiser state. */
bwt_status bwt_trainer_create(bwt_trainer **out, const bwt_run_config *cfg);
void bwt_trainer_free(bwt_trainer *tr);
/* One optimisation step; reports the mean training loss (nats), the gradient norm before
 * clipping and the learning rate used. A non-finite loss or gradient fails with
 * BWT_STATUS_NUMERIC and leaves the weights as they were. */
bwt_status bwt_trainer_step(bwt_trainer *tr, double *loss, double *grad_norm, double *lr);

/* What a training run reports as it goes (for a progress line or log). */
typedef struct {
  int step, steps;
  double loss, grad_norm, lr;
  double tokens_per_s; /* over the last log interval */
  double elapsed_s, eta_s;
  const bwt_eval_result *eval; /* non-NULL right after an evaluation */
} bwt_progress;
typedef void (*bwt_progress_fn)(void *ctx, const bwt_progress *p);

/* Creates dir for a fresh run; fails if it cannot be written or already holds a checkpoint. */
bwt_status bwt_run_dir_prepare(const char *dir);

/* Runs (or continues) training in run_dir under its lock (a second process gets "DIR is in use by
 * pid N"): writes config.json at the start, appends to metrics.jsonl (one write per line, fsynced
 * before each checkpoint), checkpoints to checkpoint.safetensors (atomically) every ckpt_every steps
 * and when it stops, and at the end evaluates and writes eval.json and positions.csv.
 * bwt_request_stop makes it stop after the current step (or during an evaluation) with a
 * checkpoint, returning BWT_STATUS_OK if it stopped between steps (tr->step < steps tells) and
 * BWT_STATUS_STOPPED if an evaluation was cut short; either way --resume goes on exactly. */
bwt_status bwt_train_run(bwt_trainer *tr, const char *run_dir, bwt_progress_fn progress, void *ctx);

/* Takes run_dir for tr before bwt_train_run does (to report "in use" before anything else): its
 * lock, kept until bwt_trainer_free, and for a fresh run a directory that holds no run yet. */
bwt_status bwt_trainer_take_dir(bwt_trainer *tr, const char *run_dir);

/* Opens an existing run directory to continue it: takes its lock, reads checkpoint.safetensors and
 * restores weights, optimiser state and step; the metrics log is cut back to what the checkpoint
 * covers, and what was dropped for damage is described in tr->notes. */
bwt_status bwt_trainer_resume(bwt_trainer **out, const char *run_dir);
/* Makes tr process dp->rank of dp->size: its batch becomes sequences [first, first + n) of each
 * step's global batch (the global batch split as evenly as it goes, in rank order), and each step
 * sums the gradients and the loss over the processes before clipping. Every process then takes the
 * same steps; in bwt_train_run only rank 0 touches the run directory (lock, config, log,
 * checkpoints, snapshots, evaluations), and a stop requested on any process (bwt_request_stop)
 * stops every process after the same step. Call before the first step. */
bwt_status bwt_trainer_set_parallel(bwt_trainer *tr, const bwt_data_parallel *dp);

/* Replaces the peak learning rate for the rest of a run (a resumed run that diverged): the schedule
 * goes on with it, config.json and later checkpoints record it, and the log gets a line
 * {"step", "lr_changed_from", "lr_changed_to"}. */
bwt_status bwt_trainer_set_lr(bwt_trainer *tr, double lr);

/* An existing run opened for reading (bwt eval, geometry, ablate, dynamics): its configuration,
 * its checkpoint's model and step, and its task. */
typedef struct {
  bwt_run_config cfg;
  bwt_model *model;
  bwt_task *task; /* NULL with BWT_RUN_NO_TASK (then bwt_run_create_task) */
  int step;
  char path[4096]; /* the checkpoint file */
  char dir[4096];  /* its run directory */
} bwt_run;

/* bwt_run_open's threads: a count (>= 0: bwt_set_threads before loading), or: */
#define BWT_RUN_THREADS_OWN (-1)  /* the run's own train.threads, after loading */
#define BWT_RUN_THREADS_KEEP (-2) /* leave them as they are */
/* bwt_run_open's flags. */
enum {
  BWT_RUN_NO_TASK = 1,       /* create no task (to change run->cfg.task first) */
  BWT_RUN_THREADS_AFTER = 2, /* set a given thread count after loading, not before */
};

/* The checkpoint a command-line argument names: the file itself if it ends in .safetensors, else
 * WHERE/checkpoint.safetensors; dir gets the run directory (the file's directory). */
void bwt_run_paths(const char *where, char *path, char *dir, size_t cap);
/* Opens the run `where` names (a run directory or a checkpoint file): sets the threads, loads the
 * checkpoint and creates its task. On failure run holds nothing and needs no close. */
bwt_status bwt_run_open(bwt_run *run, const char *where, int threads, unsigned flags);
/* Creates run->task from run->cfg.task (after BWT_RUN_NO_TASK). */
bwt_status bwt_run_create_task(bwt_run *run);
void bwt_run_close(bwt_run *run);

#endif
