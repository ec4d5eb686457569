/* Reads a Hugging Face tokenizer.json with a BPE model into a bwt_tokenizer: vocabulary, merges,
 * added tokens, normalizer, pre-tokenizer, post-processor (the special-token template) and decoder.
 * What this reader does not implement is refused by name rather than half-applied. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lm/tokenizer_internal.h"

#define MAX_IDS (1 << 24) /* ids beyond this are taken for a damaged file */

typedef struct {
  bwt_tokenizer *t;
  const char *name;
} ctx;

static const cJSON *item(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static int flag(const cJSON *o, const char *key, int dflt) {
  const cJSON *v = item(o, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static const char *str(const cJSON *o, const char *key) {
  const cJSON *v = item(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A string kept in the tokenizer's arena (JSON strings hold no NUL: their length is strlen). */
static bwt_status keep(ctx *c, const char *s, const char **out, size_t *len) {
  size_t n = strlen(s);
  char *p = tok_arena_strdup(&c->t->arena, s, n);
  if (!p) return BWT_STATUS_NOMEM;
  *out = p;
  if (len) *len = n;
  return BWT_STATUS_OK;
}

static bwt_status grow_steps(void **v, size_t n, size_t elem, const char *what) {
  void *w = bwt_realloc(*v, (n + 1) * elem, what);
  if (!w) return BWT_STATUS_NOMEM;
  *v = w;
  memset((char *)w + n * elem, 0, elem);
  return BWT_STATUS_OK;
}

/* pattern: {"String": s} or {"Regex": r}; *is_regex tells which. */
static bwt_status pattern(ctx *c, const cJSON *o, const char *what, const char **s, int *is_regex) {
  const cJSON *p = item(o, "pattern");
  const char *lit = str(p, "String"), *re = str(p, "Regex");
  if (!lit && !re) return bwt_fail(BWT_STATUS_FORMAT, "%s: %s has no pattern {\"String\"} or {\"Regex\"}", c->name, what);
  *is_regex = re != NULL;
  *s = re ? re : lit;
  return BWT_STATUS_OK;
}

/* --- normalizers --- */

static bwt_status add_norm(ctx *c, tok_norm m) {
  bwt_tokenizer *t = c->t;
  BWT_TRY(grow_steps((void **)&t->norm, t->n_norm, sizeof *t->norm, "normalizers"));
  t->norm[t->n_norm++] = m;
  return BWT_STATUS_OK;
}

static bwt_status normalizer(ctx *c, const cJSON *o) {
  if (cJSON_IsNull(o) || !o) return BWT_STATUS_OK;
  const char *type = str(o, "type");
  if (!type) return bwt_fail(BWT_STATUS_FORMAT, "%s: a normalizer has no type", c->name);
  tok_norm m = {0};
  if (strcmp(type, "Sequence") == 0) {
    const cJSON *list = item(o, "normalizers"), *e;
    if (!cJSON_IsArray(list)) return bwt_fail(BWT_STATUS_FORMAT, "%s: normalizer Sequence has no normalizers list", c->name);
    cJSON_ArrayForEach(e, list) BWT_TRY(normalizer(c, e));
    return BWT_STATUS_OK;
  }
  if (strcmp(type, "NFC") == 0) m.kind = TOK_NORM_NFC;
  else if (strcmp(type, "NFD") == 0) m.kind = TOK_NORM_NFD;
  else if (strcmp(type, "NFKC") == 0) m.kind = TOK_NORM_NFKC;
  else if (strcmp(type, "NFKD") == 0) m.kind = TOK_NORM_NFKD;
  else if (strcmp(type, "Prepend") == 0) {
    const char *p = str(o, "prepend");
    if (!p) return bwt_fail(BWT_STATUS_FORMAT, "%s: normalizer Prepend has no prepend string", c->name);
    m.kind = TOK_NORM_PREPEND;
    BWT_TRY(keep(c, p, &m.a, &m.a_len));
  } else if (strcmp(type, "Replace") == 0) {
    const char *p, *content = str(o, "content");
    int is_regex;
    BWT_TRY(pattern(c, o, "normalizer Replace", &p, &is_regex));
    if (is_regex) return bwt_fail(BWT_STATUS_FORMAT, "%s: normalizer Replace with a Regex pattern is not supported", c->name);
    if (!content) return bwt_fail(BWT_STATUS_FORMAT, "%s: normalizer Replace has no content", c->name);
    m.kind = TOK_NORM_REPLACE;
    BWT_TRY(keep(c, p, &m.a, &m.a_len));
    BWT_TRY(keep(c, content, &m.b, &m.b_len));
  } else if (strcmp(type, "Strip") == 0) {
    m.kind = TOK_NORM_STRIP;
    m.left = flag(o, "strip_left", 1);
    m.right = flag(o, "strip_right", 1);
  } else {
    return bwt_fail(BWT_STATUS_FORMAT, "%s: unsupported normalizer type \"%s\"", c->name, type);
  }
  return add_norm(c, m);
}

/* --- pre-tokenizers --- */

static bwt_status prepend_scheme(ctx *c, const cJSON *o, tok_prepend_scheme *out) {
  const char *s = str(o, "prepend_scheme");
  if (!s) { /* files before prepend_scheme had add_prefix_space */
    *out = flag(o, "add_prefix_space", 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    return BWT_STATUS_OK;
  }
  if (strcmp(s, "always") == 0) *out = TOK_PREPEND_ALWAYS;
  else if (strcmp(s, "first") == 0) *out = TOK_PREPEND_FIRST;
  else if (strcmp(s, "never") == 0) *out = TOK_PREPEND_NEVER;
  else return bwt_fail(BWT_STATUS_FORMAT, "%s: unknown Metaspace prepend_scheme \"%s\"", c->name, s);
  return BWT_STATUS_OK;
}

static bwt_status replacement(ctx *c, const cJSON *o, const char **s, size_t *n) {
  const char *r = str(o, "replacement");
  return keep(c, r ? r : "\xE2\x96\x81", s, n); /* U+2581 by default */
}

static bwt_status pre_tokenizer(ctx *c, const cJSON *o) {
  bwt_tokenizer *t = c->t;
  if (cJSON_IsNull(o) || !o) return BWT_STATUS_OK;
  const char *type = str(o, "type");
  if (!type) return bwt_fail(BWT_STATUS_FORMAT, "%s: a pre-tokenizer has no type", c->name);
  if (strcmp(type, "Sequence") == 0) {
    const cJSON *list = item(o, "pretokenizers"), *e;
    if (!cJSON_IsArray(list)) return bwt_fail(BWT_STATUS_FORMAT, "%s: pre-tokenizer Sequence has no pretokenizers list", c->name);
    cJSON_ArrayForEach(e, list) BWT_TRY(pre_tokenizer(c, e));
    return BWT_STATUS_OK;
  }
  BWT_TRY(grow_steps((void **)&t->pre, t->n_pre, sizeof *t->pre, "pre-tokenizers"));
  tok_pre *p = &t->pre[t->n_pre];
  if (strcmp(type, "ByteLevel") == 0) {
    p->kind = TOK_PRE_BYTE_LEVEL;
    p->add_prefix_space = flag(o, "add_prefix_space", 1);
    if (flag(o, "use_regex", 1)) BWT_TRY(tok_regex_compile(t, tok_gpt2_pattern, &p->re, c->name));
  } else if (strcmp(type, "Split") == 0) {
    const char *pat, *behavior = str(o, "behavior");
    int is_regex;
    BWT_TRY(pattern(c, o, "pre-tokenizer Split", &pat, &is_regex));
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    size_t k = 0;
    while (behavior && k < 5 && strcmp(behavior, names[k]) != 0) k++;
    if (!behavior || k == 5)
      return bwt_fail(BWT_STATUS_FORMAT, "%s: pre-tokenizer Split has an unknown behavior \"%s\"", c->name, behavior ? behavior : "");
    p->kind = TOK_PRE_SPLIT;
    p->behavior = (tok_split_behavior)k;
    p->invert = flag(o, "invert", 0);
    if (is_regex) BWT_TRY(tok_regex_compile(t, pat, &p->re, c->name));
    else BWT_TRY(keep(c, pat, &p->lit, &p->lit_len));
    if (!p->re && !p->lit_len) return bwt_fail(BWT_STATUS_FORMAT, "%s: pre-tokenizer Split has an empty pattern", c->name);
  } else if (strcmp(type, "Metaspace") == 0) {
    p->kind = TOK_PRE_METASPACE;
    BWT_TRY(replacement(c, o, &p->lit, &p->lit_len));
    BWT_TRY(prepend_scheme(c, o, &p->prepend));
    p->split = flag(o, "split", 1);
  } else {
    return bwt_fail(BWT_STATUS_FORMAT, "%s: unsupported pre-tokenizer type \"%s\"", c->name, type);
  }
  t->n_pre++;
  return BWT_STATUS_OK;
}

/* --- decoders --- */

static bwt_status decoder(ctx *c, const cJSON *o) {
  bwt_tokenizer *t = c->t;
  const char *type = str(o, "type");
  if (!type) return bwt_fail(BWT_STATUS_FORMAT, "%s: a decoder has no type", c->name);
  if (strcmp(type, "Sequence") == 0) {
    const cJSON *list = item(o, "decoders"), *e;
    if (!cJSON_IsArray(list)) return bwt_fail(BWT_STATUS_FORMAT, "%s: decoder Sequence has no decoders list", c->name);
    cJSON_ArrayForEach(e, list) BWT_TRY(decoder(c, e));
    return BWT_STATUS_OK;
  }
  tok_dec d = {0};
  if (strcmp(type, "ByteLevel") == 0) d.kind = TOK_DEC_BYTE_LEVEL;
  else if (strcmp(type, "ByteFallback") == 0) d.kind = TOK_DEC_BYTE_FALLBACK;
  else if (strcmp(type, "Fuse") == 0) d.kind = TOK_DEC_FUSE;
  else if (strcmp(type, "Metaspace") == 0) {
    d.kind = TOK_DEC_METASPACE;
    BWT_TRY(replacement(c, o, &d.a, &d.a_len));
    BWT_TRY(prepend_scheme(c, o, &d.prepend));
  } else if (strcmp(type, "Replace") == 0) {
    const char *p, *content = str(o, "content");
    int is_regex;
    BWT_TRY(pattern(c, o, "decoder Replace", &p, &is_regex));
    if (is_regex) return bwt_fail(BWT_STATUS_FORMAT, "%s: decoder Replace with a Regex pattern is not supported", c->name);
    if (!content) return bwt_fail(BWT_STATUS_FORMAT, "%s: decoder Replace has no content", c->name);
    d.kind = TOK_DEC_REPLACE;
    BWT_TRY(keep(c, p, &d.a, &d.a_len));
    BWT_TRY(keep(c, content, &d.b, &d.b_len));
  } else if (strcmp(type, "Strip") == 0) {
    const char *content = str(o, "content");
    const cJSON *start = item(o, "start"), *stop = item(o, "stop");
    d.kind = TOK_DEC_STRIP;
    BWT_TRY(keep(c, content ? content : " ", &d.a, &d.a_len));
    d.start = cJSON_IsNumber(start) ? start->valueint : 0;
    d.stop = cJSON_IsNumber(stop) ? stop->valueint : 0;
  } else {
    return bwt_fail(BWT_STATUS_FORMAT, "%s: unsupported decoder type \"%s\"", c->name, type);
  }
  BWT_TRY(grow_steps((void **)&t->dec, t->n_dec, sizeof *t->dec, "decoders"));
  t->dec[t->n_dec++] = d;
  return BWT_STATUS_OK;
}

/* --- post-processors: the special tokens around a single text --- */

static bwt_status add_id(ctx *c, int32_t **v, size_t *n, const cJSON *id) {
  if (!cJSON_IsNumber(id) || id->valuedouble < 0 || (size_t)id->valuedouble >= c->t->n_ids)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: the post_processor names a token id outside the vocabulary", c->name);
  int32_t *w = bwt_realloc(*v, (*n + 1) * sizeof **v, "special-token template");
  if (!w) return BWT_STATUS_NOMEM;
  *v = w;
  w[(*n)++] = (int32_t)id->valuedouble;
  return BWT_STATUS_OK;
}

static bwt_status add_ids(ctx *c, int32_t **v, size_t *n, const cJSON *ids) {
  const cJSON *e;
  cJSON_ArrayForEach(e, ids) BWT_TRY(add_id(c, v, n, e));
  return BWT_STATUS_OK;
}

static bwt_status post_processor(ctx *c, const cJSON *o) {
  bwt_tokenizer *t = c->t;
  if (cJSON_IsNull(o) || !o) return BWT_STATUS_OK;
  const char *type = str(o, "type");
  if (!type) return bwt_fail(BWT_STATUS_FORMAT, "%s: the post_processor has no type", c->name);
  if (strcmp(type, "ByteLevel") == 0) return BWT_STATUS_OK; /* it only trims offsets */
  if (strcmp(type, "Sequence") == 0) {
    const cJSON *list = item(o, "processors"), *e;
    if (!cJSON_IsArray(list)) return bwt_fail(BWT_STATUS_FORMAT, "%s: post_processor Sequence has no processors list", c->name);
    cJSON_ArrayForEach(e, list) BWT_TRY(post_processor(c, e));
    return BWT_STATUS_OK;
  }
  if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
    const cJSON *cls = item(o, "cls"), *sep = item(o, "sep");
    if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep))
      return bwt_fail(BWT_STATUS_FORMAT, "%s: post_processor %s has no cls and sep", c->name, type);
    BWT_TRY(add_id(c, &t->prefix, &t->n_prefix, cJSON_GetArrayItem(cls, 1))); /* cls and sep: [text, id] */
    return add_id(c, &t->suffix, &t->n_suffix, cJSON_GetArrayItem(sep, 1));
  }
  if (strcmp(type, "TemplateProcessing") != 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: unsupported post_processor type \"%s\"", c->name, type);
  const cJSON *single = item(o, "single"), *specials = item(o, "special_tokens"), *e;
  if (!cJSON_IsArray(single)) return bwt_fail(BWT_STATUS_FORMAT, "%s: TemplateProcessing has no single template", c->name);
  int seen_text = 0;
  cJSON_ArrayForEach(e, single) {
    const cJSON *sp = item(e, "SpecialToken");
    if (item(e, "Sequence")) {
      seen_text = 1;
      continue;
    }
    const char *name = str(sp, "id");
    const cJSON *ids = item(item(specials, name ? name : ""), "ids");
    if (!name || !cJSON_IsArray(ids))
      return bwt_fail(BWT_STATUS_FORMAT, "%s: TemplateProcessing names a special token \"%s\" it does not define", c->name, name ? name : "");
    BWT_TRY(seen_text ? add_ids(c, &t->suffix, &t->n_suffix, ids) : add_ids(c, &t->prefix, &t->n_prefix, ids));
  }
  return BWT_STATUS_OK;
}

/* --- model and vocabulary --- */

static bwt_status check_id(ctx *c, const cJSON *v, const char *what, const char *token, size_t *max) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_IDS || v->valuedouble != (double)(int32_t)v->valuedouble)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: %s \"%s\" has no valid id", c->name, what, token ? token : "");
  if ((size_t)v->valuedouble + 1 > *max) *max = (size_t)v->valuedouble + 1;
  return BWT_STATUS_OK;
}

