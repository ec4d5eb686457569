/* The geometry detector (the measurable part of seed 000, issue 6). For a transformer checkpoint
 * and a set of inputs:
 *   1. a traced backward (bwt/lab/dynamics.h) of one block under the cross-entropy against the inputs'
 *      targets gives each head's advantage matrix A_h (query rows × key positions);
 *   2. each supervised row j becomes a feature f_j = concat_h Σ_s A_h[j,s]·e(token_s): the advantage
 *      mass its head routes to each vocabulary token, L2-normalised;
 *   3. rows are labelled by their hypothesis, the row's target: the sampled answer, which is the
 *      truth of the sequence (the bijection's value, the recalled value, the HMM's state); rows whose
 *      posterior gives it less than min_map are left out. The silhouette score of the features under
 *      those labels (cosine distance) says how well advantage matrices cluster by hypothesis;
 *   4. each row's own silhouette is its geometric confidence, correlated (Pearson) with the model's
 *      accuracy on that row, −|H(p) − H(q)| in bits; so is the seed's other confidence, the inverse
 *      of the local curvature of the features' entropy-ordered curve.
 * Controls: random-token inputs (every token uniform over the vocabulary; labels and targets the
 * model's own argmax, since such inputs have no posterior) and label-shuffled inputs (the real rows with
 * their labels permuted). The detector "fires" on a subsample of rows when its silhouette exceeds
 * threshold; the false-positive rate is how often it fires on control subsamples. */
#ifndef BWT_LAB_DETECTOR_H
#define BWT_LAB_DETECTOR_H

#include <stdint.h>

#include "bwt/model.h"
#include "bwt/task.h"

/* Silhouette score of n points x (n, d), L2-normalised rows, under labels (n) with cosine distance;
 * per_point (n) may be NULL. Points alone in their cluster score 0 (Rousseeuw). NAN with fewer than
 * two clusters. */
double bwt_silhouette(const float *x, const int *labels, int n, int d, double *per_point);

typedef struct {
  int layer;          /* block traced (default: the last) */
  int n_seqs, batch;  /* inputs (default 256, 32) */
  uint64_t seed;      /* input stream */
  double min_map;     /* rows whose posterior of their label is below this are left out (default 0) */
  double threshold;   /* the detector fires when the silhouette exceeds this (default 0.3) */
  int subsamples, subsample_rows; /* resamples for the firing rates (default 200 of 100 rows) */
} bwt_detector_options;
void bwt_detector_options_default(bwt_detector_options *o);

typedef enum { BWT_DETECT_REAL, BWT_DETECT_RANDOM_TOKENS, BWT_DETECT_SHUFFLED_LABELS, BWT_DETECT_N } bwt_detect_input;
extern const char *const bwt_detect_input_names[BWT_DETECT_N];

typedef struct {
  int rows;            /* labelled rows */
  int clusters;        /* distinct labels among them */
  double silhouette;   /* over all labelled rows */
  double confidence_r; /* Pearson(row silhouette, −|H(p) − H(q)|); NAN for random tokens (no posterior) */
  /* Seed 000's "inverse curvature" confidence (bwt/lab/curvature.h): the features' curve ordered by
   * the posterior entropy, its total turning (half-turns) beside the shuffled-entropy null's median,
   * and Pearson(−turning at the row's point of the curve, −|H(p) − H(q)|). NAN for random tokens. */
  double curvature, curvature_null, curvature_confidence_r;
  double fire_rate;    /* share of subsamples on which the detector fires */
  int n_sub;           /* subsamples with two clusters or more */
  double *sub_silhouette; /* (n_sub) their silhouettes, ascending */
} bwt_detect_result;

/* Runs the detector on model under each input kind (out: BWT_DETECT_N results; free each with
 * bwt_detect_result_free, also after a failure). */
bwt_status bwt_detect(bwt_model *model, const bwt_task *task, const bwt_detector_options *o, bwt_detect_result *out);
void bwt_detect_result_free(bwt_detect_result *r);
/* The firing machinery on any labelled rows: o->subsamples random subsamples (without replacement,
 * seed o->seed and stream) of o->subsample_rows of the rows feat (rows, F) with their labels; d gets
 * their silhouettes (sub_silhouette, ascending; n_sub, those with two clusters or more) and the share
 * above o->threshold (fire_rate; NAN with fewer than two rows). Used by bwt_detect and by the
 * language-model detector (bwt/lab/lm_dynamics.h). */
bwt_status bwt_detect_fire_rate(const float *feat, const int *label, int rows, int F, const bwt_detector_options *o,
                                uint64_t stream, bwt_detect_result *d);
char *bwt_detect_to_json(const bwt_detector_options *o, const bwt_detect_result *r);
/* The distribution of subsample silhouettes of each input kind beside the threshold, as
 * dir/detector.{png,svg}. */
bwt_status bwt_detect_figure(const bwt_detector_options *o, const bwt_detect_result *r, const char *dir);

#endif
