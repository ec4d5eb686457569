/* bwt lm tokenize: text to token ids and back with a model's tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/tokenizer.h"
#include "commands.h"
#include "options.h"

/* The ids of a JSON list, or of {"ids": [...]} (what tokenize prints). */
static bwt_status parse_ids(const char *text, size_t len, int32_t **ids, size_t *n) {
  bwt_alloc_hooks_install();
  cJSON *root = cJSON_ParseWithLength(text, len), *list = root;
  if (cJSON_IsObject(root)) list = cJSON_GetObjectItemCaseSensitive(root, "ids");
  bwt_status s = cJSON_IsArray(list) ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_ARG, "--decode needs a JSON list of token ids");
  size_t count = s == BWT_STATUS_OK ? (size_t)cJSON_GetArraySize(list) : 0;
  *ids = s == BWT_STATUS_OK ? bwt_malloc((count + 1) * sizeof **ids, "token ids") : NULL;
  if (s == BWT_STATUS_OK && !*ids) s = BWT_STATUS_NOMEM;
  *n = 0;
  const cJSON *e;
  if (s == BWT_STATUS_OK) cJSON_ArrayForEach(e, list) {
      if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int32_t)e->valuedouble) {
        s = bwt_fail(BWT_STATUS_ARG, "--decode: item %zu of the list is not a token id", *n);
        break;
      }
      (*ids)[(*n)++] = (int32_t)e->valuedouble;
    }
  cJSON_Delete(root);
  return s;
}

int cmd_lm_tokenize(int argc, char **argv) {
  char text[OPT_STRING_MAX] = "", file[OPT_STRING_MAX] = "";
  int decode = 0, no_special = 0, eos = 0, plain = 0;
  cli_option opts[] = {
      {"text", OPT_STRING, text, "the text to encode (or with --decode, a JSON list of ids)"},
      {"file", OPT_STRING, file, "read the text (or the ids) from this file instead"},
      {"decode", OPT_FLAG, &decode, "decode ids back to text: prints {\"text\": ...}"},
      {"no-special", OPT_FLAG, &no_special, "leave out the special tokens of the tokenizer's template (BOS ...)"},
      {"eos", OPT_FLAG, &eos, "end with the EOS token"},
      {"plain", OPT_FLAG, &plain, "special tokens written in the text are plain text"},
  };
  cli_spec spec = {"lm tokenize", "DIR|TOKENIZER_FILE (--text TEXT | --file FILE) [options]",
                   "Encodes text with a tokenizer.json or a tiktoken tokenizer.model (or a model directory\n"
                   "holding one) and prints {\"ids\": [...], \"n\": N}; with --decode, turns ids back into text.",
                   opts, (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (cli_given(&spec, "text") == cli_given(&spec, "file")) {
    fprintf(stderr, "bwt lm tokenize: give exactly one of --text and --file\n");
    return 2;
  }
  if (decode && (no_special || eos || plain)) {
    fprintf(stderr, "bwt lm tokenize: --no-special, --eos and --plain are for encoding, not --decode\n");
    return 2;
  }
  char *input = NULL;
  size_t len = strlen(text);
  if (*file && bwt_read_file(file, &input, &len) != BWT_STATUS_OK) return cli_error("lm tokenize");
  bwt_tokenizer *tok = NULL;
  int32_t *ids = NULL;
  size_t n = 0;
  char *out = NULL;
  bwt_status s = bwt_tokenizer_load(&tok, pos[0]);
  if (s == BWT_STATUS_OK && decode) {
    s = parse_ids(input ? input : text, len, &ids, &n);
    if (s == BWT_STATUS_OK) s = bwt_tokenizer_decode(tok, ids, n, &out);
    cJSON *str = s == BWT_STATUS_OK ? cJSON_CreateString(out) : NULL;
    char *json = str ? cJSON_PrintUnformatted(str) : NULL;
    if (s == BWT_STATUS_OK && !json) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory printing the text");
    if (json) printf("{\"text\": %s}\n", json);
    free(json);
    cJSON_Delete(str);
  } else if (s == BWT_STATUS_OK) {
    unsigned flags = (no_special ? 0 : BWT_TOKENIZE_SPECIAL) | (eos ? BWT_TOKENIZE_EOS : 0) | (plain ? BWT_TOKENIZE_PLAIN : 0);
    s = bwt_tokenizer_encode(tok, input ? input : text, len, flags, &ids, &n);
    if (s == BWT_STATUS_OK) {
      printf("{\"ids\": [");
      for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
      printf("], \"n\": %zu}\n", n);
    }
  }
  free(out);
  free(ids);
  free(input);
  bwt_tokenizer_free(tok);
  return s == BWT_STATUS_OK ? 0 : cli_error("lm tokenize");
}