static bwt_status merges(ctx *c, const cJSON *list) {
  bwt_tokenizer *t = c->t;
  tok_buf both = {0};
  bwt_status st = BWT_STATUS_OK;
  int32_t rank = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, list) {
    const char *a = NULL, *b = NULL;
    char *space = NULL;
    if (cJSON_IsString(e)) { /* "a b" */
      space = strchr(e->valuestring, ' ');
      if (space && !strchr(space + 1, ' ')) {
        *space = '\0';
        a = e->valuestring;
        b = space + 1;
      }
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
      a = e->child->valuestring;
      b = e->child->next->valuestring;
    }
    if (!a) {
      st = bwt_fail(BWT_STATUS_FORMAT, "%s: merge %ld is neither \"a b\" nor [a, b]", c->name, (long)rank);
      break;
    }
    both.n = 0;
    if ((st = tok_buf_add(&both, a, strlen(a))) != BWT_STATUS_OK || (st = tok_buf_add(&both, b, strlen(b))) != BWT_STATUS_OK) break;
    int32_t ia = tok_strmap_get(&t->vocab, a, strlen(a)), ib = tok_strmap_get(&t->vocab, b, strlen(b));
    int32_t im = tok_strmap_get(&t->vocab, both.p, both.n);
    if (ia < 0 || ib < 0 || im < 0) {
      st = bwt_fail(BWT_STATUS_FORMAT, "%s: merge %ld (%s %s) uses a token that is not in the vocabulary", c->name, (long)rank, a, b);
      break;
    }
    if (space) *space = ' ';
    if ((st = tok_pairmap_put(&t->merges, ia, ib, rank, im)) != BWT_STATUS_OK) break;
    rank++;
  }
  free(both.p);
  return st;
}

