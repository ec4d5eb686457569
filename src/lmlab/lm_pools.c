/* Prompt pools (bwt/lab/lm_pools.h): the built-in domains, user JSON lines, the next-token entropy
 * of each candidate and the entropy-quintile stratified draw. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/lab/lm_pools.h"
#include "bwt/rng.h"

/* ---- the project's own texts ----------------------------------------------------------------- */

static const char *const code_lines[] = {
    "for (int i = 0; i < n; i++) sum += x[i];",
    "if (p == NULL) return BWT_STATUS_NOMEM;",
    "static double mean(const double *x, int n) {",
    "int main(int argc, char **argv) { return run(argc, argv); }",
    "while (lo < hi) { int mid = lo + (hi - lo) / 2; if (a[mid] < key) lo = mid + 1; else hi = mid; }",
    "float *buf = malloc((size_t)rows * cols * sizeof(float));",
    "memcpy(dst, src, n * sizeof *dst);",
    "printf(\"%d items in %.2f seconds\\n\", count, elapsed);",
    "struct node { int key; struct node *left, *right; };",
    "size_t len = strlen(name); if (len >= sizeof buf) return -1;",
    "for (size_t j = 0; j < cols; j++) out[i * cols + j] = a[i] * b[j];",
    "switch (kind) { case KIND_A: return 1; case KIND_B: return 2; default: return 0; }",
    "#include <stdio.h>",
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "typedef struct { double x, y; } point;",
    "double norm = sqrt(dx * dx + dy * dy);",
    "FILE *f = fopen(path, \"rb\"); if (!f) { perror(path); return 1; }",
    "qsort(items, n, sizeof *items, compare_by_score);",
    "uint64_t h = 1469598103934665603ull; for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;",
    "free(node->children); free(node);",
    "def mean(xs):",
    "    return sum(xs) / len(xs)",
    "for i, line in enumerate(open(path)):",
    "    if not line.strip(): continue",
    "import numpy as np",
    "x = np.linspace(0, 1, 101)",
    "result = [f(v) for v in values if v > 0]",
    "class Stack:",
    "    def push(self, item): self.items.append(item)",
    "with open(\"out.json\", \"w\") as f: json.dump(report, f, indent=2)",
    "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "counts = {}; for w in words: counts[w] = counts.get(w, 0) + 1",
    "print(f\"loss {loss:.4f} at step {step}\")",
    "assert len(batch) == batch_size, \"short batch\"",
    "return sorted(pairs, key=lambda p: p[1], reverse=True)",
    "if __name__ == \"__main__\": main()",
    "let total = items.iter().map(|x| x.price).sum::<f64>();",
    "const result = await fetch(url).then(r => r.json());",
    "SELECT name, count(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "git commit -m \"Fix the off-by-one in the window\"",
};

static const char *const prose_lines[] = {
    "The old lighthouse keeper climbed the stairs every evening to light the lamp.",
    "After the rain stopped, the children ran outside to jump in the puddles.",
    "She opened the letter slowly, afraid of what it might say.",
    "The train was late again, so he bought a coffee and waited on the cold platform.",
    "In the spring the river rises and floods the fields along its banks.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Nobody in the village remembered who had planted the great oak in the square.",
    "The committee will meet on Tuesday to discuss the new budget.",
    "He practised the piano for an hour each morning before breakfast.",
    "The museum closes at six, but the garden stays open until sunset.",
    "When the power went out, the whole street fell silent for a moment.",
    "Her grandmother kept a diary for sixty years and never missed a day.",
    "The mountain path is steep and narrow, so walkers should take care.",
    "Most birds build their nests in the spring, when food is plentiful.",
    "The bakery on the corner sells the best bread in town.",
    "They argued about the map for an hour before admitting they were lost.",
    "A good teacher listens more than she speaks.",
    "The ship left the harbour at dawn and headed north into the fog.",
    "Every winter the lake freezes and people skate across it to the island.",
    "The doctor told him to rest, drink plenty of water and come back in a week.",
    "The library was quiet except for the sound of turning pages.",
    "Farmers in the valley grow apples, pears and a little wheat.",
    "The film was long, but nobody in the audience wanted it to end.",
    "On the first day of school the new students gathered in the hall.",
    "The cat slept on the windowsill all afternoon in the warm sun.",
    "Scientists measured the temperature of the ocean at many depths.",
    "The bridge was built in eighteen hundred and ninety and is still in use.",
    "If you follow the river downstream, you will reach the sea in two days.",
    "The market is busiest on Saturday mornings, when the farmers come to town.",
    "He wrote the address on the envelope and walked to the post office.",
    "The storm knocked down several trees and left the road blocked.",
    "Once upon a time, a little girl lived with her mother at the edge of a forest.",
    "The team won the final match after a long and difficult season.",
    "She planted tomatoes, beans and sunflowers in the small garden behind the house.",
    "The city council voted to build a new park beside the station.",
    "At night the desert grows cold and the sky fills with stars.",
    "The old clock in the hall stopped at exactly midnight.",
    "They packed sandwiches, apples and a flask of tea for the long walk.",
    "The engineer checked every bolt before the crane lifted the beam.",
    "In the morning the fog lifted and the whole valley was visible.",
};

