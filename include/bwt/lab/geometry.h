/* The mechanism view of a trained transformer or Mamba (SPEC.md §5): key-frame orthogonality, attention
 * focusing, query–key alignment (transformers), the value manifold and linear probes (both; for
 * Mamba also of its scan state), all measured against the task's exact posteriors on a held-out
 * stream. What does not apply to a model is NULL.
 *
 * Hypothesis tokens (whose keys form the "key frame"): the answer tokens of next-token tasks
 * (bijection values, modular residues, recall values) and the observation symbols of the HMM.
 * Tasks with continuous inputs have none (key-frame fields are then NULL). A key is
 * k_v = W_K^h · Norm_l(emb[v]) with block l's attention norm and no bias (SPEC.md §5).
 * Letters: L layers, NH heads, n supervised positions per sequence, T positions, Hy hypotheses. */
#ifndef BWT_LAB_GEOMETRY_H
#define BWT_LAB_GEOMETRY_H

#include <stdint.h>

#include "bwt/eval.h"
#include "bwt/model.h"
#include "bwt/task.h"

typedef struct {
  int n_seqs;       /* held-out sequences (default 512) */
  int batch;        /* sequences per forward pass (default 64) */
  uint64_t seed;    /* held-out stream (default: the evaluation stream 0x5eed) */
  double ridge;     /* linear probes' ridge penalty (default 1e-3) */
} bwt_geometry_options;

void bwt_geometry_options_default(bwt_geometry_options *o);

typedef struct {
  double pc1, pc12;           /* explained variance fractions */
  int dims90;                 /* components for 90% of the variance */
  double participation_ratio;
  double pearson, spearman;   /* of PC1 scores with the posterior entropy (sign of PC1 arbitrary) */
  /* The entropy-ordered principal curve (bwt/lab/curvature.h, BWT_CURVATURE_BINS points): total
   * turning in half-turns, chord/length, and the shuffled-entropy null's median and p. */
  double curvature, straightness, curvature_null, curvature_p;
} bwt_manifold_stats;

typedef struct {
  int L, NH, n_sup, T, C;
  long n_rows; /* supervised rows measured: n_seqs · n_sup; row r = sequence r / n_sup, position r % n_sup */
  /* Metrics of the model on the same rows. */
  double entropy_mae, kl_bits;
  /* Key frames (NULL without hypothesis tokens). */
  int hyp_lo, n_hyp;        /* hypothesis tokens hyp_lo .. hyp_lo + n_hyp − 1 */
  double *key_orth;         /* (L,NH) mean |cos| between hypothesis keys of one head */
  double *key_orth_init;    /* (L,NH) the same at initialisation (NULL if not given) */
  double gaussian_cos;      /* √(2/(π·hs)): independent Gaussian keys */
  double *key_cos;          /* (L,Hy,Hy) cosines of the full-width hypothesis keys (all heads) */
  /* Attention at the supervised rows. */
  double *attn_entropy;     /* (L,NH) mean entropy of the weights, bits */
  double uniform_entropy;   /* mean log2(pos+1): uniform attention over the visible prefix */
  double attn_reduction;    /* 1 − (head-mean entropy of the last layer)/(of the first layer) */
  double *qk_cos;           /* (L,n,T) mean over sequences and heads of cos(q_j, k_s); NAN for s > pos */
  double *attn_map;         /* (L,n,T) head-mean weights of sequence 0 */
  int32_t *sup_pos0;        /* (n) sequence 0's supervised positions */
  /* Value manifold: the final norm's output, and each block's output, at the supervised rows. */
  bwt_manifold_stats final;
  bwt_manifold_stats *layer;  /* (L) */
  double *probe_r2;           /* (L+2): embeddings, block 0..L−1 outputs, final norm */
  double *pc_scores;          /* (n_rows,2) final-layer PC1, PC2 scores */
  double *bayes_entropy;      /* (n_rows) H(q) bits */
  double *model_entropy;      /* (n_rows) H(p) bits */
  /* Mamba (NULL otherwise): the manifold and entropy probe of each layer's scan state (S floats a row). */
  int S;
  bwt_manifold_stats *state;  /* (L) */
  double *state_probe_r2;     /* (L) */
} bwt_geometry;

/* Measures model (a transformer or Mamba) on task. init, if not NULL, is the same architecture at
 * initialisation (for the key-frame baseline). */
bwt_status bwt_geometry_compute(bwt_model *model, const bwt_model *init, const bwt_task *task,
                                const bwt_geometry_options *opt, bwt_geometry *out);
void bwt_geometry_free(bwt_geometry *g);
/* The report as JSON text (caller frees); NULL when out of memory. */
char *bwt_geometry_to_json(const bwt_geometry *g);
/* Writes the figures (PNG + SVG) into dir: entropy by position, single sequences, key cosines,
 * attention maps, value manifold. */
bwt_status bwt_geometry_figures(const bwt_geometry *g, const char *dir);

/* Key-frame pieces, also used by the training-series analysis: the hypothesis token range of a task
 * (0 when it has none), and the keys of those tokens at block l: keys (Hy, C), all heads. */
int bwt_geometry_hypotheses(const bwt_task *task, int *lo);
bwt_status bwt_geometry_keys(const bwt_model *model, int l, int lo, int n_hyp, float *keys);


/* Frame–precision dissociation (SPEC.md §5) over the snapshots a run saved (bwt train --snapshots)
 * and its final checkpoint. Frame: similarity of attention patterns to the final model's (cosine of
 * the weights on one fixed batch, mean over layers) and key-frame subspace overlap (per layer and
 * head, ‖U_tᵀU_f‖²_F / r for the top-r principal directions of the hypothesis keys, r from the
 * final model's 90% dimension; mean over layers and heads). Values: cosine of the value vectors on
 * the fixed batch with the final model's, mean over layers (the content, beside the routing, for
 * the two-timescales question). Precision: entropy MAE, KL and the
 * value-manifold alignment |Spearman(PC1, H)|. Each settles at the first step from which its progress
 * (v_t − v_first)/(v_final − v_first) stays >= 0.9. */
enum { BWT_SERIES_ATTN, BWT_SERIES_KEYS, BWT_SERIES_VALUES, BWT_SERIES_MAE, BWT_SERIES_KL, BWT_SERIES_MANIFOLD, BWT_SERIES_N };
extern const char *const bwt_series_names[BWT_SERIES_N];

typedef struct {
  int n;                       /* checkpoints, by increasing step (the last is the final model) */
  int *step;                   /* (n) */
  double *value[BWT_SERIES_N]; /* (n) each measure; key overlap NAN without hypothesis tokens */
  int settle_step[BWT_SERIES_N]; /* −1 when it never settles or does not apply */
} bwt_series;

/* progress, if not NULL, is told each checkpoint as it is measured (i of n). */
bwt_status bwt_geometry_series(const char *run_dir, const bwt_geometry_options *opt, bwt_series *out,
                               void (*progress)(void *ctx, int i, int n, int step), void *ctx);
void bwt_series_free(bwt_series *s);
char *bwt_series_to_json(const bwt_series *s);
/* The dissociation curves: each measure's progress towards its final value against the step. */
bwt_status bwt_series_figure(const bwt_series *s, const char *dir);

/* Per-position entropy MAE of one model evaluated at several lengths (results r (n) at lengths (n),
 * the first the training length, e.g. the HMM at K = 20, 30, 50) as dir/error_by_position.{png,svg}. */
bwt_status bwt_length_figure(const char *dir, const bwt_eval_result *r, const int *lengths, int n);

#endif
