/* config.json of a Hugging Face model directory, and the architecture table.
 *
 * Each architecture is one row: its names in config.json (hf_keys: GPT-2 says n_embd where the others
 * say hidden_size), its tensor names, and the choices that tell the five apart (norm, positions,
 * fused q/k/v and its order, residual form, weight layout, MLP kind) with their traps: Mistral's
 * sliding window, whose config default is 4096 when the key is absent; GPT-2's Conv1D weights stored
 * (in, out) and its names with or without "transformer."; GPT-NeoX's query_key_value ordered per
 * head. Keys are read as Hugging Face's configuration classes read them, with their defaults; a
 * value bwt cannot honour is an error naming the key. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "lm_internal.h"

static const hf_keys llama_keys = {"num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                                   "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_theta", "partial_rotary_factor"};
static const hf_keys gpt2_keys = {"n_layer", "n_embd", "n_head", "n_inner", "n_positions", "layer_norm_epsilon",
                                  "activation_function", NULL, NULL};
static const hf_keys neox_keys = {"num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                                  "max_position_embeddings", "layer_norm_eps", "hidden_act", "rotary_emb_base", "rotary_pct"};
static const hf_keys phi_keys = {"num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                                 "max_position_embeddings", "layer_norm_eps", "hidden_act", "rope_theta", "partial_rotary_factor"};

#define LLAMA_LAYER                                                                            \
  {[LM_LN1_W] = "model.layers.%d.input_layernorm.weight",                                      \
   [LM_Q_W] = "model.layers.%d.self_attn.q_proj.weight", [LM_Q_B] = "model.layers.%d.self_attn.q_proj.bias", \
   [LM_K_W] = "model.layers.%d.self_attn.k_proj.weight", [LM_K_B] = "model.layers.%d.self_attn.k_proj.bias", \
   [LM_V_W] = "model.layers.%d.self_attn.v_proj.weight", [LM_V_B] = "model.layers.%d.self_attn.v_proj.bias", \
   [LM_O_W] = "model.layers.%d.self_attn.o_proj.weight", [LM_O_B] = "model.layers.%d.self_attn.o_proj.bias", \
   [LM_LN2_W] = "model.layers.%d.post_attention_layernorm.weight",                             \
   [LM_GATE_W] = "model.layers.%d.mlp.gate_proj.weight", [LM_GATE_B] = "model.layers.%d.mlp.gate_proj.bias", \
   [LM_UP_W] = "model.layers.%d.mlp.up_proj.weight", [LM_UP_B] = "model.layers.%d.mlp.up_proj.bias", \
   [LM_DOWN_W] = "model.layers.%d.mlp.down_proj.weight", [LM_DOWN_B] = "model.layers.%d.mlp.down_proj.bias"}

#define GPT2_LAYER                                                                             \
  {[LM_LN1_W] = "transformer.h.%d.ln_1.weight", [LM_LN1_B] = "transformer.h.%d.ln_1.bias",    \
   [LM_QKV_W] = "transformer.h.%d.attn.c_attn.weight", [LM_QKV_B] = "transformer.h.%d.attn.c_attn.bias", \
   [LM_O_W] = "transformer.h.%d.attn.c_proj.weight", [LM_O_B] = "transformer.h.%d.attn.c_proj.bias", \
   [LM_LN2_W] = "transformer.h.%d.ln_2.weight", [LM_LN2_B] = "transformer.h.%d.ln_2.bias",    \
   [LM_GATE_W] = "transformer.h.%d.mlp.c_fc.weight", [LM_GATE_B] = "transformer.h.%d.mlp.c_fc.bias", \
   [LM_DOWN_W] = "transformer.h.%d.mlp.c_proj.weight", [LM_DOWN_B] = "transformer.h.%d.mlp.c_proj.bias"}

#define NEOX_LAYER                                                                             \
  {[LM_LN1_W] = "gpt_neox.layers.%d.input_layernorm.weight", [LM_LN1_B] = "gpt_neox.layers.%d.input_layernorm.bias", \
   [LM_QKV_W] = "gpt_neox.layers.%d.attention.query_key_value.weight",                         \
   [LM_QKV_B] = "gpt_neox.layers.%d.attention.query_key_value.bias",                           \
   [LM_O_W] = "gpt_neox.layers.%d.attention.dense.weight", [LM_O_B] = "gpt_neox.layers.%d.attention.dense.bias", \
   [LM_LN2_W] = "gpt_neox.layers.%d.post_attention_layernorm.weight",                          \
   [LM_LN2_B] = "gpt_neox.layers.%d.post_attention_layernorm.bias",                            \
   [LM_GATE_W] = "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", [LM_GATE_B] = "gpt_neox.layers.%d.mlp.dense_h_to_4h.bias", \
   [LM_DOWN_W] = "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", [LM_DOWN_B] = "gpt_neox.layers.%d.mlp.dense_4h_to_h.bias"}

/* Phi: one LayerNorm per block feeds both branches, so there is no LM_LN2. */
#define PHI_LAYER                                                                              \
  {[LM_LN1_W] = "model.layers.%d.input_layernorm.weight", [LM_LN1_B] = "model.layers.%d.input_layernorm.bias", \
   [LM_Q_W] = "model.layers.%d.self_attn.q_proj.weight", [LM_Q_B] = "model.layers.%d.self_attn.q_proj.bias", \
   [LM_K_W] = "model.layers.%d.self_attn.k_proj.weight", [LM_K_B] = "model.layers.%d.self_attn.k_proj.bias", \
   [LM_V_W] = "model.layers.%d.self_attn.v_proj.weight", [LM_V_B] = "model.layers.%d.self_attn.v_proj.bias", \
   [LM_O_W] = "model.layers.%d.self_attn.dense.weight", [LM_O_B] = "model.layers.%d.self_attn.dense.bias", \
   [LM_GATE_W] = "model.layers.%d.mlp.fc1.weight", [LM_GATE_B] = "model.layers.%d.mlp.fc1.bias", \
   [LM_DOWN_W] = "model.layers.%d.mlp.fc2.weight", [LM_DOWN_B] = "model.layers.%d.mlp.fc2.bias"}