static const char *const licences[] = {"GPL-3", "Apache-2.0", "MPL-2.0", "LGPL-2.1", "GFDL-1.3", "Artistic", "BSD", "CC0-1.0"};

/* ---- text candidates ------------------------------------------------------------------------------ */

/* k words of text from word `from` on (k drawn uniformly from 2 .. the words left − 1, at least
 * one word left to predict; the whole text when it has fewer than three), into out. from 0: a
 * prefix; window: a random first word too (half of the time). */
static void word_window(char *out, size_t cap, const char *text, int window, bwt_rng *rng) {
  int words = 0;
  for (const char *s = text; *s;) {
    while (*s == ' ') s++;
    if (!*s) break;
    words++;
    while (*s && *s != ' ') s++;
  }
  int from = window && words >= 4 && bwt_rng_below(rng, 2) ? (int)bwt_rng_below(rng, (uint32_t)(words - 3)) : 0;
  int left = words - from;
  int k = left < 3 ? left : 2 + (int)bwt_rng_below(rng, (uint32_t)(left - 2));
  const char *s = text, *start = text;
  for (int w = 0; w < from + k && *s; w++) {
    while (*s == ' ') s++;
    if (w == from) start = s;
    while (*s && *s != ' ') s++;
  }
  size_t n = (size_t)(s - start) < cap - 1 ? (size_t)(s - start) : cap - 1;
  memcpy(out, start, n);
  out[n] = '\0';
}

/* A generated math statement. */
static void math_statement(char *out, size_t cap, bwt_rng *rng) {
  int a = 2 + (int)bwt_rng_below(rng, 98), b = 2 + (int)bwt_rng_below(rng, 98), x = 1 + (int)bwt_rng_below(rng, 20);
  int k = 2 + (int)bwt_rng_below(rng, 9);
  static const char *const facts[] = {
      "The sum of the angles of a triangle is 180 degrees.", "A prime number has exactly two divisors.",
      "The derivative of x^2 is 2x.", "The area of a circle of radius r is pi r^2.",
      "The square root of 144 is 12.", "Two lines in a plane either meet once or are parallel.",
      "The integral of 1/x is ln x plus a constant.", "Every even number greater than 2 is the sum of two primes, Goldbach conjectured.",
  };
  switch (bwt_rng_below(rng, 9)) {
    case 0: snprintf(out, cap, "%d + %d = %d", a, b, a + b); break;
    case 1: snprintf(out, cap, "%d - %d = %d", a + b, b, a); break;
    case 2: snprintf(out, cap, "%d * %d = %d", a % 13, b % 13, (a % 13) * (b % 13)); break;
    case 3: snprintf(out, cap, "If x + %d = %d, then x = %d.", a, a + x, x); break;
    case 4: snprintf(out, cap, "If %dx + %d = %d, then x = %d.", k, a, k * x + a, x); break;
    case 5: snprintf(out, cap, "The square of %d is %d.", x, x * x); break;
    case 6: snprintf(out, cap, "%d divided by %d is %d.", k * x, k, x); break;
    case 7: snprintf(out, cap, "Solve %dx = %d. Answer: x = %d.", k, k * x, x); break;
    default: snprintf(out, cap, "%s", facts[bwt_rng_below(rng, sizeof facts / sizeof *facts)]); break;
  }
}

typedef struct {
  char **s;
  int n;
} sentences;

