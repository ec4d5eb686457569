/* Per-head views of a language model's weights (bwt/lm.h) in one layout whatever the architecture
 * stores: for key-frame geometry, which must read W_K per key/value head (grouped-query attention:
 * NKV heads, not NH) and undo the fused projections (GPT-2's c_attn q|k|v blocks in (in, out)
 * Conv1D layout; GPT-NeoX's query_key_value, per head: q, k, v of head 0, then head 1, ...).
 *
 * Letters: C hidden size, NKV key/value heads, hs head size. */
#ifndef BWT_LM_WEIGHTS_H
#define BWT_LM_WEIGHTS_H

#include <stdint.h>

#include "bwt/lm.h"

/* out (hs, C): row i is key channel i of key/value head kv in layer l as a function of the
 * (normalised) input — the i-th of the d_k columns of the paper's W_K ∈ R^{C×d_k} — so that
 * k[kv·hs + i] = Σ_c out[i·C + c] · a[c] (+ bias), before RoPE. F16/BF16 weights are converted.
 * Fails for l or kv out of range. */
bwt_status bwt_lm_key_weights(const bwt_lm *lm, int l, int kv, float *out);

/* Replaces every weight of lm with a seeded draw of Hugging Face's _init_weights: projections,
 * embeddings and learned positions N(0, std²) (std: config's initializer_range, 0.02 for all five
 * architectures; GPT-2's 1/√(2L) scaling of c_proj is not applied), norm weights 1, every bias 0,
 * a tied head the new embeddings — the same configuration at initialisation, in memory, for
 * baselines. The model then holds the new fp32 weights (one block, freed at close) and empties its
 * cache. Fails for a model whose fp32 weights exceed 1 GiB or that converts layer by layer. */
bwt_status bwt_lm_reinit(bwt_lm *lm, uint64_t seed, double std);

#endif
