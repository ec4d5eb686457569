/* Random-weight checkpoints (bwt/lm_random.h): a config.json from a template or an architecture's
 * small defaults, with overrides, read back through the same parser bwt_lm_open uses, then every
 * tensor that config implies (the architecture table's names and shapes, hf_model.c's slots) drawn
 * as Hugging Face's _init_weights draws it, and written as one F32 model.safetensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/lm_random.h"
#include "bwt/rng.h"
#include "bwt/safetensors.h"
#include "bwt/tokenizer.h"
#include "lm_internal.h"

/* What _init_weights does beyond normal/zero/one, per model_type: the activation of the small
 * defaults, GPT-2's scaled c_proj ("OpenAI GPT-2 paper scheme"), an embedding padding_idx row
 * zeroed (Llama, Mistral, Phi build nn.Embedding with padding_idx = pad_token_id). */
static const struct {
  const char *model_type, *act;
  int scaled_proj, pad_row;
} init_rules[] = {
    {"llama", "silu", 0, 1}, {"mistral", "silu", 0, 1}, {"gpt2", "gelu_new", 1, 0},
    {"gpt_neox", "gelu", 0, 0}, {"phi", "gelu_new", 0, 1},
};

#define DRAW_BLOCK 65536 /* values per RNG stream: the same file for any thread count */

static int rule_of(const char *model_type) {
  for (int i = 0; i < (int)(sizeof init_rules / sizeof *init_rules); i++)
    if (strcmp(init_rules[i].model_type, model_type) == 0) return i;
  return -1;
}

static int set_number(cJSON *root, const char *key, double v) {
  cJSON *n = cJSON_CreateNumber(v);
  if (!n) return 0;
  if (cJSON_GetObjectItemCaseSensitive(root, key)) return cJSON_ReplaceItemInObjectCaseSensitive(root, key, n);
  return cJSON_AddItemToObject(root, key, n);
}

static int set_string(cJSON *root, const char *key, const char *v) {
  cJSON *n = cJSON_CreateString(v);
  if (!n) return 0;
  if (cJSON_GetObjectItemCaseSensitive(root, key)) return cJSON_ReplaceItemInObjectCaseSensitive(root, key, n);
  return cJSON_AddItemToObject(root, key, n);
}

/* The small defaults of an architecture, in its own key spelling. */
static bwt_status default_config(cJSON **out, const char *name) {
  const hf_arch *A = hf_arch_find(name);
  if (!A) return bwt_fail(BWT_STATUS_ARG, "unknown architecture '%s' (bwt writes %s, or their model_type)", name, bwt_lm_known_architectures());
  const hf_keys *k = A->keys;
  cJSON *root = cJSON_CreateObject(), *archs = cJSON_AddArrayToObject(root, "architectures");
  int ok = archs && cJSON_AddItemToArray(archs, cJSON_CreateString(A->hf_name)) && set_string(root, "model_type", A->model_type);
  ok = ok && set_number(root, k->layers, 2) && set_number(root, k->hidden, 64) && set_number(root, k->heads, 4) &&
       set_number(root, k->mlp, 256) && set_number(root, "vocab_size", 512) && set_number(root, k->positions, 512) &&
       set_number(root, k->eps, 1e-5) && set_string(root, k->act, init_rules[rule_of(A->model_type)].act) &&
       set_number(root, "initializer_range", 0.02) && cJSON_AddBoolToObject(root, "tie_word_embeddings", A->tied_default);
  if (ok && A->pos == LM_POS_ROTARY) ok = set_number(root, k->theta, 10000) && set_number(root, k->rotary, A->rotary_default);
  if (ok && A->window_key) ok = set_number(root, A->window_key, A->default_window);
  if (ok && A->parallel_key) ok = cJSON_AddBoolToObject(root, A->parallel_key, 1) != NULL;
  if (!ok) {
    cJSON_Delete(root);
    return bwt_fail(BWT_STATUS_NOMEM, "out of memory building a config");
  }
  *out = root;
  return BWT_STATUS_OK;
}

static bwt_status read_template(cJSON **out, const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (!bwt_path_exists(dir)) return bwt_fail(BWT_STATUS_IO, "%s: no such model directory", dir);
  if (!bwt_path_exists(path)) return bwt_fail(BWT_STATUS_IO, "%s: no config.json (not a Hugging Face model directory?)", dir);
  char *text = NULL;
  size_t n = 0;
  BWT_TRY(bwt_read_file(path, &text, &n));
  *out = cJSON_ParseWithLength(text, n);
  free(text);
  if (!cJSON_IsObject(*out)) {
    cJSON_Delete(*out);
    return bwt_fail(BWT_STATUS_FORMAT, "%s: not a JSON object", path);
  }
  return BWT_STATUS_OK;
}