static void sentences_free(sentences *t) {
  for (int i = 0; i < t->n; i++) free(t->s[i]);
  free(t->s);
}

/* The licence texts cut into sentences of 6 or more words (whitespace runs collapsed). */
static bwt_status licence_sentences(sentences *out) {
  memset(out, 0, sizeof *out);
  for (size_t f = 0; f < sizeof licences / sizeof *licences; f++) {
    char path[128], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "/usr/share/common-licenses/%s", licences[f]);
    if (!bwt_path_exists(path) || bwt_read_file(path, &text, &len) != BWT_STATUS_OK) continue;
    char *cur = malloc(len + 1);
    size_t m = 0;
    int words = 0;
    for (size_t i = 0; cur && i <= len; i++) {
      char ch = i < len ? text[i] : '.';
      if (ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
      if (ch == ' ' && (m == 0 || cur[m - 1] == ' ')) continue;
      if ((unsigned char)ch < 32 || (unsigned char)ch > 126) continue; /* plain ASCII only */
      if (ch == ' ') words++;
      cur[m++] = ch;
      if (ch == '.' || ch == ';' || ch == ':') {
        while (m && cur[m - 1] == ' ') m--;
        cur[m] = '\0';
        if (words >= 5 && m < 400) {
          char **grown = realloc(out->s, (size_t)(out->n + 1) * sizeof *grown);
          if (grown) {
            out->s = grown;
            out->s[out->n] = strdup(cur);
            if (out->s[out->n]) out->n++;
          }
        }
        m = 0, words = 0;
      }
    }
    free(cur);
    free(text);
  }
  return out->n ? BWT_STATUS_OK
                : bwt_fail(BWT_STATUS_IO, "pool 'legal': no licence text in /usr/share/common-licenses (Debian's base-files)");
}

/* ---- pools ------------------------------------------------------------------------------------------ */

const char *bwt_lm_pool_names(void) { return "mixed, math, code, prose, legal, ids"; }

void bwt_lm_pool_free(bwt_lm_pool *p) {
  for (int i = 0; p && i < p->n; i++) free(p->p[i].ids);
  if (p) free(p->p);
  if (p) memset(p, 0, sizeof *p);
}

static int same_ids(const bwt_lm_prompt *a, const int32_t *ids, int n) {
  return a->n == n && memcmp(a->ids, ids, (size_t)n * sizeof *ids) == 0;
}

/* Appends ids(n) (taken over) unless the pool holds it already; returns 1 when added. */
static int pool_add(bwt_lm_pool *p, int32_t *ids, int n, const char *domain) {
  for (int i = 0; i < p->n; i++)
    if (same_ids(&p->p[i], ids, n)) return free(ids), 0;
  bwt_lm_prompt *grown = realloc(p->p, (size_t)(p->n + 1) * sizeof *grown);
  if (!grown) return free(ids), -1;
  p->p = grown;
  bwt_lm_prompt *q = &p->p[p->n++];
  memset(q, 0, sizeof *q);
  q->ids = ids, q->n = n;
  snprintf(q->domain, sizeof q->domain, "%s", domain);
  return 1;
}

/* text through the tokenizer (with its template) into a checked id list. */
static bwt_status encode(const bwt_lm_config *c, const bwt_tokenizer *tok, const char *text, int32_t **ids, int *n) {
  size_t m = 0;
  BWT_TRY(bwt_tokenizer_encode(tok, text, strlen(text), BWT_TOKENIZE_SPECIAL, ids, &m));
  for (size_t i = 0; i < m; i++)
    if ((*ids)[i] >= c->V) {
      int id = (*ids)[i];
      free(*ids);
      return bwt_fail(BWT_STATUS_ARG, "the tokenizer gives id %d, outside the model's vocabulary 0..%d (tokenizer and model do not match)", id, c->V - 1);
    }
  if (m < 1) return free(*ids), bwt_fail(BWT_STATUS_ARG, "a pool text encodes to no tokens");
  *n = (int)m < c->max_pos ? (int)m : c->max_pos;
  return BWT_STATUS_OK;
}

