/* Per-head weight views (bwt/lm_weights.h): the key rows of one key/value head, read from the
 * projection as the architecture stores it (separate or fused, (out, in) or Conv1D's (in, out)). */
#include <stdint.h>

#include "bwt/lm_weights.h"
#include "bwt/safetensors.h"
#include "lm_internal.h"

/* Element idx of layer l's slot: the fp32 tensor, or its F16/BF16 bytes in the mapped file (a model
 * converted layer by layer holds only the last layer in fp32). */
static float slot_at(const bwt_lm *lm, int l, lm_slot s, size_t idx) {
  const lm_layer *ly = &lm->layers[l];
  if (ly->half[s]) {
    float v;
    bwt_half_to_f32(&v, (const uint16_t *)ly->half[s] + idx, 1, ly->half_dtype[s]);
    return v;
  }
  return ly->w[s][idx];
}

bwt_status bwt_lm_key_weights(const bwt_lm *lm, int l, int kv, float *out) {
  const bwt_lm_config *c = &lm->cfg;
  if (l < 0 || l >= c->L || kv < 0 || kv >= c->NKV)
    return bwt_fail(BWT_STATUS_ARG, "key weights of layer %d, key/value head %d: the model has %d layers and %d key/value heads", l, kv, c->L, c->NKV);
  size_t C = (size_t)c->C, hs = (size_t)c->hs, Q = (size_t)c->NH * hs, K = (size_t)c->NKV * hs;
  lm_slot s = lm->arch->qkv == LM_QKV_SEPARATE ? LM_K_W : LM_QKV_W;
  size_t OC = lm->arch->qkv == LM_QKV_SEPARATE ? K : Q + 2 * K; /* output rows of the projection */
  for (size_t i = 0; i < hs; i++) {
    size_t o; /* the projection's output row of key channel i of head kv */
    if (lm->arch->qkv == LM_QKV_SEPARATE) o = (size_t)kv * hs + i;
    else if (lm->arch->qkv == LM_QKV_BLOCKS) o = Q + (size_t)kv * hs + i;
    else o = (size_t)kv * 3 * hs + hs + i; /* per head: q, k, v of head kv (NeoX has NKV = NH) */
    for (size_t ch = 0; ch < C; ch++)
      out[i * C + ch] = lm->arch->in_out ? slot_at(lm, l, s, ch * OC + o) : slot_at(lm, l, s, o * C + ch);
  }
  return BWT_STATUS_OK;
}
