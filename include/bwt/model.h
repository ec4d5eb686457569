/* Models: next-token (or S-way readout) networks with forward/backward over a task batch.
 *
 * Every model keeps its parameters and gradients in two contiguous arenas carved by one descriptor
 * table (name, shape, offset, whether weight decay applies). The table gives checkpoint tensor
 * names, optimiser loops and test loops; nothing else lists the tensors.
 *
 * Logits are produced only at the supervised positions of the batch: forward returns a
 * (B·n_sup, K) array whose row b·n_sup + j belongs to position batch->sup_pos[b·n_sup + j].
 *
 * Architectures (SPEC.md §2):
 *   transformer — pre-norm blocks x += Attn(Norm(x)); x += MLP(Norm(x)), final norm, head; causal
 *                 multi-head attention with separate Q, K, V, O projections (with biases); MLP
 *                 C→4C→C with exact GELU; learned absolute positions; head tied to the token
 *                 embedding or untied (no bias). With experts > 0 each block's MLP is a mixture of
 *                 experts (docs/moe.md).
 *   mlp         — the reference's context-free control: token + position embedding, n_layers
 *                 residual blocks x += fc2(gelu(fc1(Norm(x)))), final norm, head. Sees only its own
 *                 token and position.
 *   window_mlp  — the fair flat baseline: the embeddings of the last `window` tokens (zeros before
 *                 the start) are concatenated, projected to C, position added, then the mlp's blocks.
 *   lstm        — the recurrent baseline: token + position embedding, n_layers stacked LSTM layers
 *                 of width C (torch.nn.LSTM: gates i, f, g, o, both biases), final norm, head.
 */
#ifndef BWT_MODEL_H
#define BWT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/status.h"
#include "bwt/task.h"

typedef enum { BWT_ARCH_TRANSFORMER, BWT_ARCH_MLP, BWT_ARCH_WINDOW_MLP, BWT_ARCH_LSTM, BWT_ARCH_MAMBA, BWT_ARCH_COUNT } bwt_arch;
typedef enum { BWT_NORM_RMS, BWT_NORM_LAYER } bwt_norm;

/* What an architecture can do. Code outside src/models asks for capabilities (bwt_model_has),
 * never for an architecture: a new architecture with attention gets the geometry for free. */
typedef enum {
  BWT_CAP_ATTENTION = 1 << 0,        /* causal multi-head attention: heads, Q/K/V/O, ablations, key frames */
  BWT_CAP_CAPTURE = 1 << 1,          /* the capture points of bwt_model_capture (bwt/capture.h) */
  BWT_CAP_TRACE = 1 << 2,            /* bwt_model_backward_traced (bwt/capture.h) */
  BWT_CAP_RECURRENT = 1 << 3,        /* a state carried along the sequence */
  BWT_CAP_CONTINUOUS_INPUT = 1 << 4, /* takes input vectors (input_dim > 0) as well as tokens */
  BWT_CAP_WINDOW = 1 << 5,           /* sees the last `window` tokens, concatenated */
  BWT_CAP_CONTEXT = 1 << 6,          /* its output can depend on earlier positions */
  BWT_CAP_SSM = 1 << 7,              /* a selective state-space scan (Mamba): d_state, d_conv, expand */
  BWT_CAP_EXPERTS = 1 << 8           /* a mixture-of-experts MLP on request (experts > 0; docs/moe.md) */
} bwt_arch_cap;

/* One row of the architecture table (src/models/model.c). */
typedef struct {
  const char *name;    /* --arch and config.json's "arch" */
  unsigned caps;       /* bwt_arch_cap bits */
  int default_layers;
  bwt_norm default_norm; /* the reference's: RMSNorm for the transformer, LayerNorm for the baselines */
} bwt_arch_info;
/* Position encodings: learned rows (pos_emb, max_T of them; rows beyond the training length get
 * no gradient and keep their initial values, shrunk by weight decay), the fixed sinusoids of
 * Vaswani et al. (no parameters; any length), or none (a causal model can still count positions
 * through its attention; any length). */
typedef enum { BWT_POS_LEARNED, BWT_POS_SINUSOIDAL, BWT_POS_NONE } bwt_positions;
/* Initialisation schemes. bwt: GPT-2's (matrices and embeddings N(0, 0.02), the projections that
 * write into the residual stream N(0, 0.02/√(2·n_layers)), biases 0). torch: PyTorch's module
 * defaults, which the papers' scripts keep (embeddings N(0, 1), linear weights and biases
 * U(±1/√fan_in)). Norm weights start at 1 and LSTM tensors at U(±1/√C) in both. */
typedef enum { BWT_INIT_BWT, BWT_INIT_TORCH } bwt_init;

/* Mamba's block. mamba: Gu & Dao's. simplified: the reference repository's (its
 * experiments/paper1_{bijection,hmm}/train_mamba.py), kept so the papers' Mamba numbers can be reproduced: no norm
 * before the block, Δ from a rank-1 projection clamped to [1e-4, 10], one decay per state shared by the
 * channels (A = −exp(min(A_log, 5)), A_log starting at log(0.1·n)), the decay, update and state
 * clamped in the scan, the scan's output LayerNormed before D·u is added (docs/models.md). */
