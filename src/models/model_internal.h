/* Private plumbing shared by the model files: the descriptor table builder and the per-architecture
 * operations behind bwt_model_*. */
#ifndef BWT_MODEL_INTERNAL_H
#define BWT_MODEL_INTERNAL_H

#include "bwt/capture.h"
#include "bwt/model.h"

/* What a tensor is; the initialisation scheme (bwt_init) decides from it how the tensor starts
 * (model.c's table). fan_in is the input width of the linear layer a weight or bias belongs to. */
typedef enum {
  INIT_ZEROS,           /* LayerNorm biases: zero in every scheme */
  INIT_ONES,            /* norm weights: one in every scheme */
  INIT_EMBEDDING,       /* token and position rows */
  INIT_WEIGHT,          /* a linear layer's weight (out, in) */
  INIT_WEIGHT_RESIDUAL, /* a linear weight that writes into the residual stream */
  INIT_BIAS,            /* a linear layer's bias */
  INIT_UNIFORM_HIDDEN,  /* LSTM weights and biases: U(−1/√C, 1/√C), torch.nn.LSTM's default, in every scheme */
  INIT_SSM_A_LOG,       /* Mamba's A_log (Di, Ns): log(1 + n) in column n (S4D-real), in every scheme */
  INIT_SSM_DT_BIAS,     /* Mamba's dt_proj bias: softplus⁻¹(Δ), Δ log-uniform in [0.001, 0.1], in every scheme */
  /* The simplified Mamba's, in every scheme (its script sets them whatever the rest starts at): */
  INIT_SSM_A_LOG_SHARED,         /* A_log (Ns): log(0.1·n), n = 1..Ns */
  INIT_SSM_DT_WEIGHT_SIMPLIFIED, /* dt_proj.weight (Di, 1): U(±0.01) */
  INIT_SSM_DT_BIAS_SIMPLIFIED    /* dt_proj.bias: 0.1 */
} tensor_init;

typedef struct {
  tensor_init kind;
  int fan_in;
} tensor_start;

/* The most experts of a mixture-of-experts MLP (cfg.experts; the routing kernels' bound). */
#define MOE_MAX_EXPERTS 64

/* The offset of a tensor the configuration leaves out (attention biases with attn_bias off). */
#define NO_TENSOR ((size_t)-1)

typedef struct {
  /* Declares the tensors (model_add_tensor) and allocates the architecture's private state. */
  bwt_status (*build)(bwt_model *m);
  /* The forward's options are in model_impl.fwd (model_head_mask, model_skip_attn, model_skip_mlp). */
  bwt_status (*forward)(bwt_model *m, const bwt_batch *batch, const float **logits);
  /* trace (NULL: none) records block trace->layer's attention (bwt_model_backward_traced). */
  bwt_status (*backward)(bwt_model *m, const bwt_batch *batch, const float *dlogits, bwt_attention_trace *trace);
  void (*destroy)(bwt_model *m);
  /* Copies the capture points of the forward just run (NULL: the architecture has none) ... */
  bwt_status (*capture)(const bwt_model *m, const bwt_batch *batch, bwt_capture *cap);
  unsigned capture_points; /* ... of these (bwt_capture_point) */
} model_arch_ops;

typedef struct {
  const model_arch_ops *ops;
  tensor_start *init; /* (n_tensors) how each tensor starts */
  int cap;           /* capacity of the table */
  int table_oom;     /* a model_add_tensor ran out of memory */
  void *arch;        /* the architecture's own state */
  float *sinusoids;  /* (sin_rows, C) the fixed position table, when positions are sinusoidal */
  int sin_rows;
  bwt_forward_options fwd; /* the options of the forward just run, for its backward */
  double aux_loss;         /* its auxiliary loss (bwt_model_aux_loss), summed by the architecture */
} model_impl;

extern const model_arch_ops transformer_ops;
extern const model_arch_ops mlp_ops; /* both the context-free and the window MLP */
extern const model_arch_ops lstm_ops;
extern const model_arch_ops mamba_ops;

/* A tensor's role and block (−1 outside the blocks). */
typedef struct {
  bwt_tensor_role role;
  int layer;
} tensor_id;
#define TENSOR_ID(role, layer) ((tensor_id){(role), (layer)})

/* Appends a tensor to the table and returns its offset in the arenas. Shape (d0) or (d0, d1); a
 * weight's fan_in is d1. A 1-D tensor other than a norm's weight is its role's bias. */
size_t model_add_tensor(bwt_model *m, const char *name, tensor_id id, int ndim, int d0, int d1, tensor_init init);
/* Appends the bias (n) of a linear layer with fan_in inputs. */
size_t model_add_bias(bwt_model *m, const char *name, tensor_id id, int n, int fan_in);
/* The parameters at an offset, or NULL for NO_TENSOR (an optional bias that is absent). */
static inline float *model_param(const bwt_model *m, size_t off) { return off == NO_TENSOR ? NULL : m->params + off; }
static inline float *model_grad(const bwt_model *m, size_t off) { return off == NO_TENSOR ? NULL : m->grads + off; }
/* Declares pos_emb (max_T rows) for learned positions; returns its offset (0 for sinusoids). */
size_t model_declare_positions(bwt_model *m);
/* The position rows 0..T-1: the learned table at wpe, or the sinusoids (NULL if they cannot be
 * allocated, with the failure recorded). */
const float *model_positions(bwt_model *m, size_t wpe, int T);
/* Where the position rows' gradients go: the learned table's, or NULL for sinusoids. */
float *model_position_grads(bwt_model *m, size_t wpe);
/* The forward options of block l: its heads' mask (NULL: intact) and whether its branches are off. */
static inline const float *model_head_mask(const bwt_model *m, int l) {
  const float *mask = ((const model_impl *)m->impl)->fwd.head_mask;
  return mask ? mask + (size_t)l * m->cfg.n_heads : NULL;
}
static inline int model_skip_block(const bwt_model *m, int l) {
  const uint8_t *s = ((const model_impl *)m->impl)->fwd.skip_block;
  return s && s[l];
}
static inline int model_skip_attn(const bwt_model *m, int l) {
  const uint8_t *s = ((const model_impl *)m->impl)->fwd.skip_attn;
  return (s && s[l]) || model_skip_block(m, l);
}
static inline int model_skip_mlp(const bwt_model *m, int l) {
  const uint8_t *s = ((const model_impl *)m->impl)->fwd.skip_mlp;
  return (s && s[l]) || model_skip_block(m, l);
}
/* The architecture's private state. */
static inline void *model_arch(const bwt_model *m) { return ((model_impl *)m->impl)->arch; }

/* Grows *buf to hold n floats (kept when large enough); for activation arenas sized by batch. */
bwt_status model_reserve(float **buf, size_t *cap, size_t n, const char *what);
/* The same for the row indices the gathers of a batch read (host memory, rebuilt per forward). */
bwt_status model_reserve_index(int32_t **idx, size_t *cap, size_t n);

#endif