/* Fields left out are 0 / NULL: RMSNorm, rotary positions, separate q/k/v, a sequential block,
 * (out, in) weights, no window, no prefix, no bias defaults. */
static const hf_arch arch_table[] = {
    {.hf_name = "LlamaForCausalLM", .model_type = "llama", .keys = &llama_keys, .eps_default = 1e-6,
     .rotary_default = 1.0, .gated = 1, .embed = "model.embed_tokens.weight", .final_norm = "model.norm.weight",
     .head = "lm_head.weight", .layer = LLAMA_LAYER, .ignored = {"rotary_emb.inv_freq"}},
    {.hf_name = "MistralForCausalLM", .model_type = "mistral", .keys = &llama_keys, .eps_default = 1e-6,
     .rotary_default = 1.0, .gated = 1, .window_key = "sliding_window", .default_window = 4096,
     .embed = "model.embed_tokens.weight", .final_norm = "model.norm.weight", .head = "lm_head.weight",
     .layer = LLAMA_LAYER, .ignored = {"rotary_emb.inv_freq"}},
    {.hf_name = "GPT2LMHeadModel", .model_type = "gpt2", .keys = &gpt2_keys, .eps_default = 1e-5,
     .tied_default = 1, .bias_default = 1, .norm = LM_NORM_LAYER, .pos = LM_POS_LEARNED, .qkv = LM_QKV_BLOCKS,
     .in_out = 1, .prefix = "transformer.", .embed = "transformer.wte.weight", .pos_embed = "transformer.wpe.weight",
     .final_norm = "transformer.ln_f.weight", .final_norm_bias = "transformer.ln_f.bias", .head = "lm_head.weight",
     .layer = GPT2_LAYER, .ignored = {".attn.bias", ".attn.masked_bias"},
     .off_keys = {"scale_attn_by_inverse_layer_idx", "add_cross_attention"}},
    {.hf_name = "GPTNeoXForCausalLM", .model_type = "gpt_neox", .keys = &neox_keys, .eps_default = 1e-5,
     .rotary_default = 0.25, .bias_default = 1, .norm = LM_NORM_LAYER, .qkv = LM_QKV_PER_HEAD,
     .resid = LM_RESID_PARALLEL, .parallel_key = "use_parallel_residual", .embed = "gpt_neox.embed_in.weight",
     .final_norm = "gpt_neox.final_layer_norm.weight", .final_norm_bias = "gpt_neox.final_layer_norm.bias",
     .head = "embed_out.weight", .layer = NEOX_LAYER,
     .ignored = {"rotary_emb.inv_freq", ".attention.bias", ".attention.masked_bias"}},
    {.hf_name = "PhiForCausalLM", .model_type = "phi", .keys = &phi_keys, .eps_default = 1e-5,
     .rotary_default = 0.5, .bias_default = 1, .norm = LM_NORM_LAYER, .resid = LM_RESID_PARALLEL,
     .embed = "model.embed_tokens.weight", .final_norm = "model.final_layernorm.weight",
     .final_norm_bias = "model.final_layernorm.bias", .head = "lm_head.weight", .head_bias = "lm_head.bias",
     .layer = PHI_LAYER, .ignored = {"rotary_emb.inv_freq"}, .off_keys = {"qk_layernorm"},
     .foreign_type = "phi-msft"},
};
#define N_ARCH (int)(sizeof arch_table / sizeof arch_table[0])

