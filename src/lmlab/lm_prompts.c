/* Prompt records of the language-model instruments (bwt/lab/lm_prompts.h): JSON lines of token ids,
 * with the two hypotheses of `bwt lm sula --export` records when an instrument needs them, or the
 * same records straight from a SULA run. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_prompts.h"
#include "bwt/rng.h"

void bwt_lm_records_free(bwt_lm_record *p, int n) {
  for (int i = 0; p && i < n; i++) free(p[i].tokens);
  free(p);
}

/* An integer-valued JSON number in [lo, hi] into *v. */
static int int_in(const cJSON *x, double lo, double hi, int *v) {
  if (!cJSON_IsNumber(x)) return 0;
  double d = x->valuedouble;
  if (!(d >= lo && d <= hi) || d != floor(d)) return 0;
  *v = (int)d;
  return 1;
}

/* One record into p; a message naming path and line on failure. */
static bwt_status parse_line(bwt_lm_record *p, const cJSON *o, const char *path, int line, int V, int max_pos,
                             int need_labels) {
  memset(p, 0, sizeof *p);
  snprintf(p->control, sizeof p->control, "none");
  if (!cJSON_IsObject(o)) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: not a JSON object", path, line);
  const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
  int T = cJSON_IsArray(toks) ? cJSON_GetArraySize(toks) : 0;
  if (T < 1) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: needs a non-empty \"tokens\" array of token ids", path, line);
  if (T > max_pos)
    return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: %d tokens exceed the model's %d positions", path, line, T, max_pos);
  p->tokens = bwt_malloc(sizeof(int32_t) * (size_t)T, "prompt tokens");
  if (!p->tokens) return BWT_STATUS_NOMEM;
  p->T = T;
  int i = 0, v;
  for (const cJSON *t = toks->child; t; t = t->next, i++) {
    if (!int_in(t, 0, V - 1, &v))
      return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: token %d is not an id in 0..%d", path, line, i, V - 1);
    p->tokens[i] = v;
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id"), *k = cJSON_GetObjectItemCaseSensitive(o, "k");
  if (id && !int_in(id, -2147483647.0, 2147483647.0, &p->id)) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"id\" is not an integer", path, line);
  if (k && !int_in(k, 0, 2147483647.0, &p->k)) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"k\" is not a non-negative integer", path, line);
  const cJSON *ctl = cJSON_GetObjectItemCaseSensitive(o, "control");
  if (ctl) {
    static const char *const known[] = {"none", "remap", "shuffled", "ablated"};
    int ok = 0;
    for (int j = 0; cJSON_IsString(ctl) && j < 4; j++) ok |= strcmp(ctl->valuestring, known[j]) == 0;
    if (!ok) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"control\" must be one of none, remap, shuffled, ablated", path, line);
    snprintf(p->control, sizeof p->control, "%s", ctl->valuestring);
  }
  const cJSON *lab = cJSON_GetObjectItemCaseSensitive(o, "labels"), *y = cJSON_GetObjectItemCaseSensitive(o, "y");
  const cJSON *post = cJSON_GetObjectItemCaseSensitive(o, "posterior");
  if (!lab && !y && !post) {
    if (need_labels) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: needs \"labels\", \"y\" and \"posterior\" (a record of bwt lm sula --export)", path, line);
    return BWT_STATUS_OK;
  }
  if (!cJSON_IsArray(lab) || cJSON_GetArraySize(lab) != 2 || !int_in(lab->child, 0, V - 1, &p->labels[0]) ||
      !int_in(lab->child->next, 0, V - 1, &p->labels[1]) || p->labels[0] == p->labels[1])
    return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"labels\" must be two different token ids in 0..%d", path, line, V - 1);
  if (!y || !int_in(y, 0, 1, &p->y)) return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"y\" must be 0 or 1", path, line);
  if (!cJSON_IsArray(post) || cJSON_GetArraySize(post) != 2 || !cJSON_IsNumber(post->child) ||
      !cJSON_IsNumber(post->child->next))
    return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"posterior\" must be two probabilities [pA, pB]", path, line);
  p->posterior[0] = post->child->valuedouble, p->posterior[1] = post->child->next->valuedouble;
  if (!(p->posterior[0] >= 0 && p->posterior[1] >= 0 && fabs(p->posterior[0] + p->posterior[1] - 1) <= 1e-3))
    return bwt_fail(BWT_STATUS_FORMAT, "%s:%d: \"posterior\" [%g, %g] is not a distribution", path, line, p->posterior[0],
                    p->posterior[1]);
  p->has_labels = 1;
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_records_read(const char *path, int V, int max_pos, int need_labels, bwt_lm_record **out, int *n) {
  *out = NULL, *n = 0;
  char *text;
  size_t len;
  BWT_TRY(bwt_read_file(path, &text, &len));
  int cap = 1, count = 0;
  for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
  bwt_lm_record *p = bwt_calloc((size_t)cap, sizeof *p, "prompts");
  bwt_status s = p ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  int line = 0;
  for (char *at = text; s == BWT_STATUS_OK && at && *at;) {
    char *end = strchr(at, '\n');
    if (end) *end = '\0';
    line++;
    char *q = at;
    while (*q == ' ' || *q == '\t' || *q == '\r') q++;
    if (*q) {
      cJSON *o = cJSON_Parse(q);
      if (!o) s = bwt_fail(BWT_STATUS_FORMAT, "%s:%d: not valid JSON", path, line);
      else s = parse_line(&p[count], o, path, line, V, max_pos, need_labels);
      cJSON_Delete(o);
      count++;
    }
    at = end ? end + 1 : NULL;
  }
  free(text);
  if (s == BWT_STATUS_OK && count == 0) s = bwt_fail(BWT_STATUS_FORMAT, "%s holds no prompts", path);
  if (s != BWT_STATUS_OK) {
    bwt_lm_records_free(p, count);
    return s;
  }
  *out = p, *n = count;
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_records_random(bwt_lm_record **out, int n, int T, int V, uint64_t seed) {
  *out = NULL;
  if (n < 1 || T < 1 || V < 1) return bwt_fail(BWT_STATUS_ARG, "random prompts: %d prompts of %d tokens are not possible", n, T);
  bwt_lm_record *p = bwt_calloc((size_t)n, sizeof *p, "prompts");
  if (!p) return BWT_STATUS_NOMEM;
  for (int i = 0; i < n; i++) {
    snprintf(p[i].control, sizeof p[i].control, "none");
    p[i].id = i, p[i].T = T;
    if (!(p[i].tokens = bwt_malloc(sizeof(int32_t) * (size_t)T, "prompt tokens"))) {
      bwt_lm_records_free(p, i);
      return BWT_STATUS_NOMEM;
    }
    bwt_rng rng;
    bwt_rng_seed(&rng, seed, (uint64_t)i);
    for (int t = 0; t < T; t++) p[i].tokens[t] = (int32_t)bwt_rng_below(&rng, (uint32_t)V);
  }
  *out = p;
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_records_from_sula(const bwt_sula_result *r, bwt_lm_record **out, int *n) {
  int total = r->n_ks * BWT_SULA_CONTROL_COUNT * r->per_k;
  *out = NULL, *n = 0;
  bwt_lm_record *p = bwt_calloc((size_t)total, sizeof *p, "prompts");
  if (!p) return BWT_STATUS_NOMEM;
  for (int i = 0; i < total; i++) {
    const bwt_sula_prompt *q = &r->prompts[i];
    bwt_lm_record *o = &p[i];
    if (!(o->tokens = bwt_malloc(sizeof(int32_t) * (size_t)q->n_tokens, "prompt tokens"))) {
      bwt_lm_records_free(p, i);
      return BWT_STATUS_NOMEM;
    }
    memcpy(o->tokens, q->tokens, sizeof(int32_t) * (size_t)q->n_tokens);
    o->T = q->n_tokens, o->id = q->id, o->k = q->k, o->y = q->y, o->has_labels = 1;
    snprintf(o->control, sizeof o->control, "%s", bwt_sula_control_name(q->control));
    memcpy(o->labels, q->labels, sizeof o->labels);
    memcpy(o->posterior, q->posterior, sizeof o->posterior);
  }
  *out = p, *n = total;
  return BWT_STATUS_OK;
}
