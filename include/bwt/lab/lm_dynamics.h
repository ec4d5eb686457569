/* Paper II's gradient dynamics on Hugging Face language models (bwt/lm.h, bwt/lm_grad.h):
 *   - verify: the routing law ∂L/∂s_ij = α_ij (b_ij − Σ_k α_ik b_ik), b_ij = u_iᵀ v_j, and the value
 *     gradient ∂L/∂v_j = Σ_i α_ij u_i (summed over the query heads sharing v_j's key/value head),
 *     recomputed in double from u = ∂L/∂hook_z, α = hook_pattern and v = hook_v, against the
 *     gradients the backward kernels computed, per layer;
 *   - detect: seed 000's geometry detector (bwt/lab/detector.h) on prompts with two hypotheses.
 * Letters as in bwt/lm.h. */
#ifndef BWT_LAB_LM_DYNAMICS_H
#define BWT_LAB_LM_DYNAMICS_H

#include <stdint.h>

#include "bwt/lab/detector.h"
#include "bwt/lab/dynamics.h"
#include "bwt/lab/lm_prompts.h"
#include "bwt/lm_grad.h"

/* Compares layer l's kernel gradients in g with the two formulas over every head (see above). */
bwt_status bwt_lm_dynamics_check(const bwt_lm *lm, const bwt_lm_grad *g, int l, bwt_dynamics_check *out);
/* For each prompt (at least 2 tokens): the backward of the mean next-token cross-entropy over its
 * positions 0..T−2, and the check of every layer; per_layer (L) gets each layer's largest
 * deviations over the prompts. */
bwt_status bwt_lm_dynamics_verify(bwt_lm *lm, const bwt_lm_record *p, int n, bwt_dynamics_check *per_layer);

/* The language-model detector. Options: the detector's (layer −1: the last; seed; threshold;
 * subsamples of subsample_rows; min_map: rows whose posterior gives y less are left out; n_seqs and
 * batch unused), and:
 *   buckets: feature slots per head: token id mod buckets (0: min(V, 1024), so every token has its
 *            own slot in a vocabulary of up to 1024);
 *   soft:    the loss is the cross-entropy against the posterior over the two label tokens rather
 *            than the label token of y.
 * Rows: one per prompt with control "none" (records with another control are skipped and
 * counted), the final position. Per row: the backward of that position's loss (target the label
 * token of y); each head's advantage row A_h[T−1, s] = α (b − Σ α b) at the layer; the feature
 * f = concat_h Σ_s A_h[T−1,s] e(bucket(token_s)) (NH·buckets), L2-normalised; label y; error
 * |H(p) − H(q)| in bits, p the model's probabilities of the two label tokens renormalised, q the
 * posterior. Inputs (bwt_detect_input): real; random tokens (each prompt's length, tokens uniform,
 * label the model's argmax between the two label ids, no posterior: r is NAN); shuffled labels (the
 * real rows, labels permuted). qv_ratio (L) per input kind: ‖Σ_rows ∂L/∂W_Q‖ / ‖Σ_rows ∂L/∂W_V‖
 * (Frobenius) per layer, the gradient of the kind's mean loss (the shuffled kind's rows and losses
 * are the real ones: the same ratios). */
typedef struct {
  bwt_detector_options det;
  int buckets;
  int soft;
} bwt_lm_detect_options;
void bwt_lm_detect_options_default(bwt_lm_detect_options *o);

typedef struct {
  int L, layer, F, buckets; /* layers, the layer traced, feature length, slots per head */
  int skipped;              /* prompts with a control other than "none" */
  bwt_detect_result r[BWT_DETECT_N];
  double *qv_ratio[BWT_DETECT_N]; /* (L) each */
  double mean_loss[BWT_DETECT_N]; /* the rows' mean loss (nats) */
} bwt_lm_detect_result;

bwt_status bwt_lm_detect(bwt_lm *lm, const bwt_lm_record *p, int n, const bwt_lm_detect_options *o,
                         bwt_lm_detect_result *out);
void bwt_lm_detect_result_free(bwt_lm_detect_result *r);
/* The detector's JSON (bwt_detect_to_json's fields) with "model", "layer", "buckets", "soft",
 * "skipped" and per input kind "qv_ratio" (L) and "mean_loss". */
char *bwt_lm_detect_to_json(const bwt_lm_detect_options *o, const bwt_lm_detect_result *r, const char *model);

#endif