/* Samples one id from softmax(logits(V)). */
static int32_t sample(const float *logits, int V, bwt_rng *rng) {
  double mx = -INFINITY, z = 0;
  for (int i = 0; i < V; i++) mx = fmax(mx, logits[i]);
  for (int i = 0; i < V; i++) z += exp(logits[i] - mx);
  double u = bwt_rng_uniform(rng) * z, acc = 0;
  for (int i = 0; i < V; i++) {
    acc += exp(logits[i] - mx);
    if (u < acc) return i;
  }
  return V - 1;
}

static bwt_status ids_candidate(bwt_lm *lm, bwt_rng *rng, int32_t **out, int *n_out) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  int len = 8 + (int)bwt_rng_below(rng, 17);
  if (len > c->max_pos) len = c->max_pos;
  int32_t *ids = malloc((size_t)len * sizeof *ids);
  float *logits = malloc(2 * (size_t)c->V * sizeof *logits);
  if (!ids || !logits) return free(ids), free(logits), bwt_fail(BWT_STATUS_NOMEM, "out of memory sampling a pool");
  int n = 0;
  if (c->bos >= 0 && c->bos < c->V && len > 1) ids[n++] = c->bos;
  ids[n++] = (int32_t)bwt_rng_below(rng, (uint32_t)c->V);
  bwt_lm_reset(lm);
  bwt_status s = bwt_lm_forward(lm, ids, n, logits);
  const float *last = logits + (size_t)(n - 1) * c->V;
  while (s == BWT_STATUS_OK && n < len) {
    ids[n] = sample(last, c->V, rng);
    s = bwt_lm_forward(lm, ids + n, 1, logits); /* through the cache */
    last = logits, n++;
  }
  free(logits);
  if (s != BWT_STATUS_OK) return free(ids), s;
  *out = ids, *n_out = n;
  return BWT_STATUS_OK;
}

/* One text candidate of domain d (0 math, 1 code, 2 prose, 3 legal) into buf. */
static void text_candidate(char *buf, size_t cap, int d, const sentences *legal, bwt_rng *rng) {
  char whole[600];
  switch (d) {
    case 0: math_statement(whole, sizeof whole, rng); break;
    case 1: snprintf(whole, sizeof whole, "%s", code_lines[bwt_rng_below(rng, sizeof code_lines / sizeof *code_lines)]); break;
    case 2: snprintf(whole, sizeof whole, "%s", prose_lines[bwt_rng_below(rng, sizeof prose_lines / sizeof *prose_lines)]); break;
    default: snprintf(whole, sizeof whole, "%s", legal->s[bwt_rng_below(rng, (uint32_t)legal->n)]); break;
  }
  word_window(buf, cap, whole, d == 1 || d == 2, rng); /* code and prose: windows too (40 lines each) */
}

bwt_status bwt_lm_pool_builtin(bwt_lm_pool *out, const char *name, bwt_lm *lm, const bwt_tokenizer *tok, int n,
                               uint64_t seed) {
  memset(out, 0, sizeof *out);
  static const char *const domains[] = {"math", "code", "prose", "legal"};
  int which = -1; /* 0..3 a domain, 4 mixed, 5 ids */
  for (int d = 0; d < 4; d++)
    if (strcmp(name, domains[d]) == 0) which = d;
  if (strcmp(name, "mixed") == 0) which = 4;
  if (strcmp(name, "ids") == 0) which = 5;
  if (which < 0) return bwt_fail(BWT_STATUS_ARG, "unknown pool '%s' (known: %s, or a FILE.jsonl)", name, bwt_lm_pool_names());
  if (n < 1) return bwt_fail(BWT_STATUS_ARG, "a pool needs at least one candidate");
  if (which != 5 && !tok)
    return bwt_fail(BWT_STATUS_ARG, "pool '%s' is text and the model has no tokenizer: use --pool ids or a FILE.jsonl of {\"tokens\": [...]}", name);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  sentences legal = {0};
  int have_legal = 0;
  if (which == 3 || which == 4) {
    bwt_status s = licence_sentences(&legal);
    if (s != BWT_STATUS_OK && which == 3) return s;
    have_legal = s == BWT_STATUS_OK;
  }
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0x9001);
  bwt_status s = BWT_STATUS_OK;
  int n_dom = have_legal ? 4 : 3;
  for (long tries = 0; s == BWT_STATUS_OK && out->n < n && tries < 20L * n; tries++) {
    int32_t *ids = NULL;
    int m = 0;
    const char *domain = "ids";
    if (which == 5) {
      s = ids_candidate(lm, &rng, &ids, &m);
    } else {
      int d = which < 4 ? which : out->n % n_dom; /* mixed: the domains in turn */
      char text[600];
      text_candidate(text, sizeof text, d, &legal, &rng);
      domain = domains[d];
      s = encode(c, tok, text, &ids, &m);
    }
    if (s == BWT_STATUS_OK && pool_add(out, ids, m, domain) < 0) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory building a pool");
  }
  sentences_free(&legal);
  if (s != BWT_STATUS_OK) bwt_lm_pool_free(out);
  return s;
}

