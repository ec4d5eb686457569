/* SULA on a language model (bwt/lab/sula.h): the exact posterior, the prompt generator with its
 * controls, scoring through bwt_lm_forward and the metrics against the exact predictive. */
#include "bwt/lab/sula.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/rng.h"

/* Classic nonsense words first (dax/wug, blicket/toma: developmental psychology's novel words); they
 * are several tokens in byte-level BPE vocabularies, so rare short words follow that are one token
 * in GPT-2's, Pythia's and Llama 3's (checked with bwt lm tokenize) and carry no meaning about the
 * carriers. */
const char *const bwt_sula_label_pairs[][2] = {
    {"dax", "wug"}, {"blicket", "toma"}, {"fep", "zorp"}, {"kiki", "bouba"},
    {"nib", "gob"}, {"dex", "mog"}, {"vex", "lux"}, {"glob", "blob"}, {"foo", "bar"},
};
const int bwt_sula_n_label_pairs = (int)(sizeof bwt_sula_label_pairs / sizeof bwt_sula_label_pairs[0]);

/* Common English nouns: carriers the labels must not depend on. */
const char *const bwt_sula_carriers[] = {
    "apple", "river", "table", "house", "window", "garden", "chair", "music", "paper", "water",
    "light", "stone", "bread", "cloud", "dog", "cat", "tree", "book", "door", "road",
    "city", "money", "night", "school", "friend", "family", "morning", "story", "ocean", "forest",
    "letter", "horse", "bird", "flower", "mountain", "street", "kitchen", "island", "winter", "summer",
    "teacher", "doctor", "village", "market", "picture", "candle", "bottle", "pencil", "button", "jacket",
    "hammer", "coffee", "orange", "silver", "engine", "bridge", "castle", "desert", "planet", "rabbit",
    "shadow", "ticket", "wallet", "blanket",
};
const int bwt_sula_n_carriers = (int)(sizeof bwt_sula_carriers / sizeof bwt_sula_carriers[0]);

const char *bwt_sula_control_name(bwt_sula_control c) {
  static const char *names[] = {"none", "remap", "shuffled", "ablated"};
  return c >= 0 && c < BWT_SULA_CONTROL_COUNT ? names[c] : "?";
}