/* The tokenizer files copied from a directory; a single file is copied under the name its kind has. */
static const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                                  "vocab.json", "merges.txt"};

static bwt_status copy_file(const char *from, const char *to) {
  char *data = NULL;
  size_t n = 0;
  BWT_TRY(bwt_read_file(from, &data, &n));
  bwt_status s = bwt_write_file_atomic(to, data, n);
  free(data);
  return s;
}

static bwt_status copy_tokenizer(const char *src, const char *out_dir) {
  char from[4200], to[4200];
  int copied = 0;
  for (size_t i = 0; i < sizeof tok_files / sizeof *tok_files; i++) {
    snprintf(from, sizeof from, "%s/%s", src, tok_files[i]);
    if (!bwt_path_exists(from)) continue;
    snprintf(to, sizeof to, "%s/%s", out_dir, tok_files[i]);
    BWT_TRY(copy_file(from, to));
    copied++;
  }
  if (copied) return BWT_STATUS_OK;
  snprintf(from, sizeof from, "%s/original/tokenizer.model", src);
  if (bwt_path_exists(from)) {
    snprintf(to, sizeof to, "%s/tokenizer.model", out_dir);
    return copy_file(from, to);
  }
  /* A file: bwt_tokenizer_load read it as JSON or as tiktoken lines; keep that kind's name. */
  size_t len = strlen(src);
  snprintf(to, sizeof to, "%s/%s", out_dir, len > 5 && strcmp(src + len - 5, ".json") == 0 ? "tokenizer.json" : "tokenizer.model");
  BWT_TRY(copy_file(src, to));
  /* tokenizer_config.json beside a tokenizer.json file comes too (the chat template, special tokens). */
  const char *slash = strrchr(src, '/');
  snprintf(from, sizeof from, "%.*stokenizer_config.json", slash ? (int)(slash - src + 1) : 0, src);
  if (bwt_path_exists(from) && strcmp(from, src) != 0) {
    snprintf(to, sizeof to, "%s/tokenizer_config.json", out_dir);
    BWT_TRY(copy_file(from, to));
  }
  return BWT_STATUS_OK;
}

typedef enum { INIT_NORMAL, INIT_ONES, INIT_ZEROS } init_kind;

typedef struct {
  char name[160];
  int ndim;
  int64_t shape[2];
  init_kind kind;
  double std;
  float *data;
} draft;

static void draft_add(draft *d, int *n, const char *pattern, int l, int ndim, int64_t d0, int64_t d1, init_kind kind, double std) {
  draft *t = &d[(*n)++];
  snprintf(t->name, sizeof t->name, pattern, l);
  t->ndim = ndim;
  t->shape[0] = d0, t->shape[1] = d1;
  t->kind = kind;
  t->std = std;
}

/* Fills tensor i of the file: its own streams (seed, i·2^20 + block). */
static void draw(draft *t, uint64_t seed, int i) {
  size_t n = (size_t)t->shape[0] * (t->ndim == 2 ? (size_t)t->shape[1] : 1);
  if (t->kind != INIT_NORMAL) {
    for (size_t j = 0; j < n; j++) t->data[j] = t->kind == INIT_ONES ? 1.0f : 0.0f;
    return;
  }
  long blocks = (long)((n + DRAW_BLOCK - 1) / DRAW_BLOCK);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (long b = 0; b < blocks; b++) {
    bwt_rng r;
    bwt_rng_seed(&r, seed, ((uint64_t)i << 20) + (uint64_t)b);
    size_t end = (size_t)(b + 1) * DRAW_BLOCK < n ? (size_t)(b + 1) * DRAW_BLOCK : n;
    for (size_t j = (size_t)b * DRAW_BLOCK; j < end; j++) t->data[j] = (float)(t->std * bwt_rng_normal(&r));
  }
}

