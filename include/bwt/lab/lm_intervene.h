/* Interventions on the entropy axis (Paper III §5) through the forward pass's edit hooks
 * (bwt/lm_edit.h): u_ent is PC1 of the standardised final-token values of layer ℓ over the prompts
 * (bwt/lab/lm_geometry.h); each operation changes the final token's values at layer ℓ (hook_v,
 * all KV heads) along u_ent, and the same operation along a random unit axis r ⟂ u_ent (seeded) is
 * its control. Effects: the axis–entropy correlation re-measured after the edit, the next-token
 * entropy change, and the SULA calibration (entropy MAE against the exact posterior).
 *
 * Letters: d = NKV·hs, n prompts. */
#ifndef BWT_LAB_LM_INTERVENE_H
#define BWT_LAB_LM_INTERVENE_H

#include <stdint.h>

#include "bwt/lab/lm_pools.h"
#include "bwt/lab/lm_prompts.h"
#include "bwt/lm.h"

/* In standardised coordinates z = (v − mu)/sd, with axis u (unit) and strength α:
 *   CUT    z − α(z·u)u            (α = 1: the component along u removed)
 *   KEEP   z − α(z − (z·u)u)      (α = 1: only the component along u kept)
 *   SHIFT  z + α·s·u              (s: the standard deviation of the PC1 scores; α = ±1: ±1σ)
 * The raw values change by sd ⊙ Δz, added only where Δz ≠ 0, so α = 0 leaves v bit for bit. */
typedef enum { BWT_AXIS_CUT, BWT_AXIS_KEEP, BWT_AXIS_SHIFT } bwt_axis_op;

void bwt_lm_axis_apply(bwt_axis_op op, double alpha, double s, const double *u, const double *mu, const double *sd,
                       int d, float *v);
/* r (d): a seeded Gaussian vector with its component along u (unit) removed (twice, for rounding),
 * normalised. Fails for d < 2. */
bwt_status bwt_lm_random_orthogonal_axis(const double *u, int d, uint64_t seed, double *r);

typedef struct {
  char op[16];             /* "cut", "keep_only", "shift_plus", "shift_minus" */
  char axis[16];           /* "entropy" or "random" */
  double alpha;            /* the strength applied (shift: ±α) */
  double spearman;         /* ρ(PC1, H) re-measured on the edited values and entropies (fresh PCA) */
  double mean_entropy_change;     /* mean over prompts of H_after − H_before, bits */
  double mean_abs_entropy_change; /* mean |H_after − H_before| */
  double sula_mae;         /* entropy MAE (bits) on the SULA records under this edit; NAN without them */
} bwt_lm_intervention_effect;

#define BWT_LM_INTERVENTIONS 8

typedef struct {
  int layer, d, n;
  double *u, *r;            /* (d) the entropy axis and its random control */
  double *mu, *sd;          /* (d) the standardisation */
  double score_sd;          /* s: standard deviation of the PC1 scores */
  double spearman;          /* ρ(PC1, H) without an edit */
  double pc1;               /* explained variance of u */
  double sula_mae;          /* without an edit; NAN without SULA records */
  int n_sula;
  int n_effects;
  bwt_lm_intervention_effect effects[BWT_LM_INTERVENTIONS];
} bwt_lm_intervention;

/* Measures layer ℓ's axis on prompts and the eight interventions (cut, keep-only, shift +α, shift
 * −α; entropy axis and random axis) with strength alpha (1 by default). sula (n_sula): SULA records with labels
 * (bwt/lab/lm_prompts.h), or NULL. */
bwt_status bwt_lm_intervene(bwt_lm *lm, const bwt_lm_pool *prompts, int layer, double alpha, uint64_t seed,
                            const bwt_lm_record *sula, int n_sula, bwt_lm_intervention *out,
                            void (*progress)(void *ctx, int i, int n), void *ctx);
void bwt_lm_intervention_free(bwt_lm_intervention *iv);
/* The final-token logits (V) of ids(n) with one operation (op, alpha) along axis at layer ℓ's
 * hook_v (iv's standardisation; axis NULL: no edit). */
bwt_status bwt_lm_intervene_logits(bwt_lm *lm, const bwt_lm_intervention *iv, const double *axis, bwt_axis_op op,
                                   double alpha, const int32_t *ids, int n, float *logits);
/* Entropy MAE (bits) of the two-label renormalised next-token distribution against the records'
 * posteriors, under (axis, op, alpha) (axis NULL: none). */
bwt_status bwt_lm_sula_mae(bwt_lm *lm, const bwt_lm_intervention *iv, const double *axis, bwt_axis_op op, double alpha,
                           const bwt_lm_record *r, int n, double *mae);
/* dir/intervene_spearman.{png,svg}: one heatmap panel per layer, rows none / cut / keep-only / shift
 * + / shift −, columns the entropy axis and the random one, cells ρ(PC1, H) re-measured. */
bwt_status bwt_lm_intervention_figure(const bwt_lm_intervention *iv, int n_layers, const char *dir);
/* JSON text of several layers' interventions (caller frees). */
char *bwt_lm_intervention_to_json(const bwt_lm_intervention *iv, int n_layers, const char *model, const char *pool);

#endif
