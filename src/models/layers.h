/* Building blocks shared by the architectures: a norm (RMSNorm or LayerNorm per the config), the
 * residual feed-forward branch x += fc2(gelu(fc1(Norm(x)))), the supervised-row gather and the
 * output head. Parameters are offsets into the model's arenas; activations are caller-owned
 * pointers into the architecture's activation arena. Letters: N rows, C width, H = 4C, M supervised
 * rows, K classes. */
#ifndef BWT_LAYERS_H
#define BWT_LAYERS_H

#include "model_internal.h"

typedef struct {
  size_t weight, bias; /* bias unused for RMSNorm */
} norm_params;

typedef struct {
  float *out;  /* (N,C) */
  float *mean; /* (N) LayerNorm only */
  float *rstd; /* (N) */
} norm_acts;

void norm_declare(bwt_model *m, norm_params *p, const char *prefix, tensor_id id);
void norm_forward(const bwt_model *m, const norm_params *p, const norm_acts *a, const float *inp,
                  int N);
/* dinp(N,C) += ∂/∂inp; parameter gradients accumulate into m->grads. */
void norm_backward(bwt_model *m, const norm_params *p, const norm_acts *a, float *dinp,
                   const float *dout, const float *inp, int N);

/* The two linear layers of an MLP, C→H→C with exact GELU between: the dense MLP's, and each
 * expert's of a mixture of experts. */
typedef struct {
  size_t fc1_w, fc1_b, fc2_w, fc2_b;
  int H; /* hidden width */
} fc_params;

/* Declares <prefix>.fc1.weight/bias (H, C) and <prefix>.fc2.weight/bias (C, H) of block `layer`. */
void fc_declare(bwt_model *m, fc_params *p, const char *prefix, int layer, int H);
/* out(N,C) = fc2(gelu(fc1(h))); pre and act (N,H) are saved for the backward. */
void fc_forward(const bwt_model *m, const fc_params *p, float *out, float *pre, float *act, const float *h, int N);
/* dh(N,C) += the gradient reaching h from dout(N,C); dact and dpre (N,H) are scratch. */
void fc_backward(bwt_model *m, const fc_params *p, float *dh, float *dact, float *dpre, const float *dout,
                 const float *pre, const float *act, const float *h, int N);

typedef struct {
  norm_params norm;
  fc_params fc; /* H = 4C */
} ffn_params;

typedef struct {
  norm_acts norm;
  float *pre; /* (N,H) fc1 output */
  float *act; /* (N,H) gelu(pre) */
} ffn_acts;

typedef struct {
  float *dnorm;   /* (N,C) */
  float *dact;    /* (N,H) */
  float *dpre;    /* (N,H) */
} ffn_scratch;

void ffn_declare(bwt_model *m, ffn_params *p, const char *prefix, int layer);
/* out(N,C) = x + fc2(gelu(fc1(norm(x)))); out may not alias x. */
void ffn_forward(const bwt_model *m, const ffn_params *p, const ffn_acts *a, float *out,
                 const float *x, int N);
/* dx(N,C) holds ∂L/∂out on entry and gets the branch's gradient added: ∂L/∂x on return. */
void ffn_backward(bwt_model *m, const ffn_params *p, const ffn_acts *a, const ffn_scratch *s,
                  float *dx, const float *x, int N);

/* The mixture of experts that replaces the residual MLP when cfg.experts > 0 (moe.c, docs/moe.md):
 * out = x + Σ_chosen gate_e · fc2_e(gelu(fc1_e(h))), h = Norm(x), the top-k experts of the router
 * logits W_router·h per row; each expert runs on the rows routed to it (gathered in row order). */
typedef struct {
  norm_params norm;
  size_t router; /* (E, C), no bias */
  fc_params experts[MOE_MAX_EXPERTS];
  int C, E, k, H; /* width, experts, choices per row, hidden width per expert */
} moe_params;

