/* The loaded model, shared by the loader (hf_config.c, hf_model.c), the forward pass
 * (lm_forward.c) and the capture (lm_capture.c). */
#ifndef BWT_LM_INTERNAL_H
#define BWT_LM_INTERNAL_H

#include "bwt/lm.h"
#include "bwt/safetensors.h"

/* One block's tensors, in the order of the architecture table's layer patterns. */
typedef enum {
  LM_LN1_W,
  LM_Q_W, LM_Q_B, LM_K_W, LM_K_B, LM_V_W, LM_V_B, LM_O_W, LM_O_B,
  LM_LN2_W,
  LM_GATE_W, LM_GATE_B, LM_UP_W, LM_UP_B, LM_DOWN_W, LM_DOWN_B,
  LM_SLOT_COUNT
} lm_slot;

/* One row of the architecture table. */
typedef struct {
  const char *hf_name;    /* config.json architectures[0] */
  const char *model_type; /* config.json model_type */
  const char *window_key; /* the config key of a sliding window, NULL: none */
  int default_window;     /* its value when the key is absent (Mistral's config default) */
  const char *embed, *final_norm, *head;
  const char *layer[LM_SLOT_COUNT]; /* printf patterns with the layer index */
  const char *ignored;              /* tensors the checkpoint may hold that bwt computes itself */
} hf_arch;

/* Parses dir/config.json into cfg and finds its row of the table. */
bwt_status hf_config_read(bwt_lm_config *cfg, const hf_arch **arch, const char *dir);

typedef struct {
  const float *w[LM_SLOT_COUNT]; /* NULL: absent (biases the config does not have) */
  /* Layer-wise conversion (bwt_lm.layerwise): an F16/BF16 tensor's bytes in the mapped file, made
   * fp32 in the model's arena by lm_layer_load before the layer runs (w then points there). */
  const void *half[LM_SLOT_COUNT];
  bwt_dtype half_dtype[LM_SLOT_COUNT];
} lm_layer;

/* Observes the activations of a forward pass (lm_capture.c): wants(name) says whether a point is
 * needed (so the forward computes extras such as scores only then), put copies it. */
typedef struct lm_hooks lm_hooks;
int lm_hooks_want(lm_hooks *h, const char *name);
bwt_status lm_hooks_put(lm_hooks *h, const char *name, const float *data, int ndim, int64_t d0,
                        int64_t d1, int64_t d2);

struct bwt_lm {
  bwt_lm_config cfg;
  const hf_arch *arch;
  bwt_st_model *weights;
  const float *embed, *final_norm, *head; /* (V,C), (C), (V,C) — head == embed when tied */
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
};

#define LM_CONVERT_AT_OPEN_MAX ((size_t)1 << 30) /* bytes of fp32 copies made at open, at most */
#define LM_HEAD_ROWS 4096                         /* head rows converted at a time (layer-wise) */

/* Layer-wise conversion (no-ops for a model converted at open or in F32): layer l's weights into the
 * arena; the embeddings of tokens(n) into x (n,C); logits out(n,V) = a(n,C) Headᵀ. */
void lm_layer_load(bwt_lm *lm, int l);
void lm_embed(const bwt_lm *lm, float *x, const int32_t *tokens, int n);
bwt_status lm_head(bwt_lm *lm, float *out, const float *a, int n);

/* The forward pass over n tokens after the cached ones, reporting to hooks (NULL: none). */
bwt_status lm_forward(bwt_lm *lm, const int32_t *tokens, int n, float *logits, lm_hooks *hooks);

#endif
