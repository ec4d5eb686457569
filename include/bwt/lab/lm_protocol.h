/* Paper III's whole protocol on one language model, and the cross-model table (`bwt lm protocol`):
 * SULA against the exact posterior (bwt/lab/sula.h), the geometry on the mixed and the math pool
 * (bwt/lab/lm_geometry.h), the cut of the entropy axis with its random-axis control
 * (bwt/lab/lm_intervene.h), Paper II's identities (bwt_lm_dynamics_verify) and seed 000's detector
 * on the SULA prompts (bwt_lm_detect). Each figure is the instrument's own definition; docs/lm.md
 * ("The protocol") says which row of the table is which. A model without a tokenizer runs SULA in
 * id mode and the geometry on its own samples (the "ids" pool); the math pool needs text. */
#ifndef BWT_LAB_LM_PROTOCOL_H
#define BWT_LAB_LM_PROTOCOL_H

#include <stdint.h>

#include "bwt/lab/detector.h"
#include "bwt/status.h"

#define BWT_PROTOCOL_MAX_KS 8
#define BWT_PROTOCOL_POOLS 2 /* the mixed pool (or ids) and the math pool */
#define BWT_PROTOCOL_STAGES 5 /* sula, geometry, cut, verify, detect */

typedef struct {
  int ks[BWT_PROTOCOL_MAX_KS], n_ks; /* SULA's k (default 0, 1, 2, 4, 8) */
  int per_k;                         /* SULA prompts per k and control (default 32) */
  int candidates, per_quintile;      /* pool candidates and the draw per entropy quintile (400, 15) */
  int n_boot;                        /* bootstrap resamples of the geometry's intervals (200) */
  int verify_prompts, verify_length; /* random prompts for Paper II's identities (4 of 16 tokens) */
  uint64_t seed;                     /* every draw (0) */
} bwt_lm_protocol_options;

void bwt_lm_protocol_options_default(bwt_lm_protocol_options *o);

/* The geometry of one pool at the last layer. */
typedef struct {
  char pool[16];         /* "mixed", "ids" or "math"; empty when not run (no tokenizer) */
  int n;                 /* prompts drawn */
  double pc1, pc12, participation_ratio, spearman, spearman_lo, spearman_hi;
  double attn_first, attn_last, attn_reduction; /* mean-over-heads final-token attention entropy (bits) */
  double key_w, key_w_init, key_w_gaussian;     /* W_K columns' mean |cos|, over layers and KV heads */
} bwt_lm_protocol_geometry;

typedef struct {
  char model[512], architecture[64];
  int L, NH, NKV, C, V;
  size_t n_params;
  int text_mode;                    /* SULA in text mode (a tokenizer), else ids */
  char labels[64];                  /* the label pair, words or ids */
  /* SULA, control none per k, and the controls' mean over k. */
  int n_ks, ks[BWT_PROTOCOL_MAX_KS], per_k;
  double sula_mae[BWT_PROTOCOL_MAX_KS], sula_kl[BWT_PROTOCOL_MAX_KS];
  double sula_mae_mean;             /* mean over k ≥ 1 (k = 0 has no evidence) */
  double sula_mae_remap, sula_mae_shuffled, sula_shift_ablated, sula_label_mass; /* means over k ≥ 1 */
  bwt_lm_protocol_geometry geo[BWT_PROTOCOL_POOLS];
  /* The cut at the last layer, mixed pool, SULA records of control none. */
  double cut_pc1, cut_rho_before, cut_rho_after, cut_rho_random;
  double cut_sula_before, cut_sula_after, cut_sula_random; /* SULA entropy MAE (bits) */
  /* Paper II's identities, the largest deviation relative to the largest gradient, over layers. */
  double verify_score, verify_value;
  /* The detector at the last layer: silhouette and fire rate per input kind, r on real rows, the
   * Q/V gradient ratio on real rows averaged over the first half of the layers. */
  double silhouette[BWT_DETECT_N], fire_rate[BWT_DETECT_N], confidence_r, qv_early;
  int detect_rows;
  double seconds[BWT_PROTOCOL_STAGES];       /* wall time of each stage */
  char skipped[BWT_PROTOCOL_STAGES][256];    /* why a stage could not run on this model ("" when it ran) */
} bwt_lm_protocol_row;

extern const char *const bwt_lm_protocol_stages[BWT_PROTOCOL_STAGES];

/* Runs the protocol on the Hugging Face directory dir (its own tokenizer, when it has one).
 * stage(ctx, name) is told as each stage begins when not NULL. Fails when the model cannot be
 * opened or SULA cannot run on it; a later stage that fails is skipped: its reason in
 * row->skipped, its figures NaN. */
bwt_status bwt_lm_protocol_run(const char *dir, const bwt_lm_protocol_options *o, bwt_lm_protocol_row *row,
                               void (*stage)(void *ctx, const char *name), void *ctx);

/* protocol.json: the options, every row's figures and the papers' (caller frees; NULL when out of
 * memory). */
char *bwt_lm_protocol_to_json(const bwt_lm_protocol_options *o, const bwt_lm_protocol_row *rows, int n);
/* protocol.md: the table with the papers' figures in its first rows, then per-k SULA (caller frees). */
char *bwt_lm_protocol_to_markdown(const bwt_lm_protocol_options *o, const bwt_lm_protocol_row *rows, int n);

#endif
