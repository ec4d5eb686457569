/* The loaded model, shared by the loader (hf_config.c, hf_model.c), the forward pass
 * (lm_forward.c) and the capture (lm_capture.c). */
#ifndef BWT_LM_INTERNAL_H
#define BWT_LM_INTERNAL_H

#include "bwt/lm.h"
#include "bwt/safetensors.h"

/* One block's tensors; an architecture names those it has (the others stay NULL in its table row).
 * LM_QKV is a fused q/k/v projection; LM_GATE is the MLP's first projection: the gate of a gated
 * (SwiGLU) MLP, the only input projection (c_fc, dense_h_to_4h, fc1) of a plain one. */
typedef enum {
  LM_LN1_W, LM_LN1_B,
  LM_QKV_W, LM_QKV_B, LM_Q_W, LM_Q_B, LM_K_W, LM_K_B, LM_V_W, LM_V_B, LM_O_W, LM_O_B,
  LM_LN2_W, LM_LN2_B,
  LM_GATE_W, LM_GATE_B, LM_UP_W, LM_UP_B, LM_DOWN_W, LM_DOWN_B,
  LM_SLOT_COUNT
} lm_slot;

typedef enum { LM_NORM_RMS, LM_NORM_LAYER } lm_norm_kind;
typedef enum { LM_POS_ROTARY, LM_POS_LEARNED } lm_pos_kind;
/* A fused projection's output order: GPT-2's c_attn is all q, then all k, then all v; GPT-NeoX's
 * query_key_value is per head: head 0's q, k, v (hs rows each), then head 1's, ... */
typedef enum { LM_QKV_SEPARATE, LM_QKV_BLOCKS, LM_QKV_PER_HEAD } lm_qkv_kind;
/* x + attn(ln1(x)) then + mlp(ln2(·)) (Llama, GPT-2); or x + attn(ln1(x)) + mlp(ln2(x)) (NeoX's
 * use_parallel_residual, Phi with ln2 = ln1). */
typedef enum { LM_RESID_SEQUENTIAL, LM_RESID_PARALLEL } lm_resid_kind;

/* The config.json keys an architecture spells its settings with (Hugging Face's attribute names). */
typedef struct {
  const char *layers, *hidden, *heads, *mlp, *positions, *eps, *act, *theta, *rotary;
} hf_keys;

/* One row of the architecture table. */
typedef struct {
  const char *hf_name;    /* config.json architectures[0] */
  const char *model_type; /* config.json model_type */
  const hf_keys *keys;
  double eps_default, rotary_default; /* norm eps and rotated fraction when config.json has none */
  int tied_default;       /* tie_word_embeddings when absent (PretrainedConfig's true for GPT-2) */
  int bias_default;       /* attention_bias / mlp_bias when absent */
  int gated;              /* SwiGLU MLP (gate, up, down) rather than fc, GELU, proj */
  lm_norm_kind norm;
  lm_pos_kind pos;
  lm_qkv_kind qkv;
  lm_resid_kind resid;
  const char *parallel_key; /* config key switching the residual form (NeoX), NULL: fixed */
  int in_out;             /* projections stored (in, out): GPT-2's Conv1D */
  const char *window_key; /* the config key of a sliding window, NULL: none */
  int default_window;     /* its value when the key is absent (Mistral's config default) */
  const char *prefix;     /* a prefix some exports drop ("transformer."): names match with or without */
  const char *embed, *pos_embed, *final_norm, *final_norm_bias, *head, *head_bias;
  const char *layer[LM_SLOT_COUNT]; /* printf patterns with the layer index; NULL: none */
  const char *ignored[3];           /* buffers the checkpoint may hold that bwt computes itself */
  const char *off_keys[2];          /* config keys bwt cannot honour when true */
  const char *foreign_type;         /* a model_type with this class name but other tensors (Phi's
                                       old remote code, "phi-msft": transformer.h.{l}.mixer.Wqkv …) */
} hf_arch;