double bwt_sula_latent(int n_a, int n_b, double alpha) {
  /* p(y=A|D) = 1 / (1 + (α^b (1−α)^a) / (α^a (1−α)^b)) = sigmoid((a − b)·log(α/(1−α))). */
  double z = (double)(n_a - n_b) * log(alpha / (1 - alpha));
  return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

double bwt_sula_predictive(int n_a, int n_b, double alpha) {
  double p = bwt_sula_latent(n_a, n_b, alpha);
  return alpha * p + (1 - alpha) * (1 - p);
}

bwt_status bwt_sula_label_id(const bwt_tokenizer *tok, const char *word, int32_t *id) {
  char text[256];
  if (snprintf(text, sizeof text, "x: %s", word) >= (int)sizeof text) return bwt_fail(BWT_STATUS_ARG, "label word '%.40s...' is too long", word);
  int32_t *with = NULL, *without = NULL;
  size_t nw = 0, no = 0;
  bwt_status s = bwt_tokenizer_encode(tok, text, strlen(text), 0, &with, &nw);
  if (s == BWT_STATUS_OK) s = bwt_tokenizer_encode(tok, "x:", 2, 0, &without, &no);
  int prefix = s == BWT_STATUS_OK && nw >= no && memcmp(with, without, no * sizeof *with) == 0;
  if (s == BWT_STATUS_OK && (!prefix || nw != no + 1))
    s = bwt_fail(BWT_STATUS_ARG, "label word '%s' is not one token after \": \" in this tokenizer (it encodes to %zu tokens there)", word,
                 prefix ? nw - no : nw);
  if (s == BWT_STATUS_OK) *id = with[no];
  free(with);
  free(without);
  return s;
}

static int shares_id(const int32_t a[2], const int32_t *avoid) {
  return avoid && (a[0] == avoid[0] || a[0] == avoid[1] || a[1] == avoid[0] || a[1] == avoid[1]);
}

bwt_status bwt_sula_pick_pair(const bwt_tokenizer *tok, int *from, const int32_t *avoid, int32_t ids[2]) {
  for (int i = *from; i < bwt_sula_n_label_pairs; i++) {
    int32_t ab[2];
    if (bwt_sula_label_id(tok, bwt_sula_label_pairs[i][0], &ab[0]) != BWT_STATUS_OK) continue;
    if (bwt_sula_label_id(tok, bwt_sula_label_pairs[i][1], &ab[1]) != BWT_STATUS_OK || ab[0] == ab[1] || shares_id(ab, avoid)) continue;
    *from = i;
    ids[0] = ab[0], ids[1] = ab[1];
    return BWT_STATUS_OK;
  }
  return bwt_fail(BWT_STATUS_ARG, "none of the built-in label pairs after pair %d is two single tokens in this tokenizer: give --labels A,B", *from);
}

bwt_status bwt_sula_spec_default(bwt_sula_spec *ss, const bwt_lm_config *cfg, const bwt_tokenizer *tok, double alpha,
                                 uint64_t seed) {
  *ss = (bwt_sula_spec){.alpha = alpha, .seed = seed, .bos = -1, .mask_word = BWT_SULA_MASK_WORD};
  if (tok) {
    ss->tok = tok, ss->carriers = bwt_sula_carriers, ss->n_carriers = bwt_sula_n_carriers;
    int from = 0;
    BWT_TRY(bwt_sula_pick_pair(tok, &from, NULL, ss->labels));
    ss->label_words[0] = bwt_sula_label_pairs[from][0], ss->label_words[1] = bwt_sula_label_pairs[from][1];
    from++;
    BWT_TRY(bwt_sula_pick_pair(tok, &from, ss->labels, ss->remap));
    ss->remap_words[0] = bwt_sula_label_pairs[from][0], ss->remap_words[1] = bwt_sula_label_pairs[from][1];
  } else {
    ss->labels[0] = 5, ss->labels[1] = 6, ss->remap[0] = 7, ss->remap[1] = 8;
    ss->sep[0] = 3, ss->sep[1] = 4, ss->mask_id = 9, ss->carrier_lo = 10, ss->carrier_hi = cfg->V - 1;
    ss->bos = cfg->bos >= 0 && cfg->bos < cfg->V ? cfg->bos : -1;
  }
  return bwt_sula_spec_check(ss);
}

static int id_used(const bwt_sula_spec *s, int32_t id) {
  return id == s->labels[0] || id == s->labels[1] || id == s->remap[0] || id == s->remap[1] || id == s->sep[0] ||
         id == s->sep[1] || id == s->mask_id || id == s->bos;
}

bwt_status bwt_sula_spec_check(const bwt_sula_spec *s) {
  if (!(s->alpha > 0 && s->alpha < 1)) return bwt_fail(BWT_STATUS_ARG, "alpha must be in (0, 1), got %g", s->alpha);
  int32_t lab[4] = {s->labels[0], s->labels[1], s->remap[0], s->remap[1]};
  for (int i = 0; i < 4; i++) {
    if (lab[i] < 0) return bwt_fail(BWT_STATUS_ARG, "label id %d is negative", lab[i]);
    for (int j = 0; j < i; j++)
      if (lab[i] == lab[j]) return bwt_fail(BWT_STATUS_ARG, "the labels and remap labels must be four different tokens (id %d twice)", lab[i]);
  }
  if (s->tok) {
    if (s->n_carriers < 1 || !s->carriers) return bwt_fail(BWT_STATUS_ARG, "no carrier words");
    if (!s->label_words[0] || !s->label_words[1] || !s->remap_words[0] || !s->remap_words[1] || !s->mask_word)
      return bwt_fail(BWT_STATUS_ARG, "text mode needs the label, remap and mask words");
    return BWT_STATUS_OK;
  }
  int32_t other[3] = {s->sep[0], s->sep[1], s->mask_id};
  for (int i = 0; i < 3; i++) {
    if (other[i] < 0) return bwt_fail(BWT_STATUS_ARG, "separator and mask ids must be non-negative");
    for (int j = 0; j < 4; j++)
      if (other[i] == lab[j]) return bwt_fail(BWT_STATUS_ARG, "id %d is both a label and a separator or the mask", other[i]);
  }
  if (s->sep[0] == s->sep[1]) return bwt_fail(BWT_STATUS_ARG, "the two separator ids must differ");
  if (s->mask_id == s->sep[0] || s->mask_id == s->sep[1]) return bwt_fail(BWT_STATUS_ARG, "the mask id %d is a separator", s->mask_id);
  if (s->carrier_lo < 0 || s->carrier_hi < s->carrier_lo) return bwt_fail(BWT_STATUS_ARG, "carrier ids %d-%d are no range", s->carrier_lo, s->carrier_hi);
  int left = 0;
  for (int32_t id = s->carrier_lo; id <= s->carrier_hi && !left; id++) left = !id_used(s, id);
  if (!left) return bwt_fail(BWT_STATUS_ARG, "carrier ids %d-%d hold only label, separator, mask or BOS ids", s->carrier_lo, s->carrier_hi);
  return BWT_STATUS_OK;
}

void bwt_sula_prompt_free(bwt_sula_prompt *p) {
  free(p->example_labels);
  free(p->tokens);
  free(p->text);
  memset(p, 0, sizeof *p);
}

/* A carrier id of the range, never one of the task's other ids (rejection: the range has one). */
static int32_t carrier_id(const bwt_sula_spec *s, bwt_rng *r) {
  uint32_t span = (uint32_t)(s->carrier_hi - s->carrier_lo + 1);
  for (;;) {
    int32_t id = s->carrier_lo + (int32_t)bwt_rng_below(r, span);
    if (!id_used(s, id)) return id;
  }
}

bwt_status bwt_sula_generate(const bwt_sula_spec *spec, int k, bwt_sula_control control, int index, int id, bwt_sula_prompt *out) {
  memset(out, 0, sizeof *out);
  if (k < 0 || k > BWT_SULA_MAX_K) return bwt_fail(BWT_STATUS_ARG, "k must be in 0..%d, got %d", BWT_SULA_MAX_K, k);
  out->id = id, out->k = k, out->control = control;
  const int32_t *lab = control == BWT_SULA_REMAP ? spec->remap : spec->labels;
  out->labels[0] = lab[0], out->labels[1] = lab[1];
  /* One stream per (k, index), shared by the controls: the draws are paired. */
  bwt_rng r;
  bwt_rng_seed(&r, bwt_hash2(spec->seed, (uint64_t)k), (uint64_t)index);
  out->y = bwt_rng_uniform(&r) < 0.5 ? 0 : 1;
  out->example_labels = bwt_calloc((size_t)k + 1, sizeof *out->example_labels, "SULA labels");
  int *carrier = bwt_calloc((size_t)k + 1, sizeof *carrier, "SULA carriers");
  if (!out->example_labels || !carrier) return free(carrier), bwt_sula_prompt_free(out), BWT_STATUS_NOMEM;
  int n_a = 0;
  for (int i = 0; i <= k; i++) {
    carrier[i] = spec->tok ? (int)bwt_rng_below(&r, (uint32_t)spec->n_carriers) : carrier_id(spec, &r);
    if (i == k) break; /* the query's carrier */
    double u = bwt_rng_uniform(&r);
    int l = control == BWT_SULA_SHUFFLED ? (u < 0.5 ? 0 : 1) : (u < spec->alpha ? out->y : 1 - out->y);
    out->example_labels[i] = l;
    n_a += l == 0;
  }
  if (control == BWT_SULA_SHUFFLED) {
    out->latent[0] = 0.5, out->posterior[0] = 0.5; /* labels carry no information about y */
  } else {
    out->latent[0] = bwt_sula_latent(n_a, k - n_a, spec->alpha);
    out->posterior[0] = bwt_sula_predictive(n_a, k - n_a, spec->alpha);
  }
  out->latent[1] = 1 - out->latent[0];
  out->posterior[1] = 1 - out->posterior[0];
  bwt_status s = BWT_STATUS_OK;
  if (spec->tok) {
    const char *const *words = control == BWT_SULA_REMAP ? spec->remap_words : spec->label_words;
    /* Every line's carrier, ": ", the longer label word and "\n", and the NUL: snprintf never truncates. */
    size_t cap = 1, longest = strlen(words[0]) > strlen(words[1]) ? strlen(words[0]) : strlen(words[1]);
    for (int i = 0; i <= k; i++) cap += strlen(control == BWT_SULA_ABLATED ? spec->mask_word : spec->carriers[carrier[i]]) + longest + 3;
    out->text = bwt_malloc(cap, "SULA prompt text");
    if (!out->text) s = BWT_STATUS_NOMEM;
    size_t len = 0;
    for (int i = 0; s == BWT_STATUS_OK && i <= k; i++) {
      const char *w = control == BWT_SULA_ABLATED ? spec->mask_word : spec->carriers[carrier[i]];
      if (i < k) len += (size_t)snprintf(out->text + len, cap - len, "%s: %s\n", w, words[out->example_labels[i]]);
      else len += (size_t)snprintf(out->text + len, cap - len, "%s:", w);
    }
    size_t n = 0;
    if (s == BWT_STATUS_OK) s = bwt_tokenizer_encode(spec->tok, out->text, len, BWT_TOKENIZE_SPECIAL, &out->tokens, &n);
    out->n_tokens = (int)n;
    /* The labels must stay their single tokens inside the whole prompt, one per example. */
    int seen = 0;
    for (size_t i = 0; s == BWT_STATUS_OK && i < n; i++) seen += out->tokens[i] == lab[0] || out->tokens[i] == lab[1];
    if (s == BWT_STATUS_OK && seen != k)
      s = bwt_fail(BWT_STATUS_ARG, "the labels '%s'/'%s' are not one token each inside a prompt (%d label tokens for %d examples)",
                   words[0], words[1], seen, k);
  } else {
    out->tokens = bwt_malloc(((size_t)k * 4 + 3) * sizeof *out->tokens, "SULA prompt");
    if (!out->tokens) s = BWT_STATUS_NOMEM;
    int n = 0;
    if (s == BWT_STATUS_OK && spec->bos >= 0) out->tokens[n++] = spec->bos;
    for (int i = 0; s == BWT_STATUS_OK && i <= k; i++) {
      out->tokens[n++] = control == BWT_SULA_ABLATED ? spec->mask_id : carrier[i];
      out->tokens[n++] = spec->sep[0];
      if (i == k) break;
      out->tokens[n++] = lab[out->example_labels[i]];
      out->tokens[n++] = spec->sep[1];
    }
    out->n_tokens = n;
  }
  free(carrier);
  if (s != BWT_STATUS_OK) bwt_sula_prompt_free(out);
  return s;
}

bwt_status bwt_sula_score(bwt_lm *lm, const bwt_sula_prompt *p, double *model_a, double *mass) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  for (int j = 0; j < 2; j++)
    if (p->labels[j] < 0 || p->labels[j] >= c->V)
      return bwt_fail(BWT_STATUS_ARG, "label id %d is outside the vocabulary 0..%d", p->labels[j], c->V - 1);
  if (p->n_tokens < 1) return bwt_fail(BWT_STATUS_ARG, "an empty prompt");
  float *logits = bwt_malloc((size_t)c->V * sizeof *logits, "SULA logits");
  if (!logits) return BWT_STATUS_NOMEM;
  bwt_lm_reset(lm);
  /* The prefix fills the cache only; the head runs for the last position alone. */
  bwt_status s = p->n_tokens > 1 ? bwt_lm_forward(lm, p->tokens, p->n_tokens - 1, NULL) : BWT_STATUS_OK;
  if (s == BWT_STATUS_OK) s = bwt_lm_forward(lm, p->tokens + p->n_tokens - 1, 1, logits);
  if (s == BWT_STATUS_OK) {
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < c->V; i++) mx = fmax(mx, logits[i]);
    for (int i = 0; i < c->V; i++) z += exp((double)logits[i] - mx);
    double la = logits[p->labels[0]] - mx - log(z), lb = logits[p->labels[1]] - mx - log(z);
    if (!isfinite(la) || !isfinite(lb)) s = bwt_fail(BWT_STATUS_NUMERIC, "prompt %d: the model's label log-probabilities are not finite", p->id);
    *model_a = 1 / (1 + exp(lb - la));
    *mass = exp(la) + exp(lb);
  }
  free(logits);
  return s;
}

