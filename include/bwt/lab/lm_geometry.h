/* Paper III's geometry on a language model (docs/lm.md, "Geometry"): the value manifold at the
 * final token, key orthogonality by three definitions with their baselines, and attention focusing,
 * over prompts drawn by entropy quintile (bwt/lab/lm_pools.h). Every figure is one definition,
 * named in the field; the paper's alternatives sit beside it under their own names.
 *
 * Letters: L layers, NH query heads, NKV key/value heads, hs head size, C hidden size, n prompts,
 * d = NKV·hs (one token's values, all key/value heads). Entropies in bits. */
#ifndef BWT_LAB_LM_GEOMETRY_H
#define BWT_LAB_LM_GEOMETRY_H

#include <stdint.h>

#include "bwt/lab/lm_pools.h"
#include "bwt/lm.h"

typedef struct {
  int n_boot;        /* bootstrap resamples over prompts for the 95% intervals (default 1000) */
  uint64_t seed;     /* bootstrap, the in-memory W_K re-init and the embedding draw (default 0) */
  int all_layers;    /* value manifold at every layer (default: the last only) */
  int n_embed;       /* random token ids for the degenerate embedding cosine (default 100) */
  const char *init_source; /* how the init model was made, for the report ("re-initialised in memory …") */
} bwt_lm_geometry_options;

void bwt_lm_geometry_options_default(bwt_lm_geometry_options *o);

typedef struct {
  double est, lo, hi; /* estimate on all prompts; percentile bootstrap 95% interval */
  double boot_mean;   /* the resamples' mean: its distance from est shows the resampling bias (a
                         resample repeats prompts, which raises the top eigenvalues of PCA) */
} bwt_lm_ci;

/* The value manifold of one layer: the n prompts' final-token values (all KV heads, d), each
 * coordinate standardised over the prompts (z-scores; a constant coordinate is 0), then PCA. */
typedef struct {
  int layer;
  bwt_lm_ci pc1, pc12;          /* explained-variance fractions */
  bwt_lm_ci participation_ratio;/* (Σλ)²/Σλ² of the standardised covariance */
  bwt_lm_ci spearman;           /* ρ(PC1 score, next-token entropy); the sign follows PC1's (largest |entry| > 0);
                                   resamples' PC1 are aligned to the full sample's before ρ */
  double *scores;               /* (n,2) PC1, PC2 scores */
} bwt_lm_manifold;

typedef struct {
  int L, NH, NKV, hs, C, n, R;
  /* The prompts: tokens, entropy quintile (-1: not drawn by quintile), domain, next-token entropy. */
  int *length, *quintile;
  char (*domain)[BWT_LM_DOMAIN_MAX];
  double *entropy;
  /* Value manifold at the layers measured. */
  int n_manifold;
  bwt_lm_manifold *manifold;
  /* Key orthogonality.
   * (a) weights, the paper's text: mean |cos| over the hs(hs−1) ordered pairs of distinct d_k
   *     columns of one key/value head's W_K (vectors of C), per layer and KV head; baseline
   *     Gaussian √(2/(π·C)) and the same at initialisation: the init model's weights when given, else
   *     W_K alone drawn i.i.d. normal (as Hugging Face's _init_weights; cosines do not depend on its
   *     scale). */
  double *key_w;          /* (L,NKV) */
  double *key_w_init;     /* (L,NKV) */
  char init_source[160];  /* the options' init_source, or what the baseline was made from */
  double key_w_gaussian;
  /* (b) activations, the paper's code: mean |cos| between the NKV key/value heads' keys at the
   *     final token (NKV(NKV−1) ordered pairs of hs-vectors), mean over prompts, before RoPE
   *     (hook_k) and after (hook_rot_k; NAN without rotary positions); baseline √(2/(π·hs)) and the
   *     init model's (NAN without init_dir). NAN for NKV = 1. */
  double *key_act, *key_act_rot, *key_act_init, *key_act_rot_init; /* (L) each */
  double key_act_gaussian;
  /* (c) degenerate, the paper's code's third form: mean |cos| between the embeddings of n_embed
   *     random token ids — no layer enters, the same number for every layer. Baseline √(2/(π·C)). */
  double embed_cos, embed_gaussian;
  int n_embed;
  /* Attention focusing at the final token's row. */
  double *attn_head;       /* (L,NH) per-head entropy of the row, mean over prompts */
  double *attn_mean_heads; /* (L) the mean over heads of attn_head (the adopted definition) */
  double *attn_of_mean;    /* (L) entropy of the head-averaged row, mean over prompts (the other reading) */
  double uniform_entropy;  /* mean log2 T: a uniform row */
  bwt_lm_ci attn_reduction;      /* 1 − attn_mean_heads[L−1]/attn_mean_heads[0] (ratio of prompt means) */
  bwt_lm_ci attn_reduction_bits; /* attn_mean_heads[0] − attn_mean_heads[L−1] */
  int n_boot;
} bwt_lm_geometry;

/* Measures lm on the prompts (n = prompts->n, quintile(n) or NULL). init, if not NULL, is the
 * same configuration at initialisation (a different configuration is an error). progress, if not
 * NULL, is told each prompt as it is run. */
bwt_status bwt_lm_geometry_compute(bwt_lm *lm, bwt_lm *init, const bwt_lm_pool *prompts, const int *quintile,
                                   const bwt_lm_geometry_options *o, bwt_lm_geometry *out,
                                   void (*progress)(void *ctx, int i, int n), void *ctx);
void bwt_lm_geometry_free(bwt_lm_geometry *g);
/* OK when init has lm's configuration (architecture, L, C, NH, NKV, hs, V), else an error saying how. */
bwt_status bwt_lm_same_config(const bwt_lm *lm, const bwt_lm *init);

/* The validation thresholds (docs/lm.md) applied to g: n rows of name, measured value, threshold
 * text and pass. */
typedef struct {
  const char *name, *rule;
  double value;
  int pass;
} bwt_lm_check;
int bwt_lm_geometry_checks(const bwt_lm_geometry *g, bwt_lm_check *out, int cap);

/* The report as JSON text (caller frees); NULL when out of memory. pool names the prompt pool. */
char *bwt_lm_geometry_to_json(const bwt_lm_geometry *g, const char *model, const char *pool);
/* Figures into dir (PNG + SVG): value_manifold (PC1–PC2 coloured by entropy, the last layer
 * measured), key_orthogonality (by layer, both baselines), attention_entropy (by layer). */
bwt_status bwt_lm_geometry_figures(const bwt_lm_geometry *g, const char *dir);

/* Pieces shared with the interventions (bwt/lab/lm_intervene.h). */
/* mu, sd (d): per-coordinate mean and standard deviation (population) of the rows of X (n,d); a
 * constant coordinate gets sd 1 (its z-scores are 0). */
void bwt_lm_standardise_fit(const float *X, int n, int d, double *mu, double *sd);
/* The statistics of one value manifold: X (n,d) raw rows, standardised with their own fit, PCA;
 * u (d) gets PC1 (unit, in standardised coordinates) if not NULL, scores (n,2) if not NULL. */
bwt_status bwt_lm_manifold_stats(const float *X, int n, int d, const double *entropy, double *pc1, double *pc12,
                                 double *pr, double *rho, double *u, double *scores);

#endif