typedef enum { BWT_SSM_MAMBA, BWT_SSM_SIMPLIFIED } bwt_ssm_variant;

typedef struct {
  bwt_arch arch;
  int vocab;     /* V: input tokens */
  int n_classes; /* K: readout size */
  int max_T;     /* learned positions 0..max_T-1 (the longest sequence; sinusoids have no limit) */
  int d_model;   /* C */
  int n_layers;
  int n_heads;   /* transformer only; must divide d_model */
  bwt_norm norm;
  int tied_head; /* head weight = token embedding; needs n_classes == vocab */
  int window;    /* window_mlp: tokens seen (1..max_T) */
  bwt_positions positions;
  int input_dim; /* > 0: continuous inputs (vocab 0) through in_proj (C, input_dim) instead of tok_emb */
  bwt_init init;
  int attn_bias; /* transformer: the Q, K, V, O projections have biases (the reference's have none) */
  int ssm_state;  /* mamba: state size per channel, d_state (0: 16) */
  int ssm_conv;   /* mamba: causal convolution taps, d_conv (0: 4) */
  int ssm_expand; /* mamba: inner channels per model channel, expand (0: 2) */
  bwt_ssm_variant ssm_variant;
  /* Mixture of experts (transformer; docs/moe.md): experts > 0 replaces each block's MLP by E experts
   * of which a router picks expert_top_k (1 or 2) per row; expert_hidden is each expert's hidden
   * width (0: 4·d_model/expert_top_k, the dense MLP's active parameters); moe_aux weighs the
   * load-balancing loss (bwt_model_aux_loss). */
  int experts;
  int expert_top_k;
  int expert_hidden;
  double moe_aux;
} bwt_model_config;

#define BWT_TENSOR_NAME_MAX 48

/* What a tensor is for, whatever the architecture calls it: code finds tensors by role and layer
 * (bwt_model_tensor), never by name; optimiser groups (learning-rate multipliers, decay) are per role. */
typedef enum {
  BWT_ROLE_TOKEN_EMBEDDING,  /* tok_emb (V, C) */
  BWT_ROLE_INPUT_PROJ,       /* in_proj (C, input_dim): continuous inputs */
  BWT_ROLE_POSITION,         /* pos_emb (max_T, C): learned positions */
  BWT_ROLE_WINDOW_PROJ,      /* window_mlp's projection of the concatenated window */
  BWT_ROLE_ATTN_NORM,        /* a block's norm before attention */
  BWT_ROLE_ATTN_Q,           /* W_Q (C, C) */
  BWT_ROLE_ATTN_K,           /* W_K */
  BWT_ROLE_ATTN_V,           /* W_V */
  BWT_ROLE_ATTN_O,           /* W_O, writes into the residual stream */
  BWT_ROLE_MLP_NORM,         /* a block's norm before its MLP */
  BWT_ROLE_MLP_IN,           /* fc1 (4C, C) */
  BWT_ROLE_MLP_OUT,          /* fc2 (C, 4C), writes into the residual stream */
  BWT_ROLE_RECURRENT_IN,     /* LSTM weight_ih / bias_ih (4C, C) */
  BWT_ROLE_RECURRENT_HIDDEN, /* LSTM weight_hh / bias_hh */
  BWT_ROLE_SSM_NORM,         /* a Mamba block's norm */
  BWT_ROLE_SSM_IN,           /* in_proj (2Di, C): the scan's input x and the gate z */
  BWT_ROLE_SSM_CONV,         /* conv1d (Di, d_conv) and its bias */
  BWT_ROLE_SSM_X,            /* x_proj (R + 2·d_state, Di): the step rank's input, B and C */
  BWT_ROLE_SSM_DT,           /* dt_proj (Di, R) and its bias */
  BWT_ROLE_SSM_A,            /* A_log (Di, d_state): A = −exp(A_log) */
  BWT_ROLE_SSM_D,            /* D (Di): the skip connection */
  BWT_ROLE_SSM_OUT,          /* out_proj (C, Di), writes into the residual stream */
  BWT_ROLE_FINAL_NORM,       /* norm_f */
  BWT_ROLE_HEAD,             /* the readout (K, C); absent when tied to the token embedding */
  BWT_ROLE_MLP_ROUTER,       /* a mixture of experts' router (E, C); its experts' fc1 and fc2 are
                                MLP_IN and MLP_OUT (bwt_model_tensor finds expert 0's) */
  BWT_ROLE_COUNT
} bwt_tensor_role;

typedef struct {
  char name[BWT_TENSOR_NAME_MAX]; /* checkpoint name, e.g. "blocks.0.attn.wq.weight" */
  int ndim;                       /* 1 or 2 */
  int shape[2];
  size_t offset; /* into the parameter (and gradient) arena, in floats */
  size_t size;   /* elements */
  int decay;     /* AdamW weight decay applies (2-D tensors: embeddings, projections, head) */
  bwt_tensor_role role;
  int layer; /* the block (or LSTM layer) it belongs to; −1 outside the blocks */
  int bias;  /* 1 for the bias (or LayerNorm shift) of its role, 0 for the weight */
} bwt_tensor_desc;