static double h2(double p) {
  double h = 0;
  if (p > 0) h -= p * log2(p);
  if (p < 1) h -= (1 - p) * log2(1 - p);
  return h;
}

static double kl2(double p, double q) {
  double k = 0;
  if (p > 0) k += p * log2(p / q);
  if (p < 1) k += (1 - p) * log2((1 - p) / (1 - q));
  return k;
}

/* 1 when p favours A (label 0) and y is A, ..., 1/2 for a tie. */
static double hit(double p, int y) {
  return p == 0.5 ? 0.5 : (p > 0.5) == (y == 0) ? 1 : 0;
}

void bwt_sula_metrics_compute(const double *model_a, const double *mass, const double *bayes_a, const double *latent_a,
                              const int *y, int n, bwt_sula_metrics *m) {
  memset(m, 0, sizeof *m);
  m->n = n;
  if (n <= 0) return;
  for (int i = 0; i < n; i++) {
    double q = model_a[i], p = bayes_a[i];
    m->entropy_mae += fabs(h2(q) - h2(p));
    m->kl += kl2(p, q);
    m->label_mass += mass[i];
    m->accuracy += hit(q, y[i]);
    m->bayes_accuracy += hit(p, y[i]);
    m->mean_model_a += q;
    m->mean_bayes_a += p;
    if (latent_a) m->mean_latent_a += latent_a[i];
    int b = (int)(q * BWT_SULA_BINS);
    b = b < 0 ? 0 : b >= BWT_SULA_BINS ? BWT_SULA_BINS - 1 : b;
    m->bin_n[b]++;
    m->bin_model[b] += q;
    m->bin_bayes[b] += p;
  }
  double inv = 1.0 / n;
  m->entropy_mae *= inv, m->kl *= inv, m->label_mass *= inv, m->accuracy *= inv, m->bayes_accuracy *= inv;
  m->mean_model_a *= inv, m->mean_bayes_a *= inv, m->mean_latent_a *= inv;
  for (int b = 0; b < BWT_SULA_BINS; b++) {
    if (!m->bin_n[b]) continue;
    m->bin_model[b] /= m->bin_n[b];
    m->bin_bayes[b] /= m->bin_n[b];
    m->ece += (double)m->bin_n[b] * inv * fabs(m->bin_model[b] - m->bin_bayes[b]);
  }
}