const char *bwt_lm_known_architectures(void) {
  static char names[256];
  if (!names[0])
    for (int i = 0; i < N_ARCH; i++)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", arch_table[i].hf_name);
  return names;
}

/* A positive integer at key (def when absent or null; def < 0: required). */
static bwt_status get_int(const cJSON *root, const char *key, int def, int *out, const char *path) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    if (def < 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: needs '%s'", path, key);
    *out = def;
    return BWT_STATUS_OK;
  }
  double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
  if (!(d >= 1 && d <= 1e9) || d != floor(d))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: '%s' must be a positive integer", path, key);
  *out = (int)d;
  return BWT_STATUS_OK;
}

/* A finite positive number at key (def when absent or null). */
static bwt_status get_num(const cJSON *root, const char *key, double def, double *out, const char *path) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return BWT_STATUS_OK;
  }
  if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || !isfinite(v->valuedouble))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: '%s' must be a positive number", path, key);
  *out = v->valuedouble;
  return BWT_STATUS_OK;
}

static int get_bool(const cJSON *root, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* bos/eos: an id, the first of a list of ids, or -1. */
static int get_token(const cJSON *root, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
  return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (int)v->valuedouble : -1;
}

/* rope_scaling: null, or {"rope_type" (or the older "type"): "default" | "linear" | "llama3", ...}. */
static bwt_status get_rope_scaling(const cJSON *root, bwt_lm_config *cfg, const char *path) {
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
  if (!rs || cJSON_IsNull(rs)) return BWT_STATUS_OK;
  if (!cJSON_IsObject(rs)) return bwt_fail(BWT_STATUS_FORMAT, "%s: 'rope_scaling' must be an object or null", path);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
  if (!type) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
  const char *t = cJSON_GetStringValue(type);
  if (!t) return bwt_fail(BWT_STATUS_FORMAT, "%s: 'rope_scaling' needs a 'rope_type'", path);
  if (strcmp(t, "default") == 0) return BWT_STATUS_OK;
  bwt_rope_scaling *s = &cfg->rope_scaling;
  if (strcmp(t, "linear") == 0) {
    s->type = BWT_ROPE_LINEAR;
    BWT_TRY(get_num(rs, "factor", -1, &s->factor, path));
    return s->factor > 0 ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_FORMAT, "%s: rope_scaling linear needs 'factor'", path);
  }
  if (strcmp(t, "llama3") == 0) {
    s->type = BWT_ROPE_LLAMA3;
    BWT_TRY(get_num(rs, "factor", -1, &s->factor, path));
    BWT_TRY(get_num(rs, "low_freq_factor", -1, &s->low_freq_factor, path));
    BWT_TRY(get_num(rs, "high_freq_factor", -1, &s->high_freq_factor, path));
    BWT_TRY(get_int(rs, "original_max_position_embeddings", -1, &s->original_max_pos, path));
    if (!(s->factor > 0 && s->low_freq_factor > 0 && s->high_freq_factor > s->low_freq_factor))
      return bwt_fail(BWT_STATUS_FORMAT, "%s: rope_scaling llama3 needs factor, low_freq_factor < high_freq_factor (positive)", path);
    return BWT_STATUS_OK;
  }
  return bwt_fail(BWT_STATUS_FORMAT, "%s: rope_scaling type '%s' is not supported (bwt reads default, linear, llama3)", path, t);
}