typedef struct bwt_model {
  bwt_model_config cfg;
  int n_tensors;
  bwt_tensor_desc *tensors;
  size_t n_params;
  float *params; /* (n_params) */
  float *grads;  /* (n_params) */
  void *impl; /* architecture-private: offsets, activations */
} bwt_model;

/* What a forward pass runs with besides its batch; all NULL (or no options) is the intact model.
 * Head masks and branch switches need BWT_CAP_ATTENTION; skipping whole blocks, an architecture of
 * residual blocks (the transformer, Mamba). The arrays are the caller's and must stay valid until the
 * backward of that forward, which uses the same options. */
typedef struct {
  const float *head_mask;   /* (n_layers, n_heads) multiplies each head's attention weights
                               (1 = intact, 0 = the head removed); NULL: every head intact */
  const uint8_t *skip_attn; /* (n_layers) 1 removes the block's attention branch; NULL: none */
  const uint8_t *skip_mlp;  /* (n_layers) 1 removes its MLP branch (both: the block bypassed) */
  const uint8_t *skip_block; /* (n_layers) 1 bypasses the whole block (a Mamba block's mixer; a
                                transformer's two branches); NULL: none */
} bwt_forward_options;

/* Fills cfg with the defaults for arch sized for task (vocab, classes, positions). */
void bwt_model_config_default(bwt_model_config *cfg, bwt_arch arch, const bwt_task *task);
/* Checks cfg for impossible sizes (a clear message naming the field). */
bwt_status bwt_model_config_check(const bwt_model_config *cfg);
/* Validates cfg (clear message for impossible sizes) and creates the model with weights drawn from
 * seed, by the scheme cfg->init names. */
bwt_status bwt_model_create(bwt_model **out, const bwt_model_config *cfg, uint64_t seed);
void bwt_model_free(bwt_model *model);
/* The parameter count of the model cfg describes, without allocating its arenas (to check a file's
 * size before trusting the sizes it claims). */
bwt_status bwt_model_count_params(const bwt_model_config *cfg, size_t *n_params);
/* Checks that a task's batches fit this model (vocab, classes, positions, input kind). */
bwt_status bwt_model_check_task(const bwt_model *model, const bwt_task *task);

/* Forward pass; *logits points to model-owned (B·n_sup, K) storage valid until the next forward. */
bwt_status bwt_model_forward(bwt_model *model, const bwt_batch *batch, const float **logits);
/* The same with options (NULL: none). */
bwt_status bwt_model_forward_with(bwt_model *model, const bwt_batch *batch, const bwt_forward_options *opt,
                                  const float **logits);
/* The auxiliary loss of the forward just run, already weighted (0 without one): the mixture of
 * experts' load-balancing loss summed over the blocks. The trainer adds it to the reported loss;
 * bwt_model_backward adds its gradient. */
double bwt_model_aux_loss(const bwt_model *model);
/* Backward of the forward just run on the same batch: accumulates into model->grads (the auxiliary
 * loss's gradient included). */
bwt_status bwt_model_backward(bwt_model *model, const bwt_batch *batch, const float *dlogits);
void bwt_model_zero_grad(bwt_model *model);
const bwt_tensor_desc *bwt_model_find_tensor(const bwt_model *model, const char *name);
/* The weight (bias 0) or bias (bias 1) of role at layer (−1 for tensors outside the blocks), or
 * NULL if the model has none. */
const bwt_tensor_desc *bwt_model_tensor(const bwt_model *model, bwt_tensor_role role, int layer, int bias);
/* The parameters of a tensor the model has (NULL for NULL). */
float *bwt_model_params_of(const bwt_model *model, const bwt_tensor_desc *tensor);
const char *bwt_tensor_role_name(bwt_tensor_role role);

/* The architecture table's row for arch (NULL if arch is not one). */
const bwt_arch_info *bwt_arch_info_of(bwt_arch arch);
/* Whether arch (the model's architecture) has every capability in caps. */
int bwt_arch_has(bwt_arch arch, unsigned caps);
static inline int bwt_model_has(const bwt_model *model, unsigned caps) { return bwt_arch_has(model->cfg.arch, caps); }
/* The names of the architectures with every capability in caps, joined by sep ("transformer or
 * lstm"), into buf; returns buf. */
const char *bwt_arch_list(unsigned caps, const char *sep, char *buf, size_t cap);
const char *bwt_arch_name(bwt_arch arch);
bwt_status bwt_arch_parse(const char *s, bwt_arch *arch);
const char *bwt_norm_name(bwt_norm norm);
bwt_status bwt_norm_parse(const char *s, bwt_norm *norm);
const char *bwt_positions_name(bwt_positions p);
bwt_status bwt_positions_parse(const char *s, bwt_positions *p);
const char *bwt_init_name(bwt_init init);
bwt_status bwt_init_parse(const char *s, bwt_init *init);
const char *bwt_ssm_variant_name(bwt_ssm_variant v);
bwt_status bwt_ssm_variant_parse(const char *s, bwt_ssm_variant *v);

#endif
