/* bwt lm init: a random-weight model directory in a real Hugging Face layout (bwt/lm_random.h). */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/lm_random.h"
#include "commands.h"
#include "options.h"

int cmd_lm_init(int argc, char **argv) {
  char like[OPT_STRING_MAX] = "", arch[OPT_STRING_MAX] = "", out[OPT_STRING_MAX] = "", tok[OPT_STRING_MAX] = "";
  uint64_t seed = 0;
  int layers = 0, hidden = 0, heads = 0, kv_heads = 0, mlp = 0, vocab = 0, max_pos = 0;
  double std = 0;
  cli_option opts[] = {
      {"like", OPT_STRING, like, "model directory whose config.json is copied (its weights are not read)"},
      {"arch", OPT_STRING, arch, "instead of --like: an architecture (LlamaForCausalLM, ... or llama, mistral, gpt2, gpt_neox, phi) with small defaults"},
      {"out", OPT_STRING, out, "output directory (config.json, model.safetensors, the tokenizer's files)"},
      {"seed", OPT_U64, &seed, "seed of the weights"},
      {"tokenizer", OPT_STRING, tok, "tokenizer file or directory copied in; without --vocab the vocabulary is its size (GPT-NeoX: padded to a multiple of 128)"},
      {"layers", OPT_INT, &layers, "blocks (0 = the template's)"},
      {"hidden", OPT_INT, &hidden, "hidden size (0 = the template's)"},
      {"heads", OPT_INT, &heads, "attention heads (0 = the template's)"},
      {"kv-heads", OPT_INT, &kv_heads, "key/value heads (0 = the template's, or --heads when that is given)"},
      {"mlp", OPT_INT, &mlp, "MLP width (0 = the template's)"},
      {"vocab", OPT_INT, &vocab, "vocabulary size (0 = the template's, or the tokenizer's)"},
      {"max-pos", OPT_INT, &max_pos, "maximum positions (0 = the template's)"},
      {"std", OPT_DOUBLE, &std, "standard deviation of the weights (0 = config.json's initializer_range, else 0.02)"},
  };
  cli_spec spec = {"lm init", "--like DIR | --arch NAME --out OUTDIR [options]",
                   "Writes a model with random weights, drawn as the architecture's Hugging Face _init_weights\n"
                   "draws them (normal(0, initializer_range), zero biases, unit norms; GPT-2's scaled c_proj), as\n"
                   "config.json and an F32 model.safetensors that bwt lm and transformers load. Prints a JSON summary.",
                   opts, (int)(sizeof opts / sizeof *opts), 0, 0};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (!like[0] == !arch[0] || !out[0]) {
    fprintf(stderr, "bwt lm init: needs one of --like DIR and --arch NAME, and --out OUTDIR\n");
    return 2;
  }
  const struct {
    const char *name;
    int v;
  } sizes[] = {{"layers", layers}, {"hidden", hidden}, {"heads", heads}, {"kv-heads", kv_heads}, {"mlp", mlp}, {"vocab", vocab}, {"max-pos", max_pos}};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
    if (sizes[i].v < 0 || sizes[i].v > (1 << 24)) {
      fprintf(stderr, "bwt lm init: --%s must be 0 (keep) or a positive size up to 2^24, got %d\n", sizes[i].name, sizes[i].v);
      return 2;
    }
  if (std < 0 || std > 10) {
    fprintf(stderr, "bwt lm init: --std must be 0 (the config's) or in (0, 10], got %g\n", std);
    return 2;
  }
  bwt_lm_random_spec rs = {like[0] ? like : NULL, arch[0] ? arch : NULL, tok[0] ? tok : NULL, seed, layers, hidden, heads,
                           kv_heads, mlp, vocab, max_pos, std};
  bwt_lm_random_info info;
  bwt_status s = bwt_lm_random_write(&rs, out, &info);
  if (s != BWT_STATUS_OK) {
    fprintf(stderr, "bwt lm init: %s\n", bwt_last_error());
    return s == BWT_STATUS_ARG ? 2 : 1;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "out", out);
  cJSON_AddStringToObject(o, "architecture", info.architecture);
  cJSON_AddNumberToObject(o, "parameters", (double)info.n_params);
  cJSON_AddNumberToObject(o, "tensors", info.n_tensors);
  cJSON_AddNumberToObject(o, "vocab_size", info.vocab);
  if (info.tokenizer_vocab) cJSON_AddNumberToObject(o, "tokenizer_vocab_size", info.tokenizer_vocab);
  cJSON_AddNumberToObject(o, "std", info.std);
  cJSON_AddNumberToObject(o, "seed", (double)seed);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!text) return fprintf(stderr, "bwt lm init: out of memory\n"), 1;
  printf("%s\n", text);
  cJSON_free(text);
  return 0;
}