static bwt_status model(ctx *c, const cJSON *root) {
  bwt_tokenizer *t = c->t;
  const cJSON *m = item(root, "model");
  if (!cJSON_IsObject(m)) return bwt_fail(BWT_STATUS_FORMAT, "%s: no \"model\" object (not a tokenizer.json?)", c->name);
  const char *type = str(m, "type");
  if (type && strcmp(type, "BPE") != 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: unsupported model type \"%s\" (only BPE is read)", c->name, type);
  const cJSON *vocab = item(m, "vocab"), *mlist = item(m, "merges"), *added = item(root, "added_tokens"), *e;
  if (!cJSON_IsObject(vocab)) return bwt_fail(BWT_STATUS_FORMAT, "%s: the model has no vocab object", c->name);
  if (!cJSON_IsArray(mlist)) return bwt_fail(BWT_STATUS_FORMAT, "%s: the model has no merges list", c->name);
  const cJSON *dropout = item(m, "dropout");
  if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: BPE dropout is not supported", c->name);
  const char *prefix = str(m, "continuing_subword_prefix"), *suffix = str(m, "end_of_word_suffix");
  if ((prefix && *prefix) || (suffix && *suffix))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: BPE with a continuing_subword_prefix or end_of_word_suffix is not supported", c->name);
  t->byte_fallback = flag(m, "byte_fallback", 0);
  t->fuse_unk = flag(m, "fuse_unk", 0);
  t->ignore_merges = flag(m, "ignore_merges", 0);

  size_t n_ids = 0;
  cJSON_ArrayForEach(e, vocab) BWT_TRY(check_id(c, e, "vocabulary entry", e->string, &n_ids));
  if (added && !cJSON_IsArray(added)) return bwt_fail(BWT_STATUS_FORMAT, "%s: added_tokens is not a list", c->name);
  cJSON_ArrayForEach(e, added) {
    if (!str(e, "content")) return bwt_fail(BWT_STATUS_FORMAT, "%s: an added token has no content", c->name);
    BWT_TRY(check_id(c, item(e, "id"), "added token", str(e, "content"), &n_ids));
  }
  BWT_TRY(tok_ids_alloc(t, n_ids));
  cJSON_ArrayForEach(e, vocab) {
    int32_t id = (int32_t)e->valuedouble;
    size_t n;
    BWT_TRY(keep(c, e->string, &t->tok_str[id], &n));
    t->tok_len[id] = (uint32_t)n;
    BWT_TRY(tok_strmap_put(&t->vocab, t->tok_str[id], n, id));
  }
  t->added = bwt_calloc((size_t)cJSON_GetArraySize(added) + 1, sizeof *t->added, "added tokens");
  if (!t->added) return BWT_STATUS_NOMEM;
  cJSON_ArrayForEach(e, added) {
    tok_added *a = &t->added[t->n_added++];
    a->id = (int32_t)item(e, "id")->valuedouble;
    BWT_TRY(keep(c, str(e, "content"), &a->s, &a->n));
    a->special = flag(e, "special", 0);
    a->normalized = flag(e, "normalized", !a->special);
    a->lstrip = flag(e, "lstrip", 0);
    a->rstrip = flag(e, "rstrip", 0);
    t->tok_str[a->id] = a->s; /* an added token's text wins over the model's */
    t->tok_len[a->id] = (uint32_t)a->n;
    /* Text the model already has keeps the model's id (Hugging Face warns and does the same). */
    int32_t model_id = tok_strmap_get(&t->vocab, a->s, a->n);
    if (model_id >= 0) a->id = model_id;
  }
  for (int b = 0; b < 256; b++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", b);
    t->byte_tok[b] = tok_strmap_get(&t->vocab, name, 6);
  }
  const char *unk = str(m, "unk_token");
  t->unk = unk ? tok_strmap_get(&t->vocab, unk, strlen(unk)) : -1;
  if (unk && t->unk < 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: the unk_token \"%s\" is not in the vocabulary", c->name, unk);
  return merges(c, mlist);
}

bwt_status tok_load_json(bwt_tokenizer *t, const char *data, size_t n, const char *name) {
  bwt_alloc_hooks_install();
  long failures = bwt_alloc_failures();
  cJSON *root = cJSON_ParseWithLength(data, n);
  if (!root && bwt_alloc_failures() != failures) return bwt_fail(BWT_STATUS_NOMEM, "out of memory parsing %s", name);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return bwt_fail(BWT_STATUS_FORMAT, "%s: not a JSON object (not a tokenizer.json?)", name);
  }
  ctx c = {t, name};
  bwt_status st = model(&c, root);
  if (st == BWT_STATUS_OK) st = normalizer(&c, item(root, "normalizer"));
  if (st == BWT_STATUS_OK) st = pre_tokenizer(&c, item(root, "pre_tokenizer"));
  if (st == BWT_STATUS_OK) st = post_processor(&c, item(root, "post_processor"));
  const cJSON *dec = item(root, "decoder");
  t->dec_join_space = !cJSON_IsObject(dec);
  if (st == BWT_STATUS_OK && !t->dec_join_space) st = decoder(&c, dec);
  cJSON_Delete(root);
  return st;
}