bwt_status bwt_lm_pool_read(bwt_lm_pool *out, const char *path, bwt_lm *lm, const bwt_tokenizer *tok) {
  memset(out, 0, sizeof *out);
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  char *text = NULL;
  size_t len = 0;
  BWT_TRY(bwt_read_file(path, &text, &len));
  bwt_status s = BWT_STATUS_OK;
  int line_no = 0;
  for (char *line = text, *next; s == BWT_STATUS_OK && line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    line_no++;
    if (strspn(line, " \t\r") == strlen(line)) continue;
    cJSON *o = cJSON_Parse(line);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text"), *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    const cJSON *dom = cJSON_GetObjectItemCaseSensitive(o, "domain");
    int32_t *ids = NULL;
    int m = 0;
    if (!cJSON_IsObject(o)) {
      s = bwt_fail(BWT_STATUS_ARG, "%s line %d: not a JSON object", path, line_no);
    } else if (dom && !cJSON_IsString(dom)) {
      s = bwt_fail(BWT_STATUS_ARG, "%s line %d: \"domain\" must be a string", path, line_no);
    } else if (t) {
      if (!cJSON_IsString(t)) s = bwt_fail(BWT_STATUS_ARG, "%s line %d: \"text\" must be a string", path, line_no);
      else if (!tok) s = bwt_fail(BWT_STATUS_ARG, "%s line %d: a text prompt needs the model's tokenizer (give \"tokens\")", path, line_no);
      else s = encode(c, tok, t->valuestring, &ids, &m);
    } else if (!cJSON_IsArray(toks) || cJSON_GetArraySize(toks) < 1) {
      s = bwt_fail(BWT_STATUS_ARG, "%s line %d: needs \"tokens\": a non-empty list of ids (or \"text\")", path, line_no);
    } else {
      m = cJSON_GetArraySize(toks);
      if (m > c->max_pos) m = c->max_pos;
      ids = malloc((size_t)m * sizeof *ids);
      if (!ids) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", path);
      for (int i = 0; s == BWT_STATUS_OK && i < m; i++) {
        const cJSON *v = cJSON_GetArrayItem(toks, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble >= c->V)
          s = bwt_fail(BWT_STATUS_ARG, "%s line %d: token %d is not an id in 0..%d", path, line_no, i, c->V - 1);
        else ids[i] = (int32_t)v->valuedouble;
      }
      if (s != BWT_STATUS_OK) free(ids), ids = NULL;
    }
    if (s == BWT_STATUS_OK && pool_add(out, ids, m, dom ? dom->valuestring : "user") < 0)
      s = bwt_fail(BWT_STATUS_NOMEM, "out of memory reading %s", path);
    cJSON_Delete(o);
  }
  free(text);
  if (s == BWT_STATUS_OK && out->n == 0) s = bwt_fail(BWT_STATUS_ARG, "%s holds no prompts", path);
  if (s != BWT_STATUS_OK) bwt_lm_pool_free(out);
  return s;
}

double bwt_lm_entropy_bits(const float *logits, int V) {
  double mx = -INFINITY, z = 0, ez = 0;
  for (int i = 0; i < V; i++) mx = fmax(mx, logits[i]);
  for (int i = 0; i < V; i++) {
    double e = exp(logits[i] - mx);
    z += e;
    ez += e * (logits[i] - mx);
  }
  return (log(z) - ez / z) / log(2.0);
}