/* Parses dir/config.json into cfg and finds its row of the table. */
bwt_status hf_config_read(bwt_lm_config *cfg, const hf_arch **arch, const char *dir);
/* The same from a parsed config (path names it in messages). */
struct cJSON;
bwt_status hf_config_parse(bwt_lm_config *cfg, const hf_arch **arch, const struct cJSON *root, const char *path);
/* The row whose class name (LlamaForCausalLM) or model_type (llama) is name; NULL if none. */
const hf_arch *hf_arch_find(const char *name);

typedef struct {
  const float *w[LM_SLOT_COUNT]; /* NULL: absent (biases the config does not have) */
  /* Layer-wise conversion (bwt_lm.layerwise): an F16/BF16 tensor's bytes in the mapped file, made
   * fp32 in the model's arena by lm_layer_load before the layer runs (w then points there). */
  const void *half[LM_SLOT_COUNT];
  bwt_dtype half_dtype[LM_SLOT_COUNT];
} lm_layer;

/* Observes the activations of a forward pass (lm_capture.c): wants(name) says whether a point is
 * needed for a capture or an edit (so the forward computes extras such as scores only then); put
 * first lets the edits matching name change data in place — only where editable: the buffer the
 * forward reads on from (a point computed aside, such as hook_normalized or the pattern, is an error
 * to edit) — then copies it for the capture. */
typedef struct lm_hooks lm_hooks;
int lm_hooks_want(lm_hooks *h, const char *name);
bwt_status lm_hooks_put(lm_hooks *h, const char *name, float *data, int editable, int ndim, int64_t d0,
                        int64_t d1, int64_t d2);

struct bwt_lm {
  bwt_lm_config cfg;
  const hf_arch *arch;
  bwt_st_model *weights;
  const float *embed, *head;              /* (V,C), (V,C) — head == embed when tied */
  const float *pos_embed;                 /* (max_pos,C) learned positions, NULL: rotary */
  const float *final_norm, *final_norm_bias, *head_bias; /* (C), (C) or NULL, (V) or NULL */
  int prefix_len;                         /* characters of arch->prefix this checkpoint drops */
  lm_layer *layers;                       /* (L) */
  double *inv_freq;                       /* (R/2) */
  float **kcache, **vcache;               /* (L) each (cap, NKV·hs): rotated keys and values */
  int cap, pos;                           /* cache rows allocated and filled */
  /* F16/BF16 weights whose fp32 copy would exceed LM_CONVERT_AT_OPEN_MAX are converted layer by
   * layer at each forward into arena (the largest layer, or LM_HEAD_ROWS rows of the head), so the
   * process holds the mapped file plus one layer in fp32; embed_half/head_half (non-NULL then) are
   * the embeddings' and head's bytes, read a row range at a time. */
  int layerwise;
  float *arena;
  const void *embed_half, *head_half;
  bwt_dtype embed_dtype, head_dtype;
  float *reinit; /* bwt_lm_reinit's weights (one block), NULL: the files' */
};

#define LM_CONVERT_AT_OPEN_MAX ((size_t)1 << 30) /* bytes of fp32 copies made at open, at most */
#define LM_HEAD_ROWS 4096                         /* head rows converted at a time (layer-wise) */

/* Whether the model has slot s (its row names it and the config keeps its bias), and its shape
 * (ndim returned): (out, in), or (in, out) for Conv1D weights. Only lm->cfg and lm->arch are read
 * (lm_random.c calls them on a model that is only those two). */
int lm_slot_present(const bwt_lm *lm, lm_slot s);
int lm_slot_shape(const bwt_lm *lm, lm_slot s, int64_t *shape);

/* Layer-wise conversion (no-ops for a model converted at open or in F32): layer l's weights into the
 * arena; the embeddings of tokens(n) into x (n,C); logits out(n,V) = a(n,C) Headᵀ. */
void lm_layer_load(bwt_lm *lm, int l);
void lm_embed(const bwt_lm *lm, float *x, const int32_t *tokens, int n);
bwt_status lm_head(bwt_lm *lm, float *out, const float *a, int n);

/* The forward pass over n tokens after the cached ones, reporting to hooks (NULL: none). */
bwt_status lm_forward(bwt_lm *lm, const int32_t *tokens, int n, float *logits, lm_hooks *hooks);

#endif
