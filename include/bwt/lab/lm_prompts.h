/* Prompt records of the language-model instruments (bwt/lab/lm_dynamics.h, bwt/lab/lm_intervene.h):
 * token ids, with the two hypotheses of a SULA prompt (bwt/lab/sula.h) where an instrument needs
 * them. Read from JSON lines or made in memory from a SULA run. */
#ifndef BWT_LAB_LM_PROMPTS_H
#define BWT_LAB_LM_PROMPTS_H

#include <stdint.h>

#include "bwt/lab/sula.h"
#include "bwt/status.h"

/* One prompt: a JSON line {"tokens": [ids]} — verify needs no more — or a record of `bwt lm sula
 * --export` for the detector: {"id": int, "k": int, "control": "none"|"remap"|"shuffled"|"ablated",
 * "tokens": [ids], "labels": [idA, idB], "y": 0|1, "posterior": [pA, pB]}. */
typedef struct {
  int id, k;
  char control[16];  /* "none" when absent */
  int32_t *tokens;
  int T;
  int has_labels;    /* labels, y and posterior were given */
  int32_t labels[2]; /* the two hypotheses' answer tokens */
  int y;             /* the true hypothesis, 0 or 1 */
  double posterior[2];
} bwt_lm_record;

/* Reads a JSON-lines file of prompts (blank lines skipped) for a model of vocabulary V and max_pos
 * positions. One line of error naming the file and line for: a line that is not a JSON object, no
 * "tokens" array or an empty one, a token outside 0..V−1 or more than max_pos of them, and, when
 * need_labels, a record without labels, y or posterior, a label outside the vocabulary, y other than
 * 0 or 1, a posterior not a distribution (non-negative, summing to 1 within 1e-3) or an unknown
 * control. Free with bwt_lm_records_free. */
bwt_status bwt_lm_records_read(const char *path, int V, int max_pos, int need_labels, bwt_lm_record **out, int *n);
/* n prompts of T tokens uniform over 0..V−1 (stream seed, one per prompt): verify's default. */
bwt_status bwt_lm_records_random(bwt_lm_record **out, int n, int T, int V, uint64_t seed);
void bwt_lm_records_free(bwt_lm_record *p, int n);
/* The prompts of a SULA run (all k and controls, in the run's order) as records with labels:
 * what `bwt lm sula --export` writes, without the file. */
bwt_status bwt_lm_records_from_sula(const bwt_sula_result *r, bwt_lm_record **out, int *n);

#endif
