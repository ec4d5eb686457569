/* Hugging Face causal language models: a model directory loaded in place (config.json, and
 * model.safetensors or a sharded model.safetensors.index.json), run in fp32 through the engine's
 * kernels, with TransformerLens-named capture points (docs/lm.md has the map).
 *
 * Weights stay in the memory-mapped files when they are F32 (no copy); F16 and BF16 tensors are
 * converted to fp32 once, at open, or — when those copies would exceed 1 GiB — layer by layer at each
 * forward into one layer's arena (docs/lm.md). Architectures come from one table (src/lm/hf_config.c):
 * LlamaForCausalLM, MistralForCausalLM, GPT2LMHeadModel, GPTNeoXForCausalLM, PhiForCausalLM. Every
 * file problem is a one-line error naming the file and, where there is one, the config key or tensor.
 *
 * A model holds one sequence's key/value cache: bwt_lm_forward appends tokens at the end of the
 * cached sequence, so a prompt followed by one token at a time is a greedy continuation. Not
 * thread-safe (one model per thread). Edits of live activations mid-forward: bwt/lm_edit.h; per-head
 * views of the weights: bwt/lm_weights.h.
 *
 * Letters: L layers, T positions, C hidden size, NH query heads, NKV key/value heads, hs head size,
 * F MLP width, V vocabulary. */
#ifndef BWT_LM_H
#define BWT_LM_H

#include <stddef.h>
#include <stdint.h>

#include "bwt/kernels.h"
#include "bwt/status.h"

#define BWT_LM_NAME_MAX 64

/* The MLP's activation: SiLU-gated (gate, up, down), or fc, GELU, proj with GELU exact (erf,
 * config "gelu") or in its tanh form ("gelu_new", "gelu_pytorch_tanh"). */
typedef enum { BWT_LM_ACT_SWIGLU, BWT_LM_ACT_GELU, BWT_LM_ACT_GELU_TANH } bwt_lm_act;

typedef struct {
  char architecture[BWT_LM_NAME_MAX]; /* config.json's architectures[0]: "LlamaForCausalLM" */
  char model_type[BWT_LM_NAME_MAX];   /* "llama", "mistral", "gpt2", "gpt_neox", "phi" */
  int L, C, NH, NKV, hs, F, V;
  int max_pos;                  /* max_position_embeddings: the longest sequence */
  int R;                        /* rotated channels per head (hs · partial_rotary_factor); 0: learned
                                   positions (GPT-2's wpe) */
  double rope_theta;
  bwt_rope_scaling rope_scaling; /* BWT_ROPE_DEFAULT when config.json has none */
  double norm_eps;              /* RMSNorm's or LayerNorm's */
  int layer_norm;               /* LayerNorm (with bias) rather than RMSNorm */
  bwt_lm_act act;
  int parallel_residual;        /* x + attn(ln1(x)) + mlp(ln2(x)) (NeoX, Phi: one norm) */
  int sliding_window;           /* keys a query sees (itself included); 0: all earlier ones */
  int tied;                     /* the output layer is the embeddings (no lm_head.weight) */
  int attn_bias, mlp_bias;      /* attention and MLP projections have biases */
  int bos, eos;                 /* token ids from config.json, -1 when absent */
  char dtype[8];                /* the weights' dtype in the files: "F32", "F16", "BF16" or "mixed" */
  int n_shards;                 /* safetensors files the weights are in */
  size_t n_params;              /* parameters (the tied head counted once) */
  size_t converted_bytes;       /* fp32 copies made at open (F16/BF16 weights), or the layer-wise
                                   conversion arena; 0 for F32 files */
} bwt_lm_config;

typedef struct bwt_lm bwt_lm;

/* Opens the model in directory dir. Fails with one line for: no config.json, JSON that does not
 * parse, an unknown architecture (naming it and the known ones), an unsupported setting (naming the
 * key), a missing shard, and a tensor that is missing, misshapen, not a float type, or left over
 * (a tensor the configuration has no place for: config.json and the weights disagree). */
bwt_status bwt_lm_open(bwt_lm **out, const char *dir);
void bwt_lm_close(bwt_lm *lm);
const bwt_lm_config *bwt_lm_config_of(const bwt_lm *lm);
/* The architectures bwt reads, as "LlamaForCausalLM, MistralForCausalLM, …". */
const char *bwt_lm_known_architectures(void);

/* Empties the key/value cache: the next forward starts at position 0. */
void bwt_lm_reset(bwt_lm *lm);
/* Tokens in the cache (the position the next token gets). */
int bwt_lm_position(const bwt_lm *lm);
/* Runs tokens(n) at positions position..position+n-1 after the cached ones, appending them to the
 * cache; logits (n,V) get each position's next-token logits (NULL: only the cache is filled, the
 * final norm and head skipped). Fails for a token outside 0..V-1 or a
 * sequence longer than max_pos, leaving the cache as it was. */
bwt_status bwt_lm_forward(bwt_lm *lm, const int32_t *tokens, int n, float *logits);

/* Captured activations of one sequence. Names and shapes (TransformerLens's, batch dropped; the
 * full list with its meaning is in docs/lm.md):
 *   hook_embed, hook_pos_embed (GPT-2) (T,C); blocks.{l}.hook_resid_pre, hook_resid_mid (sequential
 *   blocks only), hook_resid_post (T,C);
 *   blocks.{l}.ln1.hook_normalized, ln2.hook_normalized (not Phi) (T,C) — x·rstd, before the
 *   norm's weight (LayerNorm: (x − mean)·rstd, before weight and bias);
 *   blocks.{l}.attn.hook_q, hook_rot_q, hook_z (T,NH,hs); attn.hook_k, hook_rot_k, hook_v
 *   (T,NKV,hs) (the rot points only with rotary positions); attn.hook_attn_scores (NH,T,T) scaled, -inf where masked; attn.hook_pattern
 *   (NH,T,T); blocks.{l}.hook_attn_out, hook_mlp_out (T,C); mlp.hook_pre (gate, or the plain
 *   MLP's input projection), hook_pre_linear (up, gated MLPs only), hook_post (T,F);
 *   ln_final.hook_normalized (T,C); logits (T,V). */
typedef struct {
  char name[BWT_LM_NAME_MAX];
  int ndim;
  int64_t shape[3];
  float *data;
} bwt_lm_activation;

typedef struct {
  int n;
  bwt_lm_activation *acts; /* in the order the forward pass reaches them */
} bwt_lm_capture;

/* Whether name matches pattern, where '*' matches any run of characters ("blocks.*.attn.hook_k"). */
int bwt_lm_point_matches(const char *pattern, const char *name);
/* Resets the cache, runs tokens(T) from position 0 and keeps every point whose name matches one of
 * patterns(n_patterns). logits (T,V), if not NULL, gets the logits. Fails, naming it, for a pattern
 * that matches no point of this model. Free cap with bwt_lm_capture_free, also after a failure. */
bwt_status bwt_lm_capture_run(bwt_lm *lm, const int32_t *tokens, int T, const char *const *patterns,
                              int n_patterns, bwt_lm_capture *cap, float *logits);
void bwt_lm_capture_free(bwt_lm_capture *cap);

#endif
