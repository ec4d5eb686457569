/* SULA (Paper III, arXiv 2512.23752): in-context label inference with an exact posterior, run on a
 * language model (bwt/lm.h).
 *
 * The task. Two nonsense labels A and B, each one token. A latent label y ∈ {A, B}, uniform prior.
 * k examples "w_i: L_i", each L_i = y with probability α (default 0.9), else the other label; the
 * carrier words w_i are irrelevant (drawn uniformly, independently of everything). The query is a
 * final carrier followed by ":". Template (text mode; '\n' between examples, nothing after the
 * query's colon, so the next token is the label with its leading space as it appears after ": "):
 *
 *     w1: A\nw2: B\n...\nwk: A\nwq:
 *
 * In id mode (a model without a tokenizer) the same sequence of ids:
 *     [bos] w1 s1 L1 s2  w2 s1 L2 s2 ... wq s1         (s1, s2 the two separator ids)
 *
 * The exact posterior, with a = #A and b = #B among the k labels:
 *     latent       p(y=A | D)      = α^a (1−α)^b / (α^a (1−α)^b + α^b (1−α)^a)
 *     predictive   P(next=A | D)   = α·p(y=A|D) + (1−α)·p(y=B|D)
 * The model's next-token probabilities of the two label tokens, renormalised to sum 1, estimate the
 * PREDICTIVE distribution (the next label is drawn like the others given y): that is what bwt
 * compares the model with, and what the export's "posterior" holds. The latent posterior is
 * reported beside it.
 *
 * Controls (each prompt of a control shares the carriers, y and draws of the plain prompt with the
 * same k and index, so differences are paired):
 *   none      the task as above;
 *   remap     another label pair (the evidence is the same, the label tokens differ);
 *   shuffled  labels independent of y: each is a fair coin, so P(next=A|D) = 1/2 exactly and
 *             H_Bayes = 1 bit at every k;
 *   ablated   every carrier (the query's too) replaced by one fixed mask word or id: the posterior
 *             does not depend on carriers, so neither should the model; its shift from the plain
 *             prompt's P(A) is reported.
 *
 * Metrics per k and control, all in bits where they are information: entropy MAE |H(q) − H(p)|
 * and KL(p‖q) between the model's renormalised label distribution q and the exact predictive p;
 * calibration: 10 equal bins of the model's P(A), in each the mean model P(A) and mean exact P(A),
 * and ECE = Σ_bins (n_bin/n)·|mean model − mean exact| (against the exact predictive, not sampled
 * outcomes: the wind tunnel's free oracle); label mass: the un-renormalised probability of the two
 * label tokens (a model that does not predict a label at all shows it here); accuracy: how often
 * argmax q is y (a tie counts 1/2), with the Bayes predictor's accuracy beside it. */
#ifndef BWT_LAB_SULA_H
#define BWT_LAB_SULA_H

#include <stdint.h>

#include "bwt/lm.h"
#include "bwt/status.h"
#include "bwt/tokenizer.h"

#define BWT_SULA_ALPHA_DEFAULT 0.9
#define BWT_SULA_BINS 10
#define BWT_SULA_MAX_K 4096

typedef enum { BWT_SULA_NONE, BWT_SULA_REMAP, BWT_SULA_SHUFFLED, BWT_SULA_ABLATED, BWT_SULA_CONTROL_COUNT } bwt_sula_control;

/* "none", "remap", "shuffled", "ablated". */
const char *bwt_sula_control_name(bwt_sula_control c);

/* The exact posterior of n_a A labels and n_b B labels (any order): latent p(y=A | D) and the
 * predictive P(next=A | D). alpha in (0, 1). Computed in log space: exact for any k. */
double bwt_sula_latent(int n_a, int n_b, double alpha);
double bwt_sula_predictive(int n_a, int n_b, double alpha);

/* Built-in lists: nonsense label pairs (tried in order; the first whose two words are single tokens
 * after ": " is the task's, the next such the remap control's), and common English carrier words. */
extern const char *const bwt_sula_label_pairs[][2];
extern const int bwt_sula_n_label_pairs;
extern const char *const bwt_sula_carriers[];
extern const int bwt_sula_n_carriers;
#define BWT_SULA_MASK_WORD "_"

/* The token id of word as a label after ": ": "x: word" must encode as "x:" followed by exactly
 * one more token. Fails, naming the word and the token count, otherwise. */
bwt_status bwt_sula_label_id(const bwt_tokenizer *tok, const char *word, int32_t *id);
/* The first pair of bwt_sula_label_pairs (from index *from on) whose words are both single tokens,
 * neither of them one of avoid[2] (NULL: no such condition): its index in *from, ids in ids[2].
 * Fails when none is. */
bwt_status bwt_sula_pick_pair(const bwt_tokenizer *tok, int *from, const int32_t *avoid, int32_t ids[2]);