static bwt_status build_config(const bwt_lm_random_spec *spec, cJSON **out, int *tok_vocab, double *std) {
  cJSON *root = NULL;
  if (spec->like) BWT_TRY(read_template(&root, spec->like));
  else if (spec->arch) BWT_TRY(default_config(&root, spec->arch));
  else return bwt_fail(BWT_STATUS_ARG, "needs a template directory (like) or an architecture name");
  bwt_status s = BWT_STATUS_OK;
  const char *name = cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "architectures"), 0));
  const hf_arch *A = name ? hf_arch_find(name) : NULL;
  if (!A)
    s = bwt_fail(BWT_STATUS_FORMAT, "%s/config.json: architecture '%s' is not one bwt writes (%s)", spec->like, name ? name : "(none)",
                 bwt_lm_known_architectures());
  const hf_keys *k = A ? A->keys : NULL;
  int ok = 1;
  const struct {
    const char *key;
    int v;
  } over[] = {{k ? k->layers : NULL, spec->layers}, {k ? k->hidden : NULL, spec->hidden}, {k ? k->heads : NULL, spec->heads},
              {"num_key_value_heads", spec->kv_heads}, {k ? k->mlp : NULL, spec->mlp}, {k ? k->positions : NULL, spec->max_pos}};
  for (size_t i = 0; s == BWT_STATUS_OK && i < sizeof over / sizeof *over; i++)
    if (over[i].v > 0) ok = ok && set_number(root, over[i].key, over[i].v);
  /* A template's head_dim belongs to its hidden size and heads. */
  if (s == BWT_STATUS_OK && (spec->hidden > 0 || spec->heads > 0)) cJSON_DeleteItemFromObjectCaseSensitive(root, "head_dim");
  /* --heads alone: as many key/value heads (the template's count belongs to its heads). */
  if (s == BWT_STATUS_OK && spec->heads > 0 && spec->kv_heads <= 0) cJSON_DeleteItemFromObjectCaseSensitive(root, "num_key_value_heads");
  *tok_vocab = 0;
  int vocab = spec->vocab;
  if (s == BWT_STATUS_OK && spec->tokenizer) {
    bwt_tokenizer *tok = NULL;
    s = bwt_tokenizer_load(&tok, spec->tokenizer);
    if (s == BWT_STATUS_OK) {
      *tok_vocab = (int)bwt_tokenizer_vocab_size(tok);
      int32_t bos = bwt_tokenizer_bos(tok), eos = bwt_tokenizer_eos(tok);
      if (bos >= 0) ok = ok && set_number(root, "bos_token_id", bos);
      if (eos >= 0) ok = ok && set_number(root, "eos_token_id", eos);
      bwt_tokenizer_free(tok);
      if (vocab <= 0) vocab = strcmp(A->model_type, "gpt_neox") == 0 ? (*tok_vocab + 127) / 128 * 128 : *tok_vocab;
      else if (vocab < *tok_vocab)
        s = bwt_fail(BWT_STATUS_ARG, "a vocabulary of %d is smaller than the tokenizer's %d ids (%s)", vocab, *tok_vocab, spec->tokenizer);
    }
  }
  if (s == BWT_STATUS_OK && vocab > 0) ok = ok && set_number(root, "vocab_size", vocab);
  const cJSON *ir = cJSON_GetObjectItemCaseSensitive(root, "initializer_range");
  *std = spec->std > 0 ? spec->std : cJSON_IsNumber(ir) && ir->valuedouble > 0 ? ir->valuedouble : 0.02;
  if (s == BWT_STATUS_OK) ok = ok && set_number(root, "initializer_range", *std) && set_string(root, "torch_dtype", "float32");
  if (s == BWT_STATUS_OK && !ok) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory building config.json");
  if (s != BWT_STATUS_OK) {
    cJSON_Delete(root);
    return s;
  }
  *out = root;
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_random_write(const bwt_lm_random_spec *spec, const char *out_dir, bwt_lm_random_info *info) {
  bwt_alloc_hooks_install();
  cJSON *root = NULL;
  int tok_vocab = 0;
  double std = 0;
  BWT_TRY(build_config(spec, &root, &tok_vocab, &std));
  /* The same parser as bwt_lm_open: what it refuses is refused before anything is written. */
  bwt_lm m;
  memset(&m, 0, sizeof m);
  bwt_status s = hf_config_parse(&m.cfg, &m.arch, root, "the new config.json");
  if (s == BWT_STATUS_FORMAT) { /* sizes the architecture cannot take: a bad request, not a bad file */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", bwt_last_error());
    s = bwt_fail(BWT_STATUS_ARG, "%s", msg);
  }
  const bwt_lm_config *c = &m.cfg;
  const hf_arch *A = m.arch;
  int n_max = 6 + c->L * LM_SLOT_COUNT, n = 0;
  draft *d = s == BWT_STATUS_OK ? bwt_calloc((size_t)n_max, sizeof *d, "tensor list") : NULL;
  if (s == BWT_STATUS_OK && !d) s = BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) {
    int rule = rule_of(A->model_type);
    draft_add(d, &n, A->embed, 0, 2, c->V, c->C, INIT_NORMAL, std);
    if (A->pos_embed) draft_add(d, &n, A->pos_embed, 0, 2, c->max_pos, c->C, INIT_NORMAL, std);
    for (int l = 0; l < c->L; l++)
      for (int sl = 0; sl < LM_SLOT_COUNT; sl++) {
        if (!lm_slot_present(&m, (lm_slot)sl)) continue;
        int64_t shape[2] = {0, 0};
        int nd = lm_slot_shape(&m, (lm_slot)sl, shape);
        int norm = sl == LM_LN1_W || sl == LM_LN2_W;
        int scaled = init_rules[rule].scaled_proj && (sl == LM_O_W || sl == LM_DOWN_W);
        draft_add(d, &n, A->layer[sl], l, nd, shape[0], shape[1], nd == 1 ? (norm ? INIT_ONES : INIT_ZEROS) : INIT_NORMAL,
                  scaled ? std / sqrt(2.0 * c->L) : std);
      }
    draft_add(d, &n, A->final_norm, 0, 1, c->C, 0, INIT_ONES, 0);
    if (A->final_norm_bias) draft_add(d, &n, A->final_norm_bias, 0, 1, c->C, 0, INIT_ZEROS, 0);
    if (!c->tied) draft_add(d, &n, A->head, 0, 2, c->V, c->C, INIT_NORMAL, std);
    if (A->head_bias) draft_add(d, &n, A->head_bias, 0, 1, c->V, 0, INIT_ZEROS, 0);
  }
  long long params = 0;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    size_t count = (size_t)d[i].shape[0] * (d[i].ndim == 2 ? (size_t)d[i].shape[1] : 1);
    d[i].data = bwt_malloc(count * sizeof(float), d[i].name);
    if (!d[i].data) s = BWT_STATUS_NOMEM;
    else draw(&d[i], spec->seed, i);
    params += (long long)count;
  }
  if (s == BWT_STATUS_OK) {
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "pad_token_id");
    if (init_rules[rule_of(A->model_type)].pad_row && cJSON_IsNumber(pad) && pad->valuedouble >= 0 && pad->valuedouble < c->V)
      memset(d[0].data + (size_t)pad->valuedouble * c->C, 0, (size_t)c->C * sizeof(float));
  }
  char path[4200];
  if (s == BWT_STATUS_OK) s = bwt_mkdir_p(out_dir);
  if (s == BWT_STATUS_OK) {
    char *text = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    s = text ? bwt_write_file_atomic(path, text, strlen(text)) : bwt_fail(BWT_STATUS_NOMEM, "out of memory printing config.json");
    free(text);
  }
  bwt_st_tensor *t = s == BWT_STATUS_OK ? bwt_calloc((size_t)n, sizeof *t, "tensor list") : NULL;
  if (s == BWT_STATUS_OK && !t) s = BWT_STATUS_NOMEM;
  if (s == BWT_STATUS_OK) {
    for (int i = 0; i < n; i++) t[i] = (bwt_st_tensor){d[i].name, BWT_DTYPE_F32, d[i].ndim, {d[i].shape[0], d[i].shape[1]}, d[i].data};
    char seed_text[32], std_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)spec->seed);
    snprintf(std_text, sizeof std_text, "%.17g", std);
    /* "format": "pt" is what transformers' loader asks of a safetensors file. */
    const char *keys[] = {"format", "bwt_init", "bwt_seed", "bwt_std"};
    const char *vals[] = {"pt", "random: normal(0, std) projections and embeddings, zero biases, unit norms (bwt lm init)", seed_text, std_text};
    snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
    s = bwt_safetensors_write(path, t, n, keys, vals, 4);
  }
  if (s == BWT_STATUS_OK && spec->tokenizer) s = copy_tokenizer(spec->tokenizer, out_dir);
  if (s == BWT_STATUS_OK && info) {
    memset(info, 0, sizeof *info);
    snprintf(info->architecture, sizeof info->architecture, "%s", A->hf_name);
    info->vocab = c->V;
    info->tokenizer_vocab = tok_vocab;
    info->std = std;
    info->n_params = params;
    info->n_tensors = n;
  }
  for (int i = 0; d && i < n; i++) free(d[i].data);
  free(d);
  free(t);
  cJSON_Delete(root);
  return s;
}
