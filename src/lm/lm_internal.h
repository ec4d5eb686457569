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
};

/* The forward pass over n tokens after the cached ones, reporting to hooks (NULL: none). */
bwt_status lm_forward(bwt_lm *lm, const int32_t *tokens, int n, float *logits, lm_hooks *hooks);

#endif
