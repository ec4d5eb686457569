/* Opening a Hugging Face model directory: config.json through the architecture table
 * (hf_config.c), then every tensor the configuration implies bound by name from the safetensors
 * files, which stay mapped: F32 tensors are used in place, F16/BF16 ones converted once — at open
 * when their fp32 copies come to at most LM_CONVERT_AT_OPEN_MAX, else layer by layer at each
 * forward into one layer's arena (lm_layer_load, lm_embed, lm_head). A tensor the
 * configuration has no place for is an error too, since it means config.json and the weights
 * disagree (a layer more, a bias the config says is absent). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm_internal.h"

/* The slots this architecture has, less the biases its config switches off. */
int lm_slot_present(const bwt_lm *lm, lm_slot s) {
  if (!lm->arch->layer[s]) return 0;
  switch (s) {
    case LM_QKV_B: case LM_Q_B: case LM_K_B: case LM_V_B: case LM_O_B: return lm->cfg.attn_bias;
    case LM_GATE_B: case LM_UP_B: case LM_DOWN_B: return lm->cfg.mlp_bias;
    default: return 1;
  }
}

/* The shape a slot must have (ndim returned): (out, in) as torch.nn.Linear, or (in, out) for an
 * architecture storing Conv1D weights (GPT-2). */
int lm_slot_shape(const bwt_lm *lm, lm_slot s, int64_t *shape) {
  const bwt_lm_config *c = &lm->cfg;
  int64_t C = c->C, Q = (int64_t)c->NH * c->hs, K = (int64_t)c->NKV * c->hs, F = c->F, QKV = Q + 2 * K;
  static const char dims[LM_SLOT_COUNT][2] = {
      [LM_LN1_W] = "C", [LM_LN1_B] = "C", [LM_QKV_W] = "3C", [LM_QKV_B] = "3", [LM_Q_W] = "QC", [LM_Q_B] = "Q",
      [LM_K_W] = "KC", [LM_K_B] = "K", [LM_V_W] = "KC", [LM_V_B] = "K", [LM_O_W] = "CQ", [LM_O_B] = "C",
      [LM_LN2_W] = "C", [LM_LN2_B] = "C", [LM_GATE_W] = "FC", [LM_GATE_B] = "F", [LM_UP_W] = "FC",
      [LM_UP_B] = "F", [LM_DOWN_W] = "CF", [LM_DOWN_B] = "C"};
  int ndim = 0;
  for (int d = 0; d < 2 && dims[s][d]; d++) {
    char x = dims[s][d];
    shape[ndim++] = x == 'C' ? C : x == 'Q' ? Q : x == 'K' ? K : x == 'F' ? F : QKV;
  }
  if (ndim == 2 && lm->arch->in_out) {
    int64_t t = shape[0];
    shape[0] = shape[1];
    shape[1] = t;
  }
  return ndim;
}

/* Tracks which of the model's tensors were bound, the dtypes seen, the shards used. */
typedef struct {
  char *bound;                 /* (count) */
  const bwt_st_file *files[64];
  int n_files;
  int dtype_seen[BWT_DTYPE_COUNT];
  const char *dir; /* names the model in messages */
} binding;

static int find_name(const bwt_st_model *w, const char *name) {
  for (int i = 0; i < bwt_safetensors_model_count(w); i++)
    if (strcmp(bwt_safetensors_model_name(w, i), name) == 0) return i;
  return -1;
}