typedef struct {
  double alpha;
  uint64_t seed;
  /* Text mode: tok non-NULL. Labels and remap labels as words (with their ids), carriers a list. */
  const bwt_tokenizer *tok;
  const char *label_words[2], *remap_words[2];
  const char *const *carriers;
  int n_carriers;
  const char *mask_word;
  /* Id mode (tok NULL): ids drawn from carrier_lo..carrier_hi excluding every other id used. */
  int32_t bos;               /* first token when >= 0 (text mode: the tokenizer's template decides) */
  int32_t sep[2];            /* after a carrier, after a label */
  int32_t carrier_lo, carrier_hi;
  int32_t mask_id;
  /* Both modes: the label ids (text mode: from bwt_sula_label_id). */
  int32_t labels[2], remap[2];
} bwt_sula_spec;

/* The default task on a model: with a tokenizer, text mode with the first two built-in label pairs
 * that are single tokens (task, remap) and the built-in carriers; without, id mode with labels 5,6,
 * remap 7,8, separators 3,4, mask 9, carriers 10..V−1 and the config's BOS (`bwt lm sula`'s
 * defaults). Checked as bwt_sula_spec_check does. */
bwt_status bwt_sula_spec_default(bwt_sula_spec *ss, const bwt_lm_config *cfg, const bwt_tokenizer *tok, double alpha,
                                 uint64_t seed);

/* Checks a spec: alpha in (0,1); distinct label, remap, separator and mask ids; a carrier range
 * with at least one id left; text mode: carriers given. One line naming what is wrong. */
bwt_status bwt_sula_spec_check(const bwt_sula_spec *spec);

typedef struct {
  int id, k;
  bwt_sula_control control;
  int y;                  /* 0: A, 1: B (A, B = labels[0], labels[1]) */
  int32_t labels[2];      /* the label ids of this prompt (remap: the other pair) */
  int *example_labels;    /* (k) 0 or 1 */
  int32_t *tokens;        /* (n_tokens) */
  int n_tokens;
  char *text;             /* text mode only, else NULL */
  double posterior[2];    /* exact predictive P(next=A|D), P(next=B|D) */
  double latent[2];       /* p(y=A|D), p(y=B|D) */
} bwt_sula_prompt;

/* Prompt `index` of k examples under control, deterministic in (seed, k, index): the same draws
 * for every control. id is stored as given. Free with bwt_sula_prompt_free. */
bwt_status bwt_sula_generate(const bwt_sula_spec *spec, int k, bwt_sula_control control, int index, int id,
                             bwt_sula_prompt *out);
void bwt_sula_prompt_free(bwt_sula_prompt *p);

/* Runs the prompt from an empty cache; *model_a = the model's next-token P(A)/(P(A)+P(B)) (from
 * log-probabilities, stable), *mass = P(A)+P(B) over the whole vocabulary. */
bwt_status bwt_sula_score(bwt_lm *lm, const bwt_sula_prompt *p, double *model_a, double *mass);

typedef struct {
  int n;
  double entropy_mae, kl, ece, label_mass, accuracy, bayes_accuracy;
  double mean_model_a, mean_bayes_a, mean_latent_a;
  double shift;            /* ablated: mean |P_model(A) − plain prompt's P_model(A)|; else 0 */
  int bin_n[BWT_SULA_BINS];
  double bin_model[BWT_SULA_BINS], bin_bayes[BWT_SULA_BINS]; /* means, 0 for an empty bin */
} bwt_sula_metrics;

/* Metrics of n prompts: model_a(n) the model's renormalised P(A), mass(n) its label mass, bayes_a(n)
 * the exact predictive P(A), y(n) the latent labels (0 = A); latent_a(n) may be NULL. bin b holds
 * P(A) in [b/10, (b+1)/10) (1 in the last). */
void bwt_sula_metrics_compute(const double *model_a, const double *mass, const double *bayes_a, const double *latent_a,
                              const int *y, int n, bwt_sula_metrics *m);

/* The whole experiment: every k of ks(n_ks) × every control × per_k prompts, scored on the models
 * lms(n_lms) (copies of one model: prompts are shared out among threads, one model each). */
typedef struct {
  int n_ks, per_k;
  int *ks;                  /* (n_ks) */
  bwt_sula_prompt *prompts; /* (n_ks, CONTROL_COUNT, per_k) */
  double *model_a, *mass;   /* same layout */
  bwt_sula_metrics *metrics; /* (n_ks, CONTROL_COUNT) */
} bwt_sula_result;

/* progress(ctx, done, total) after each prompt when not NULL (from one thread at a time). */
bwt_status bwt_sula_run(bwt_lm *const *lms, int n_lms, const bwt_sula_spec *spec, const int *ks, int n_ks, int per_k,
                        void (*progress)(void *ctx, int done, int total), void *ctx, bwt_sula_result *out);
void bwt_sula_result_free(bwt_sula_result *r);

#endif
