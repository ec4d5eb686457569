/* Per-head weight views (bwt/lm_weights.h): the key rows of one key/value head, read from the
 * projection as the architecture stores it (separate or fused, (out, in) or Conv1D's (in, out)). */
#include <stdint.h>
#include <stdlib.h>

#include "bwt/rng.h"

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

/* Norm weights are 1, biases 0, every other tensor N(0, std²). */
static void draw(float *w, size_t n, int kind, bwt_rng *rng, double std) {
  for (size_t i = 0; i < n; i++) w[i] = kind == 1 ? 1.0f : kind == 0 ? 0.0f : (float)(std * bwt_rng_normal(rng));
}

static int slot_kind(lm_slot s) {
  switch (s) {
    case LM_LN1_W: case LM_LN2_W: return 1;
    case LM_LN1_B: case LM_LN2_B: case LM_QKV_B: case LM_Q_B: case LM_K_B: case LM_V_B: case LM_O_B:
    case LM_GATE_B: case LM_UP_B: case LM_DOWN_B: return 0;
    default: return 2;
  }
}

bwt_status bwt_lm_reinit(bwt_lm *lm, uint64_t seed, double std) {
  const bwt_lm_config *c = &lm->cfg;
  if (lm->layerwise) return bwt_fail(BWT_STATUS_ARG, "a model converted layer by layer (over 1 GiB in fp32) cannot be re-initialised in memory");
  if (!(std > 0)) return bwt_fail(BWT_STATUS_ARG, "re-initialisation needs a positive standard deviation");
  size_t VC = (size_t)c->V * c->C, total = VC * (c->tied ? 1 : 2) + 3 * (size_t)c->C + (size_t)c->V;
  if (lm->pos_embed) total += (size_t)c->max_pos * c->C;
  for (int l = 0; l < c->L; l++)
    for (int s = 0; s < LM_SLOT_COUNT; s++)
      if (lm->layers[l].w[s]) {
        int64_t shape[2] = {0, 0};
        int nd = lm_slot_shape(lm, (lm_slot)s, shape);
        total += (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
      }
  if (total * sizeof(float) > LM_CONVERT_AT_OPEN_MAX)
    return bwt_fail(BWT_STATUS_ARG, "re-initialising in memory needs %zu MiB of fp32 weights (at most %zu); give a checkpoint at initialisation instead",
                    total * sizeof(float) >> 20, (size_t)LM_CONVERT_AT_OPEN_MAX >> 20);
  float *block = bwt_malloc(total * sizeof(float), "re-initialised weights");
  if (!block) return BWT_STATUS_NOMEM;
  bwt_rng rng;
  bwt_rng_seed(&rng, seed, 0x1417);
  float *at = block;
  draw(at, VC, 2, &rng, std);
  lm->embed = at, at += VC;
  if (c->tied) lm->head = lm->embed;
  else draw(at, VC, 2, &rng, std), lm->head = at, at += VC;
  if (lm->pos_embed) draw(at, (size_t)c->max_pos * c->C, 2, &rng, std), lm->pos_embed = at, at += (size_t)c->max_pos * c->C;
  draw(at, (size_t)c->C, 1, &rng, std), lm->final_norm = at, at += c->C;
  if (lm->final_norm_bias) draw(at, (size_t)c->C, 0, &rng, std), lm->final_norm_bias = at, at += c->C;
  if (lm->head_bias) draw(at, (size_t)c->V, 0, &rng, std), lm->head_bias = at, at += c->V;
  for (int l = 0; l < c->L; l++)
    for (int s = 0; s < LM_SLOT_COUNT; s++) {
      lm_layer *ly = &lm->layers[l];
      if (!ly->w[s]) continue;
      int64_t shape[2] = {0, 0};
      int nd = lm_slot_shape(lm, (lm_slot)s, shape);
      size_t n = (size_t)shape[0] * (nd == 2 ? (size_t)shape[1] : 1);
      draw(at, n, slot_kind((lm_slot)s), &rng, std);
      ly->w[s] = at, ly->half[s] = NULL, at += n;
    }
  lm->embed_half = lm->head_half = NULL;
  free(lm->reinit);
  lm->reinit = block;
  lm->pos = 0;
  return BWT_STATUS_OK;
}