bwt_status bwt_lm_pool_entropy(bwt_lm *lm, const bwt_lm_pool *pool, double *entropy) {
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  float *logits = malloc((size_t)c->V * sizeof *logits);
  if (!logits) return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  bwt_status s = BWT_STATUS_OK;
  for (int i = 0; s == BWT_STATUS_OK && i < pool->n; i++) {
    bwt_lm_reset(lm);
    const bwt_lm_prompt *p = &pool->p[i];
    s = p->n > 1 ? bwt_lm_forward(lm, p->ids, p->n - 1, NULL) : BWT_STATUS_OK;
    if (s == BWT_STATUS_OK) s = bwt_lm_forward(lm, p->ids + p->n - 1, 1, logits);
    if (s == BWT_STATUS_OK) entropy[i] = bwt_lm_entropy_bits(logits, c->V);
  }
  free(logits);
  return s;
}

static const double *sort_key;
static int by_entropy(const void *a, const void *b) {
  int i = *(const int *)a, j = *(const int *)b;
  if (sort_key[i] < sort_key[j]) return -1;
  if (sort_key[i] > sort_key[j]) return 1;
  return (i > j) - (i < j);
}

bwt_status bwt_lm_stratified_draw(const double *entropy, int n, int per_quintile, uint64_t seed, int *idx,
                                  int *quintile, int *n_out) {
  if (n < 1 || per_quintile < 1) return bwt_fail(BWT_STATUS_ARG, "the stratified draw needs candidates and --per-quintile >= 1");
  int *order = malloc((size_t)n * sizeof *order);
  if (!order) return bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  for (int i = 0; i < n; i++) order[i] = i;
  sort_key = entropy;
  qsort(order, (size_t)n, sizeof *order, by_entropy);
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0x5157);
  int k = 0;
  for (int q = 0; q < 5; q++) {
    int lo = (int)(((long)q * n + 4) / 5), hi = (int)(((long)(q + 1) * n + 4) / 5); /* ranks r with ⌊5r/n⌋ = q */
    int m = hi - lo, take = m < per_quintile ? m : per_quintile;
    /* partial Fisher–Yates over the quintile's ranks */
    for (int j = 0; j < take; j++) {
      int r = j + (int)bwt_rng_below(&rng, (uint32_t)(m - j));
      int t = order[lo + j];
      order[lo + j] = order[lo + r];
      order[lo + r] = t;
      idx[k] = order[lo + j];
      quintile[k++] = q;
    }
  }
  free(order);
  *n_out = k;
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_pool_draw(bwt_lm *lm, const bwt_tokenizer *tok, const char *pool, int candidates, int per_quintile,
                            uint64_t seed, bwt_lm_pool *sel, int **quintile) {
  memset(sel, 0, sizeof *sel);
  *quintile = NULL;
  size_t len = strlen(pool);
  int is_file = strchr(pool, '/') || (len > 6 && strcmp(pool + len - 6, ".jsonl") == 0) || (len > 5 && strcmp(pool + len - 5, ".json") == 0);
  bwt_lm_pool all;
  BWT_TRY(is_file ? bwt_lm_pool_read(&all, pool, lm, tok) : bwt_lm_pool_builtin(&all, pool, lm, tok, candidates, seed));
  if (all.n < 3) {
    int n = all.n;
    bwt_lm_pool_free(&all);
    return bwt_fail(BWT_STATUS_ARG, "pool %s holds %d prompt%s; the geometry needs at least 3", pool, n, n == 1 ? "" : "s");
  }
  double *ent = bwt_malloc((size_t)all.n * sizeof *ent, "entropies");
  int *idx = bwt_malloc(5 * (size_t)per_quintile * sizeof *idx, "draw");
  int *q = bwt_malloc(5 * (size_t)per_quintile * sizeof *q, "draw");
  int n = 0;
  bwt_status s = ent && idx && q ? bwt_lm_pool_entropy(lm, &all, ent) : BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) s = bwt_lm_stratified_draw(ent, all.n, per_quintile, seed, idx, q, &n);
  if (s == BWT_STATUS_OK && !(sel->p = bwt_calloc((size_t)n, sizeof *sel->p, "prompts"))) s = BWT_STATUS_NOMEM;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    sel->p[sel->n++] = all.p[idx[i]];
    all.p[idx[i]].ids = NULL; /* moved */
  }
  bwt_lm_pool_free(&all);
  free(ent), free(idx);
  if (s != BWT_STATUS_OK) {
    bwt_lm_pool_free(sel);
    free(q);
    return s;
  }
  *quintile = q;
  return BWT_STATUS_OK;
}