const hf_arch *hf_arch_find(const char *name) {
  for (int i = 0; i < N_ARCH; i++)
    if (strcmp(arch_table[i].hf_name, name) == 0 || strcmp(arch_table[i].model_type, name) == 0) return &arch_table[i];
  return NULL;
}

bwt_status hf_config_parse(bwt_lm_config *cfg, const hf_arch **arch, const cJSON *root, const char *path) {
  if (!cJSON_IsObject(root)) return bwt_fail(BWT_STATUS_FORMAT, "%s: not a JSON object", path);
  const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
  const char *name = cJSON_GetStringValue(cJSON_GetArrayItem(archs, 0));
  if (!name) return bwt_fail(BWT_STATUS_FORMAT, "%s: needs 'architectures', a list naming the model class", path);
  *arch = NULL;
  for (int i = 0; i < N_ARCH; i++)
    if (strcmp(arch_table[i].hf_name, name) == 0) *arch = &arch_table[i];
  if (!*arch)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: unknown architecture '%s' (bwt reads %s)", path, name, bwt_lm_known_architectures());
  snprintf(cfg->architecture, sizeof cfg->architecture, "%s", name);
  const char *mt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "model_type"));
  snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt ? mt : (*arch)->model_type);
  if (mt && (*arch)->foreign_type && strcmp(mt, (*arch)->foreign_type) == 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: model_type '%s' is the trust_remote_code layout of %s, not Hugging Face's '%s' that bwt reads",
                    path, mt, name, (*arch)->model_type);

  const hf_arch *A = *arch;
  const hf_keys *k = A->keys;
  for (int i = 0; i < 2 && A->off_keys[i]; i++)
    if (get_bool(root, A->off_keys[i], 0))
      return bwt_fail(BWT_STATUS_FORMAT, "%s: '%s' true is not supported for %s", path, A->off_keys[i], name);
  BWT_TRY(get_int(root, k->layers, -1, &cfg->L, path));
  BWT_TRY(get_int(root, k->hidden, -1, &cfg->C, path));
  BWT_TRY(get_int(root, k->heads, -1, &cfg->NH, path));
  BWT_TRY(get_int(root, "num_key_value_heads", cfg->NH, &cfg->NKV, path));
  if (cfg->NH % cfg->NKV != 0)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: num_key_value_heads (%d) must divide num_attention_heads (%d)", path, cfg->NKV, cfg->NH);
  if (A->qkv != LM_QKV_SEPARATE && cfg->NKV != cfg->NH)
    return bwt_fail(BWT_STATUS_FORMAT, "%s: num_key_value_heads (%d) must equal the heads (%d) for %s's fused q/k/v", path, cfg->NKV, cfg->NH, name);
  if (cfg->C % cfg->NH != 0 && !cJSON_GetObjectItemCaseSensitive(root, "head_dim"))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: num_attention_heads (%d) must divide hidden_size (%d) when there is no head_dim", path, cfg->NH, cfg->C);
  BWT_TRY(get_int(root, "head_dim", cfg->C / cfg->NH, &cfg->hs, path));
  /* GPT-2's n_inner is null for 4·n_embd; the others must say. */
  BWT_TRY(get_int(root, k->mlp, A->pos == LM_POS_LEARNED ? 4 * cfg->C : -1, &cfg->F, path));
  BWT_TRY(get_int(root, "vocab_size", -1, &cfg->V, path));
  BWT_TRY(get_int(root, k->positions, A->pos == LM_POS_LEARNED ? 1024 : 2048, &cfg->max_pos, path));
  BWT_TRY(get_num(root, k->eps, A->eps_default, &cfg->norm_eps, path));
  cfg->layer_norm = A->norm == LM_NORM_LAYER;
  cfg->R = 0;
  cfg->rope_theta = 0;
  cfg->rope_scaling = (bwt_rope_scaling){BWT_ROPE_DEFAULT, 1, 0, 0, 0};
  if (A->pos == LM_POS_ROTARY) {
    double frac;
    /* Newer exports of NeoX write rope_theta for rotary_emb_base. */
    const char *theta = cJSON_GetObjectItemCaseSensitive(root, k->theta) ? k->theta : "rope_theta";
    BWT_TRY(get_num(root, theta, 10000.0, &cfg->rope_theta, path));
    BWT_TRY(get_num(root, k->rotary, A->rotary_default, &frac, path));
    cfg->R = (int)(cfg->hs * frac) / 2 * 2;
    if (frac > 1 || cfg->R < 2) return bwt_fail(BWT_STATUS_FORMAT, "%s: '%s' %g leaves no rotated pair", path, k->rotary, frac);
    BWT_TRY(get_rope_scaling(root, cfg, path));
  }
  const char *act = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, k->act));
  if (A->gated) {
    cfg->act = BWT_LM_ACT_SWIGLU;
    if (act && strcmp(act, "silu") != 0)
      return bwt_fail(BWT_STATUS_FORMAT, "%s: '%s' '%s' is not supported for %s (silu)", path, k->act, act, name);
  } else if (!act) {
    return bwt_fail(BWT_STATUS_FORMAT, "%s: needs '%s'", path, k->act);
  } else if (strcmp(act, "gelu") == 0) {
    cfg->act = BWT_LM_ACT_GELU;
  } else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0) {
    cfg->act = BWT_LM_ACT_GELU_TANH;
  } else {
    return bwt_fail(BWT_STATUS_FORMAT, "%s: '%s' '%s' is not supported for %s (gelu, gelu_new, gelu_pytorch_tanh)", path, k->act, act, name);
  }
  cfg->parallel_residual = A->resid == LM_RESID_PARALLEL;
  if (A->parallel_key) cfg->parallel_residual = get_bool(root, A->parallel_key, cfg->parallel_residual);
  cfg->sliding_window = 0;
  if (A->window_key) {
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(root, A->window_key);
    if (!w) cfg->sliding_window = A->default_window;
    else if (!cJSON_IsNull(w)) BWT_TRY(get_int(root, A->window_key, 0, &cfg->sliding_window, path));
  }
  cfg->tied = get_bool(root, "tie_word_embeddings", A->tied_default);
  cfg->attn_bias = get_bool(root, "attention_bias", A->bias_default);
  cfg->mlp_bias = get_bool(root, "mlp_bias", A->bias_default);
  cfg->bos = get_token(root, "bos_token_id");
  cfg->eos = get_token(root, "eos_token_id");
  return BWT_STATUS_OK;
}

bwt_status hf_config_read(bwt_lm_config *cfg, const hf_arch **arch, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (!bwt_path_exists(dir)) return bwt_fail(BWT_STATUS_IO, "%s: no such model directory", dir);
  if (!bwt_path_exists(path)) return bwt_fail(BWT_STATUS_IO, "%s: no config.json (not a Hugging Face model directory?)", dir);
  char *text = NULL;
  size_t n = 0;
  BWT_TRY(bwt_read_file(path, &text, &n));
  bwt_alloc_hooks_install();
  long failures = bwt_alloc_failures();
  cJSON *root = cJSON_Parse(text);
  free(text);
  bwt_status s;
  if (!root)
    s = bwt_alloc_failures() != failures ? bwt_fail(BWT_STATUS_NOMEM, "out of memory parsing %s", path)
                                         : bwt_fail(BWT_STATUS_FORMAT, "%s: not valid JSON", path);
  else
    s = hf_config_parse(cfg, arch, root, path);
  cJSON_Delete(root);
  return s;
}