void bwt_sula_result_free(bwt_sula_result *r) {
  int total = r->n_ks * BWT_SULA_CONTROL_COUNT * r->per_k;
  for (int i = 0; r->prompts && i < total; i++) bwt_sula_prompt_free(&r->prompts[i]);
  free(r->prompts);
  free(r->ks);
  free(r->model_a);
  free(r->mass);
  free(r->metrics);
  memset(r, 0, sizeof *r);
}

bwt_status bwt_sula_run(bwt_lm *const *lms, int n_lms, const bwt_sula_spec *spec, const int *ks, int n_ks, int per_k,
                        void (*progress)(void *ctx, int done, int total), void *ctx, bwt_sula_result *out) {
  memset(out, 0, sizeof *out);
  BWT_TRY(bwt_sula_spec_check(spec));
  if (n_lms < 1 || n_ks < 1 || per_k < 1) return bwt_fail(BWT_STATUS_ARG, "needs a model, a k and a prompt per k");
  const int CC = BWT_SULA_CONTROL_COUNT, total = n_ks * CC * per_k;
  out->n_ks = n_ks, out->per_k = per_k;
  out->ks = bwt_calloc((size_t)n_ks, sizeof *out->ks, "SULA ks");
  out->prompts = bwt_calloc((size_t)total, sizeof *out->prompts, "SULA prompts");
  out->model_a = bwt_calloc((size_t)total, sizeof *out->model_a, "SULA scores");
  out->mass = bwt_calloc((size_t)total, sizeof *out->mass, "SULA scores");
  out->metrics = bwt_calloc((size_t)n_ks * CC, sizeof *out->metrics, "SULA metrics");
  bwt_status s = out->ks && out->prompts && out->model_a && out->mass && out->metrics ? BWT_STATUS_OK : BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) memcpy(out->ks, ks, (size_t)n_ks * sizeof *ks);
  for (int ki = 0; s == BWT_STATUS_OK && ki < n_ks; ki++)
    for (int c = 0; s == BWT_STATUS_OK && c < CC; c++)
      for (int i = 0; s == BWT_STATUS_OK && i < per_k; i++) {
        int idx = (ki * CC + c) * per_k + i;
        s = bwt_sula_generate(spec, ks[ki], (bwt_sula_control)c, i, idx, &out->prompts[idx]);
      }
  /* A prompt longer than the model's positions is a k too large for it: said before any run. */
  int max_pos = bwt_lm_config_of(lms[0])->max_pos;
  for (int idx = 0; s == BWT_STATUS_OK && idx < total; idx++)
    if (out->prompts[idx].n_tokens > max_pos)
      s = bwt_fail(BWT_STATUS_ARG, "a k=%d prompt has %d tokens, more than the model's %d positions: use a smaller --k",
                   out->prompts[idx].k, out->prompts[idx].n_tokens, max_pos);
  /* Prompts shared out among threads, one model copy each; the first failure's message is carried
   * out of its thread (messages are thread-local). */
  char err[512] = "";
  int failed = 0, done = 0;
  bwt_status fail = BWT_STATUS_OK;
  if (s == BWT_STATUS_OK) {
#pragma omp parallel num_threads(n_lms)
    {
      bwt_lm *lm = lms[omp_get_thread_num() % n_lms];
#pragma omp for schedule(dynamic)
      for (int idx = 0; idx < total; idx++) {
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop) continue;
        bwt_status t = bwt_sula_score(lm, &out->prompts[idx], &out->model_a[idx], &out->mass[idx]);
#pragma omp critical(bwt_sula_progress)
        {
          if (t != BWT_STATUS_OK && fail == BWT_STATUS_OK) {
            fail = t;
            snprintf(err, sizeof err, "%s", bwt_last_error());
#pragma omp atomic write
            failed = 1;
          }
          done++;
          if (progress && t == BWT_STATUS_OK) progress(ctx, done, total);
        }
      }
    }
    if (fail != BWT_STATUS_OK) s = bwt_fail(fail, "%s", err);
  }
  double *bayes = s == BWT_STATUS_OK ? bwt_calloc((size_t)per_k * 2, sizeof *bayes, "SULA metrics") : NULL;
  int *y = bayes ? bwt_calloc((size_t)per_k, sizeof *y, "SULA metrics") : NULL;
  if (s == BWT_STATUS_OK && !y) s = BWT_STATUS_NOMEM;
  for (int ki = 0; s == BWT_STATUS_OK && ki < n_ks; ki++)
    for (int c = 0; c < CC; c++) {
      int base = (ki * CC + c) * per_k, plain = ki * CC * per_k;
      for (int i = 0; i < per_k; i++) {
        bayes[i] = out->prompts[base + i].posterior[0];
        bayes[per_k + i] = out->prompts[base + i].latent[0];
        y[i] = out->prompts[base + i].y;
      }
      bwt_sula_metrics *m = &out->metrics[ki * CC + c];
      bwt_sula_metrics_compute(out->model_a + base, out->mass + base, bayes, bayes + per_k, y, per_k, m);
      if (c == BWT_SULA_ABLATED) {
        for (int i = 0; i < per_k; i++) m->shift += fabs(out->model_a[base + i] - out->model_a[plain + i]);
        m->shift /= per_k;
      }
    }
  free(bayes);
  free(y);
  if (s != BWT_STATUS_OK) bwt_sula_result_free(out);
  return s;
}
