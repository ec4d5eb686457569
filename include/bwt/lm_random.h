/* Random-weight language models in a real Hugging Face layout: config.json + model.safetensors (F32)
 * that bwt_lm_open (and transformers' from_pretrained) load back, for any architecture of
 * bwt/lm.h's table. Uses: "the same architecture at initialisation" as a baseline beside a trained
 * model, and small test models paired with a real tokenizer.
 *
 * The weights are drawn as the architecture's Hugging Face `_init_weights` draws them: every
 * projection and embedding normal(0, initializer_range) (config.json's, default 0.02), biases 0,
 * norm weights 1; GPT-2 also scales its c_proj weights (attention and MLP outputs) to
 * initializer_range/sqrt(2·n_layer), and Llama, Mistral and Phi zero the embedding row of
 * pad_token_id when the config has one. Each tensor draws from its own seeded stream in blocks of
 * 65536 values, so a file is bit-identical for a seed whatever the thread count. */
#ifndef BWT_LM_RANDOM_H
#define BWT_LM_RANDOM_H

#include <stdint.h>

#include "bwt/status.h"

typedef struct {
  const char *like;      /* a model directory whose config.json is the template; NULL: arch */
  const char *arch;      /* with like NULL: a class name (GPTNeoXForCausalLM) or model_type (gpt_neox),
                            with small defaults (2 layers, hidden 64, 4 heads, vocabulary 512) */
  const char *tokenizer; /* a tokenizer file or a directory holding one, copied into the output
                            (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
                            tokenizer.model, vocab.json, merges.txt); NULL: none */
  uint64_t seed;
  /* Overrides of the template, 0: keep. Without vocab and with a tokenizer the vocabulary is the
   * tokenizer's size, padded up to a multiple of 128 for GPT-NeoX (as Pythia pads it). Changing
   * hidden or heads drops the template's head_dim (hidden/heads then). */
  int layers, hidden, heads, kv_heads, mlp, vocab, max_pos;
  double std; /* 0: config.json's initializer_range, else 0.02 */
} bwt_lm_random_spec;

/* What was written. */
typedef struct {
  char architecture[64];
  int vocab;            /* vocab_size written */
  int tokenizer_vocab;  /* the tokenizer's ids, 0 without one */
  double std;           /* the normal's standard deviation used */
  long long n_params;   /* parameters written */
  int n_tensors;
} bwt_lm_random_info;

/* Writes out_dir/config.json and out_dir/model.safetensors (and the tokenizer's files), creating
 * out_dir. Fails with one line for: no template, an unknown architecture, overrides the
 * architecture cannot take (a fused q/k/v with fewer key/value heads, heads not dividing hidden),
 * a tokenizer that does not load, a vocabulary smaller than the tokenizer's. info may be NULL. */
bwt_status bwt_lm_random_write(const bwt_lm_random_spec *spec, const char *out_dir, bwt_lm_random_info *info);

#endif