typedef struct {
  norm_acts norm;          /* (R,C) */
  float *logits, *probs;   /* (R,E) router logits and their softmax */
  float *gate;             /* (R,k) */
  float *h;                /* (R·k,C) the normed rows, gathered expert by expert */
  float *pre, *act;        /* (R·k,H) */
  float *y;                /* (R·k,C) the experts' outputs before their gates */
  int32_t *expert;         /* (R,k) the chosen experts, best first */
  int32_t *row, *slot;     /* (R·k) in expert order: the row, and its gate's index row·k + choice */
  int32_t *start;          /* (E+1) expert e has entries start[e] .. start[e+1]−1 */
  double aux;              /* the weighted balance loss of the forward */
} moe_acts;

typedef struct {
  float *dh, *dy, *dhe;    /* (R,C) */
  float *dact, *dpre;      /* (R,H) one expert's at a time */
  float *dlogits;          /* (R,E) */
  float *dgate;            /* (R,k) */
  float *coef;             /* (E) the balance loss's gradient per probability */
} moe_scratch;

/* Declares <prefix>.norm, <prefix>.router.weight and <prefix>.experts.E.fc1/fc2 of block `layer`. */
void moe_declare(bwt_model *m, moe_params *p, const char *prefix, int layer);
/* Points a's arrays (floats from fbase, indices from ibase) for R rows, or with a NULL base only
 * counts; returns the floats or indices taken. */
size_t moe_carve(const moe_params *p, moe_acts *a, float *fbase, int R);
size_t moe_carve_index(const moe_params *p, moe_acts *a, int32_t *ibase, int R);
size_t moe_scratch_carve(const moe_params *p, moe_scratch *s, float *base, int R);
/* out(R,C) = x + the experts' gated outputs; sets a->aux. out may not alias x. */
void moe_forward(const bwt_model *m, const moe_params *p, moe_acts *a, float *out, const float *x, int R);
/* As ffn_backward, the balance loss's gradient (weight cfg.moe_aux) included. */
void moe_backward(bwt_model *m, const moe_params *p, const moe_acts *a, const moe_scratch *s, float *dx,
                  const float *x, int R);

/* The readout shared by every architecture: the final norm (norm_f) and the head (its own weight,
 * or the token embedding when tied), on the supervised rows only. Every architecture computes its
 * last layer on those rows alone (the loss reads nothing else), so the readout's input is already
 * (M,C), row b·n_sup + j for position sup_pos[b·n_sup + j]. */
typedef struct {
  norm_params norm;
  size_t head;
} readout_params;

typedef struct {
  norm_acts norm; /* (M,C) */
  float *logits;  /* (M,K) */
  float *dh;      /* (M,C) gradient scratch */
} readout_acts;

/* Declares norm_f and head.weight (none when tied: the head is the tensor at wte). */
void readout_declare(bwt_model *m, readout_params *p, size_t wte);
/* Number of floats readout_carve takes for M supervised rows. */
size_t readout_floats(const bwt_model_config *c, int M);
/* Points a's arrays into base (M supervised rows). */
void readout_carve(const bwt_model_config *c, readout_acts *a, float *base, int M);
/* logits(M,K) from x(M,C). */
void readout_forward(const bwt_model *m, const readout_params *p, const readout_acts *a,
                     const float *x, int M);
/* dx(M,C) += the gradient reaching x from dlogits(M,K). */
void readout_backward(bwt_model *m, const readout_params *p, const readout_acts *a, float *dx,
                      const float *x, const float *dlogits, int M);

/* The input layer shared by the transformer and the LSTM: the token embedding (tok_emb), or for
 * continuous inputs the projection in_proj (C, input_dim) with its bias; positions added. */
typedef struct {
  size_t wte, w_in, b_in, wpe;
} input_params;

void input_declare(bwt_model *m, input_params *p);
/* x(B,T,C) batch-major. */
bwt_status input_forward(bwt_model *m, const input_params *p, float *x, const bwt_batch *batch);
/* dx(B,T,C) batch-major: accumulates the input layer's parameter gradients. */
void input_backward(bwt_model *m, const input_params *p, const float *dx, const bwt_batch *batch);

/* idx(M): the row of supervised row r = b·n_sup + j in a (B·T)-row array, b·T + sup_pos[r], or
 * with time_major sup_pos[r]·B + b; for bwt_gather_rows and its scatter-add. */
void sup_rows_index(int32_t *idx, const bwt_batch *batch, int time_major);

#endif