/* half, dtype: where a layer-wise model keeps an F16/BF16 tensor's bytes (NULL: convert it now). */
static bwt_status bind(bwt_lm *lm, binding *b, const char *name, int ndim, const int64_t *shape, const float **out,
                       const void **half, bwt_dtype *dtype) {
  int idx = find_name(lm->weights, name);
  if (idx < 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: missing tensor '%s' (its config.json implies it)", b->dir, name);
  const bwt_st_file *f;
  BWT_TRY(bwt_safetensors_model_file(lm->weights, name, &f));
  bwt_st_info info;
  BWT_TRY(bwt_safetensors_info(f, name, &info));
  if (half && info.dtype != BWT_DTYPE_F32) {
    BWT_TRY(bwt_safetensors_get(f, name, info.dtype, ndim, shape, half));
    *dtype = info.dtype;
    *out = NULL;
  } else {
    BWT_TRY(bwt_safetensors_model_get_f32(lm->weights, name, ndim, shape, out));
    if (info.dtype != BWT_DTYPE_F32) lm->cfg.converted_bytes += info.n_elems * sizeof(float);
  }
  b->bound[idx] = 1;
  b->dtype_seen[info.dtype] = 1;
  int known = 0;
  for (int i = 0; i < b->n_files; i++) known |= b->files[i] == f;
  if (!known && b->n_files < 64) b->files[b->n_files++] = f;
  lm->cfg.n_params += info.n_elems;
  return BWT_STATUS_OK;
}

/* A tensor's name in this checkpoint: the table's, less the prefix some exports drop. */
static const char *tensor_name(const bwt_lm *lm, char *buf, size_t n, const char *pattern, int l) {
  snprintf(buf, n, pattern, l);
  const char *p = lm->arch->prefix;
  if (lm->prefix_len && strncmp(buf, p, (size_t)lm->prefix_len) == 0) return buf + lm->prefix_len;
  return buf;
}

static int is_ignored(const hf_arch *a, const char *name) {
  for (int i = 0; i < 3 && a->ignored[i]; i++)
    if (strstr(name, a->ignored[i])) return 1;
  return 0;
}

static bwt_status bind_all(bwt_lm *lm, binding *b) {
  const bwt_lm_config *c = &lm->cfg;
  const hf_arch *a = lm->arch;
  char buf[256];
  /* GPT-2 exports come with "transformer." and without (the original checkpoints on the Hub). */
  if (a->prefix && find_name(lm->weights, a->embed) < 0 && find_name(lm->weights, a->embed + strlen(a->prefix)) >= 0)
    lm->prefix_len = (int)strlen(a->prefix);
  int64_t emb[2] = {c->V, c->C}, pos[2] = {c->max_pos, c->C}, norm[1] = {c->C}, vocab[1] = {c->V};
  int lw = lm->layerwise;
  BWT_TRY(bind(lm, b, tensor_name(lm, buf, sizeof buf, a->embed, 0), 2, emb, &lm->embed, lw ? &lm->embed_half : NULL,
               &lm->embed_dtype));
  if (a->pos_embed)
    BWT_TRY(bind(lm, b, tensor_name(lm, buf, sizeof buf, a->pos_embed, 0), 2, pos, &lm->pos_embed, NULL, NULL));
  BWT_TRY(bind(lm, b, tensor_name(lm, buf, sizeof buf, a->final_norm, 0), 1, norm, &lm->final_norm, NULL, NULL));
  if (a->final_norm_bias)
    BWT_TRY(bind(lm, b, tensor_name(lm, buf, sizeof buf, a->final_norm_bias, 0), 1, norm, &lm->final_norm_bias, NULL, NULL));
  if (c->tied) {
    lm->head = lm->embed;
    lm->head_half = lm->embed_half;
    lm->head_dtype = lm->embed_dtype;
    int h = find_name(lm->weights, a->head);
    if (h >= 0) b->bound[h] = 1; /* some exports write the tied copy too; Hugging Face ignores it */
  } else {
    BWT_TRY(bind(lm, b, a->head, 2, emb, &lm->head, lw ? &lm->head_half : NULL, &lm->head_dtype));
  }
  if (a->head_bias) BWT_TRY(bind(lm, b, a->head_bias, 1, vocab, &lm->head_bias, NULL, NULL));
  for (int l = 0; l < c->L; l++)
    for (int s = 0; s < LM_SLOT_COUNT; s++) {
      if (!lm_slot_present(lm, (lm_slot)s)) continue;
      int64_t shape[2];
      int ndim = lm_slot_shape(lm, (lm_slot)s, shape);
      lm_layer *ly = &lm->layers[l];
      BWT_TRY(bind(lm, b, tensor_name(lm, buf, sizeof buf, a->layer[s], l), ndim, shape, &ly->w[s],
                   lw ? &ly->half[s] : NULL, &ly->half_dtype[s]));
    }
  for (int i = 0; i < bwt_safetensors_model_count(lm->weights); i++) {
    const char *name = bwt_safetensors_model_name(lm->weights, i);
    if (b->bound[i] || is_ignored(a, name)) continue;
    return bwt_fail(BWT_STATUS_FORMAT, "%s: tensor '%s' has no place in a %s with %d layers%s (config.json and the weights disagree)",
                    b->dir, name, c->architecture, c->L,
                    c->attn_bias || c->mlp_bias ? "" : " and no biases");
  }
  return BWT_STATUS_OK;
}

/* Layer-wise when the fp32 copies of the model's F16/BF16 tensors would exceed
 * LM_CONVERT_AT_OPEN_MAX; the environment's BWT_LM_CONVERT=layer or =open decides instead (tests,
 * benchmarks). The logits are the same either way: the conversion is exact. */
static bwt_status choose_conversion(bwt_lm *lm) {
  size_t half = 0;
  for (int i = 0; i < bwt_safetensors_model_count(lm->weights); i++) {
    const char *name = bwt_safetensors_model_name(lm->weights, i);
    const bwt_st_file *f;
    bwt_st_info info;
    BWT_TRY(bwt_safetensors_model_file(lm->weights, name, &f));
    BWT_TRY(bwt_safetensors_info(f, name, &info));
    if (info.dtype != BWT_DTYPE_F32) half += info.n_elems * sizeof(float);
  }
  const char *force = getenv("BWT_LM_CONVERT");
  lm->layerwise = half > 0 && (force && strcmp(force, "layer") == 0 ? 1
                               : force && strcmp(force, "open") == 0 ? 0
                                                                      : half > LM_CONVERT_AT_OPEN_MAX);
  return BWT_STATUS_OK;
}

/* Elements of a layer's half tensors. */
static size_t layer_half_elems(const bwt_lm *lm, int l) {
  size_t n = 0;
  for (int s = 0; s < LM_SLOT_COUNT; s++)
    if (lm->layers[l].half[s]) {
      int64_t shape[2] = {0, 0};
      int nd = lm_slot_shape(lm, (lm_slot)s, shape);
      n += (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
    }
  return n;
}

static bwt_status alloc_arena(bwt_lm *lm) {
  size_t n = (size_t)LM_HEAD_ROWS * lm->cfg.C;
  for (int l = 0; l < lm->cfg.L; l++) {
    size_t m = layer_half_elems(lm, l);
    if (m > n) n = m;
  }
  lm->arena = bwt_calloc(n, sizeof(float), "layer conversion arena");
  if (!lm->arena) return BWT_STATUS_NOMEM;
  lm->cfg.converted_bytes += n * sizeof(float);
  return BWT_STATUS_OK;
}

/* dst(n) from the half values at src (2-byte aligned: bwt_safetensors_get aligns for the dtype), in
 * parallel pieces. */
#define LM_CONVERT_PIECE 65536
static void convert(float *dst, const void *src, size_t n, bwt_dtype dtype) {
  long pieces = (long)((n + LM_CONVERT_PIECE - 1) / LM_CONVERT_PIECE);
#pragma omp parallel for schedule(static) if (pieces > 1)
  for (long p = 0; p < pieces; p++) {
    size_t i0 = (size_t)p * LM_CONVERT_PIECE, m = n - i0 < LM_CONVERT_PIECE ? n - i0 : LM_CONVERT_PIECE;
    const uint16_t *h = (const uint16_t *)src + i0;
    float *d = dst + i0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (dtype == BWT_DTYPE_BF16) { /* the exact widening, vectorised: the 16 bits on top */
      for (size_t i = 0; i < m; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        memcpy(d + i, &u, sizeof u);
      }
      continue;
    }
#endif
    bwt_half_to_f32(d, h, m, dtype);
  }
}

void lm_layer_load(bwt_lm *lm, int l) {
  if (!lm->layerwise) return;
  lm_layer *ly = &lm->layers[l];
  float *at = lm->arena;
  for (int s = 0; s < LM_SLOT_COUNT; s++) {
    if (!ly->half[s]) continue;
    int64_t shape[2] = {0, 0};
    int nd = lm_slot_shape(lm, (lm_slot)s, shape);
    size_t n = (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
    convert(at, ly->half[s], n, ly->half_dtype[s]);
    ly->w[s] = at;
    at += n;
  }
}

void lm_embed(const bwt_lm *lm, float *x, const int32_t *tokens, int n) {
  size_t C = (size_t)lm->cfg.C;
  for (int j = 0; j < n; j++)
    bwt_half_to_f32(x + j * C, (const unsigned char *)lm->embed_half + 2 * C * (size_t)tokens[j], C, lm->embed_dtype);
}

bwt_status lm_head(bwt_lm *lm, float *out, const float *a, int n) {
  int C = lm->cfg.C, V = lm->cfg.V;
  float *part = bwt_calloc((size_t)n * LM_HEAD_ROWS, sizeof(float), "head logits");
  if (!part) return BWT_STATUS_NOMEM;
  for (int v0 = 0; v0 < V; v0 += LM_HEAD_ROWS) {
    int m = V - v0 < LM_HEAD_ROWS ? V - v0 : LM_HEAD_ROWS;
    convert(lm->arena, (const unsigned char *)lm->head_half + 2 * (size_t)C * v0, (size_t)m * C, lm->head_dtype);
    bwt_matmul_forward(part, a, lm->arena, lm->head_bias ? lm->head_bias + v0 : NULL, n, C, m);
    for (int j = 0; j < n; j++) bwt_copy(out + (size_t)j * V + v0, part + (size_t)j * m, (size_t)m);
  }
  free(part);
  return BWT_STATUS_OK;
}

bwt_status bwt_lm_open(bwt_lm **out, const char *dir) {
  *out = NULL;
  bwt_lm *lm = bwt_calloc(1, sizeof *lm, "language model");
  if (!lm) return BWT_STATUS_NOMEM;
  binding b = {0};
  b.dir = dir;
  bwt_status s = hf_config_read(&lm->cfg, &lm->arch, dir);
  if (s == BWT_STATUS_OK) s = bwt_safetensors_model_open(&lm->weights, dir);
  if (s == BWT_STATUS_OK) {
    lm->layers = bwt_calloc((size_t)lm->cfg.L, sizeof *lm->layers, "model layers");
    lm->inv_freq = bwt_calloc((size_t)lm->cfg.R / 2 + 1, sizeof *lm->inv_freq, "rope frequencies");
    lm->kcache = bwt_calloc((size_t)lm->cfg.L, sizeof *lm->kcache, "key cache");
    lm->vcache = bwt_calloc((size_t)lm->cfg.L, sizeof *lm->vcache, "value cache");
    b.bound = bwt_calloc((size_t)bwt_safetensors_model_count(lm->weights) + 1, 1, "tensor flags");
    if (!lm->layers || !lm->inv_freq || !lm->kcache || !lm->vcache || !b.bound) s = BWT_STATUS_NOMEM;
  }
  if (s == BWT_STATUS_OK) s = choose_conversion(lm);
  if (s == BWT_STATUS_OK) s = bind_all(lm, &b);
  if (s == BWT_STATUS_OK && lm->layerwise) s = alloc_arena(lm);
  if (s == BWT_STATUS_OK) {
    bwt_lm_config *c = &lm->cfg;
    c->n_shards = b.n_files;
    int kinds = 0;
    for (int d = 0; d < BWT_DTYPE_COUNT; d++)
      if (b.dtype_seen[d]) {
        kinds++;
        snprintf(c->dtype, sizeof c->dtype, "%s", bwt_dtype_name((bwt_dtype)d));
      }
    if (kinds > 1) snprintf(c->dtype, sizeof c->dtype, "mixed");
    if (c->R) bwt_rope_inv_freq(lm->inv_freq, c->R, c->rope_theta, &c->rope_scaling);
  }
  free(b.bound);
  if (s != BWT_STATUS_OK) {
    bwt_lm_close(lm);
    return s;
  }
  *out = lm;
  return BWT_STATUS_OK;
}

void bwt_lm_close(bwt_lm *lm) {
  if (!lm) return;
  for (int l = 0; lm->kcache && l < lm->cfg.L; l++) free(lm->kcache[l]);
  for (int l = 0; lm->vcache && l < lm->cfg.L; l++) free(lm->vcache[l]);
  free(lm->kcache);
  free(lm->vcache);
  free(lm->layers);
  free(lm->arena);
  free(lm->reinit);
  free(lm->inv_freq);
  bwt_safetensors_model_close(lm->weights);
  free(lm);
}

const bwt_lm_config *bwt_lm_config_of(const bwt_lm *lm) { return &lm->cfg; }
void bwt_lm_reset(bwt_lm *lm) { lm->pos = 0; }
int bwt_lm_position(const bwt_lm *lm) { return lm->pos; }
