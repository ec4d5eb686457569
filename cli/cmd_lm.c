/* bwt lm info | run | ppl | capture: Hugging Face language models (bwt/lm.h, docs/lm.md).
 *
 * Prompts are JSON lines, {"tokens": [ids…]} or {"text": "…"}; text is encoded with the model
 * directory's tokenizer (bwt/tokenizer.h), with its special-token template (BOS for Llama). Results
 * are JSON on standard output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/lm.h"
#include "bwt/safetensors.h"
#include "bwt/tokenizer.h"
#include "commands.h"
#include "options.h"

typedef struct {
  int32_t *ids;
  int n;
} prompt;

static void prompts_free(prompt *p, int n) {
  for (int i = 0; i < n; i++) free(p[i].ids);
  free(p);
}

/* text(len) as a prompt, through the tokenizer of model directory dir (loaded into *tok on first
 * use). Prints the error and returns 1 on failure. */
static int text_prompt(const char *cmd, const char *dir, bwt_tokenizer **tok, const char *text, size_t len, prompt *out) {
  if (!*tok && bwt_tokenizer_load(tok, dir) != BWT_STATUS_OK) {
    fprintf(stderr, "bwt %s: a text prompt needs the model's tokenizer: %s\n", cmd, bwt_last_error());
    return 1;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  if (bwt_tokenizer_encode(*tok, text, len, BWT_TOKENIZE_SPECIAL, &ids, &n) != BWT_STATUS_OK) return cli_error(cmd);
  if (n < 1 || n > (1u << 24)) {
    free(ids);
    fprintf(stderr, "bwt %s: a text prompt encodes to %zu tokens (needs 1 to 2^24)\n", cmd, n);
    return 1;
  }
  *out = (prompt){ids, (int)n};
  return 0;
}

/* One prompt from text(len): the --prompt and --text options. */
static int one_text_prompt(const char *cmd, const char *dir, const char *text, size_t len, prompt **out, int *n_out) {
  bwt_tokenizer *tok = NULL;
  prompt *p = malloc(sizeof *p);
  int rc = p ? text_prompt(cmd, dir, &tok, text, len, p) : (fprintf(stderr, "bwt %s: out of memory\n", cmd), 1);
  bwt_tokenizer_free(tok);
  if (rc) return free(p), rc;
  *out = p, *n_out = 1;
  return 0;
}

/* Reads FILE.jsonl into *out (n prompts); text lines go through dir's tokenizer. Prints the error
 * and returns 1 on failure. */
static int read_prompts(const char *cmd, const char *dir, const char *path, prompt **out, int *n_out) {
  char *text = NULL;
  size_t len = 0;
  if (bwt_read_file(path, &text, &len) != BWT_STATUS_OK) return cli_error(cmd);
  prompt *p = NULL;
  bwt_tokenizer *tok = NULL;
  int n = 0, line_no = 0, rc = 0;
  for (char *line = text, *next; line && *line && !rc; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    line_no++;
    if (strspn(line, " \t\r") == strlen(line)) continue;
    cJSON *o = cJSON_Parse(line);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    if (!cJSON_IsObject(o)) {
      fprintf(stderr, "bwt %s: %s line %d: not a JSON object\n", cmd, path, line_no);
      rc = 1;
    } else if (cJSON_GetObjectItemCaseSensitive(o, "text")) {
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
      prompt *grown = cJSON_IsString(t) ? realloc(p, (size_t)(n + 1) * sizeof *p) : NULL;
      if (!cJSON_IsString(t)) fprintf(stderr, "bwt %s: %s line %d: \"text\" must be a string\n", cmd, path, line_no);
      else if (!grown) fprintf(stderr, "bwt %s: out of memory reading %s\n", cmd, path);
      if (grown) p = grown;
      rc = !grown || text_prompt(cmd, dir, &tok, t->valuestring, strlen(t->valuestring), &p[n]);
      if (!rc) n++;
    } else if (!cJSON_IsArray(toks) || cJSON_GetArraySize(toks) < 1) {
      fprintf(stderr, "bwt %s: %s line %d: needs \"tokens\": a non-empty list of ids (or \"text\")\n", cmd, path, line_no);
      rc = 1;
    } else {
      prompt *grown = realloc(p, (size_t)(n + 1) * sizeof *p);
      int T = cJSON_GetArraySize(toks);
      int32_t *ids = grown ? malloc((size_t)T * sizeof *ids) : NULL;
      if (grown) p = grown;
      if (!ids) {
        fprintf(stderr, "bwt %s: out of memory reading %s\n", cmd, path);
        rc = 1;
      }
      for (int i = 0; !rc && i < T; i++) {
        const cJSON *t = cJSON_GetArrayItem(toks, i);
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 || t->valuedouble > 2e9) {
          fprintf(stderr, "bwt %s: %s line %d: token %d is not a non-negative integer\n", cmd, path, line_no, i);
          rc = 1;
        } else {
          ids[i] = (int32_t)t->valuedouble;
        }
      }
      if (!rc) p[n++] = (prompt){ids, T};
      else free(ids);
    }
    cJSON_Delete(o);
  }
  free(text);
  bwt_tokenizer_free(tok);
  if (!rc && n == 0) {
    fprintf(stderr, "bwt %s: %s holds no prompts\n", cmd, path);
    rc = 1;
  }
  if (rc) {
    prompts_free(p, n);
    return rc;
  }
  *out = p;
  *n_out = n;
  return 0;
}

static int open_model(const char *cmd, const char *dir, bwt_lm **lm) {
  return bwt_lm_open(lm, dir) == BWT_STATUS_OK ? 0 : cli_error(cmd);
}

static int print_json(cJSON *o, int formatted) {
  char *s = o ? (formatted ? cJSON_Print(o) : cJSON_PrintUnformatted(o)) : NULL;
  cJSON_Delete(o);
  if (!s) {
    fprintf(stderr, "bwt lm: out of memory formatting the output\n");
    return 1;
  }
  printf("%s\n", s);
  free(s);
  return 0;
}

/* Which tokenizer files the directory has (for info; reading them is the tokenizer's job). */
static const char *tokenizer_of(const char *dir) {
  static const char *names[] = {"tokenizer.json", "tokenizer.model", "vocab.json"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (bwt_path_exists(path)) return names[i];
  }
  return "none";
}

static int lm_info(int argc, char **argv) {
  cli_spec spec = {"lm info", "DIR", "Prints a Hugging Face model directory's architecture, sizes, weight dtype,\nshards and tokenizer as JSON.", NULL, 0, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  bwt_lm *lm = NULL;
  if ((rc = open_model("lm info", pos[0], &lm))) return rc;
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  static const char *rope[] = {"default", "linear", "llama3"};
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "architecture", c->architecture);
  cJSON_AddStringToObject(o, "model_type", c->model_type);
  cJSON_AddNumberToObject(o, "layers", c->L);
  cJSON_AddNumberToObject(o, "hidden_size", c->C);
  cJSON_AddNumberToObject(o, "heads", c->NH);
  cJSON_AddNumberToObject(o, "kv_heads", c->NKV);
  cJSON_AddNumberToObject(o, "head_dim", c->hs);
  cJSON_AddNumberToObject(o, "rotary_dim", c->R);
  cJSON_AddNumberToObject(o, "intermediate_size", c->F);
  cJSON_AddNumberToObject(o, "vocab_size", c->V);
  cJSON_AddNumberToObject(o, "max_positions", c->max_pos);
  cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
  cJSON_AddStringToObject(o, "rope_scaling", rope[c->rope_scaling.type]);
  cJSON_AddNumberToObject(o, "sliding_window", c->sliding_window);
  cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
  static const char *act[] = {"swiglu", "gelu", "gelu_tanh"};
  cJSON_AddStringToObject(o, "norm", c->layer_norm ? "layernorm" : "rmsnorm");
  cJSON_AddStringToObject(o, "positions", c->R ? "rotary" : "learned");
  cJSON_AddStringToObject(o, "activation", act[c->act]);
  cJSON_AddBoolToObject(o, "parallel_residual", c->parallel_residual);
  cJSON_AddBoolToObject(o, "tied_embeddings", c->tied);
  cJSON_AddStringToObject(o, "dtype", c->dtype);
  cJSON_AddNumberToObject(o, "shards", c->n_shards);
  cJSON_AddNumberToObject(o, "parameters", (double)c->n_params);
  cJSON_AddNumberToObject(o, "converted_bytes", (double)c->converted_bytes);
  const char *tok_file = tokenizer_of(pos[0]);
  cJSON_AddStringToObject(o, "tokenizer", tok_file);
  /* Its vocabulary: a model's may be padded past it (Pythia's 50304 rows for 50277 tokens). */
  bwt_tokenizer *tok = NULL;
  if (strcmp(tok_file, "none") != 0 && bwt_tokenizer_load(&tok, pos[0]) == BWT_STATUS_OK)
    cJSON_AddNumberToObject(o, "tokenizer_vocab_size", (double)bwt_tokenizer_vocab_size(tok));
  else if (strcmp(tok_file, "none") != 0)
    cJSON_AddStringToObject(o, "tokenizer_error", bwt_last_error());
  bwt_tokenizer_free(tok);
  bwt_lm_close(lm);
  return print_json(o, 1);
}

/* Entropy (nats) of softmax(logits(V)), and the top k ids by logit into top(k). */
static double entropy_top(const float *logits, int V, int *top, int k) {
  double mx = -INFINITY, z = 0, ez = 0;
  for (int i = 0; i < V; i++) mx = fmax(mx, logits[i]);
  for (int i = 0; i < V; i++) {
    double e = exp(logits[i] - mx);
    z += e;
    ez += e * (logits[i] - mx);
  }
  for (int j = 0; j < k; j++) {
    top[j] = -1;
    for (int i = 0; i < V; i++) {
      int taken = 0;
      for (int m = 0; m < j; m++) taken |= top[m] == i;
      if (!taken && (top[j] < 0 || logits[i] > logits[top[j]])) top[j] = i;
    }
  }
  return log(z) - ez / z;
}

static double log_softmax_at(const float *logits, int V, int id) {
  double mx = -INFINITY, z = 0;
  for (int i = 0; i < V; i++) mx = fmax(mx, logits[i]);
  for (int i = 0; i < V; i++) z += exp(logits[i] - mx);
  return logits[id] - mx - log(z);
}

static int lm_run(int argc, char **argv) {
  char prompts[OPT_STRING_MAX] = "", text[OPT_STRING_MAX] = "";
  int top_k = 5, generate = 0;
  cli_option opts[] = {
      {"prompts", OPT_STRING, prompts, "JSON lines file of prompts: {\"tokens\": [ids...]} or {\"text\": ...}"},
      {"prompt", OPT_STRING, text, "one text prompt, through the model's tokenizer"},
      {"top-k", OPT_INT, &top_k, "next tokens listed per prompt, by logit"},
      {"generate", OPT_INT, &generate, "greedy continuation: tokens appended after each prompt"},
  };
  cli_spec spec = {"lm run", "DIR --prompts FILE.jsonl [options]",
                   "Runs each prompt through the model and prints one JSON line per prompt: its next-token\n"
                   "top-k (id, logit, probability), the entropy of the next-token distribution in nats, and\n"
                   "with --generate N the greedy continuation.",
                   opts, 4, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (!prompts[0] == !text[0] || top_k < 1 || generate < 0) {
    fprintf(stderr, "bwt lm run: needs one of --prompts FILE and --prompt TEXT, --top-k >= 1 and --generate >= 0\n");
    return 2;
  }
  prompt *p = NULL;
  int n = 0;
  rc = text[0] ? one_text_prompt("lm run", pos[0], text, strlen(text), &p, &n) : read_prompts("lm run", pos[0], prompts, &p, &n);
  if (rc) return rc;
  bwt_lm *lm = NULL;
  if ((rc = open_model("lm run", pos[0], &lm))) {
    prompts_free(p, n);
    return rc;
  }
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  if (top_k > c->V) top_k = c->V;
  float *logits = malloc((size_t)c->V * sizeof(float));
  int *top = malloc((size_t)top_k * sizeof(int));
  for (int i = 0; !rc && i < n; i++) {
    bwt_lm_reset(lm);
    float *all = malloc((size_t)p[i].n * c->V * sizeof(float));
    if (!logits || !top || !all) {
      free(all);
      fprintf(stderr, "bwt lm run: out of memory\n");
      rc = 1;
      break;
    }
    if (bwt_lm_forward(lm, p[i].ids, p[i].n, all) != BWT_STATUS_OK) {
      fprintf(stderr, "bwt lm run: prompt %d: %s\n", i, bwt_last_error());
      free(all);
      rc = 1;
      break;
    }
    memcpy(logits, all + (size_t)(p[i].n - 1) * c->V, (size_t)c->V * sizeof(float));
    free(all);
    double h = entropy_top(logits, c->V, top, top_k);
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "top");
    cJSON_AddNumberToObject(o, "prompt", i);
    cJSON_AddNumberToObject(o, "n_tokens", p[i].n);
    for (int j = 0; j < top_k; j++) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddNumberToObject(e, "token", top[j]);
      cJSON_AddNumberToObject(e, "logit", logits[top[j]]);
      cJSON_AddNumberToObject(e, "prob", exp(log_softmax_at(logits, c->V, top[j])));
      cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddNumberToObject(o, "entropy_nats", h);
    if (generate > 0) {
      cJSON *cont = cJSON_AddArrayToObject(o, "continuation");
      for (int g = 0; g < generate && bwt_lm_position(lm) < c->max_pos; g++) {
        int32_t next = top[0];
        cJSON_AddItemToArray(cont, cJSON_CreateNumber(next));
        if (g + 1 == generate) break;
        if (bwt_lm_forward(lm, &next, 1, logits) != BWT_STATUS_OK) {
          fprintf(stderr, "bwt lm run: prompt %d: %s\n", i, bwt_last_error());
          rc = 1;
          break;
        }
        entropy_top(logits, c->V, top, 1);
      }
    }
    if (!rc) rc = print_json(o, 0);
    else cJSON_Delete(o);
  }
  free(logits);
  free(top);
  bwt_lm_close(lm);
  prompts_free(p, n);
  return rc;
}

static int lm_ppl(int argc, char **argv) {
  char prompts[OPT_STRING_MAX] = "", text[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"prompts", OPT_STRING, prompts, "JSON lines file of token sequences, {\"tokens\": [ids...]}, each scored from position 0"},
      {"text", OPT_STRING, text, "a text file, scored as one sequence through the model's tokenizer"},
  };
  cli_spec spec = {"lm ppl", "DIR --prompts FILE.jsonl | --text FILE",
                   "Perplexity: the mean negative log-likelihood (nats) of every token after the first of each\n"
                   "sequence given those before it, and its exponential, as JSON.",
                   opts, 2, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (!prompts[0] == !text[0]) {
    fprintf(stderr, "bwt lm ppl: needs one of --prompts FILE and --text FILE\n");
    return 2;
  }
  prompt *p = NULL;
  int n = 0;
  if (text[0]) {
    char *body = NULL;
    size_t len = 0;
    if (bwt_read_file(text, &body, &len) != BWT_STATUS_OK) return cli_error("lm ppl");
    rc = one_text_prompt("lm ppl", pos[0], body, len, &p, &n);
    free(body);
  } else {
    rc = read_prompts("lm ppl", pos[0], prompts, &p, &n);
  }
  if (rc) return rc;
  bwt_lm *lm = NULL;
  if ((rc = open_model("lm ppl", pos[0], &lm))) {
    prompts_free(p, n);
    return rc;
  }
  const bwt_lm_config *c = bwt_lm_config_of(lm);
  double nll = 0;
  long count = 0;
  for (int i = 0; !rc && i < n; i++) {
    float *all = malloc((size_t)p[i].n * c->V * sizeof(float));
    bwt_lm_reset(lm);
    if (!all) {
      fprintf(stderr, "bwt lm ppl: out of memory\n");
      rc = 1;
    } else if (bwt_lm_forward(lm, p[i].ids, p[i].n, all) != BWT_STATUS_OK) {
      fprintf(stderr, "bwt lm ppl: sequence %d: %s\n", i, bwt_last_error());
      rc = 1;
    } else {
      for (int t = 0; t + 1 < p[i].n; t++, count++) nll -= log_softmax_at(all + (size_t)t * c->V, c->V, p[i].ids[t + 1]);
    }
    free(all);
  }
  bwt_lm_close(lm);
  prompts_free(p, n);
  if (rc) return rc;
  if (count == 0) {
    fprintf(stderr, "bwt lm ppl: no token to score (every sequence has one token)\n");
    return 1;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "sequences", n);
  cJSON_AddNumberToObject(o, "scored_tokens", (double)count);
  cJSON_AddNumberToObject(o, "nll_nats", nll / count);
  cJSON_AddNumberToObject(o, "ppl", exp(nll / count));
  return print_json(o, 1);
}

#define CAPTURE_FORMAT \
  "bwt lm capture 1: tensor 'p{i}.{point}' is point {point} (TransformerLens names, docs/lm.md) of prompt i (0-based line order), batch dimension dropped; 'p{i}.tokens' (I32) its tokens; 'p{i}.logits' (T,V) its logits"

static int lm_capture(int argc, char **argv) {
  char prompts[OPT_STRING_MAX] = "", points[OPT_STRING_MAX] = "logits", out[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"prompts", OPT_STRING, prompts, "JSON lines file of prompts, {\"tokens\": [ids...]}"},
      {"points", OPT_STRING, points, "comma-separated point names, '*' a wildcard (blocks.*.attn.hook_k,hook_embed); logits always kept"},
      {"out", OPT_STRING, out, "output safetensors file (written atomically)"},
  };
  cli_spec spec = {"lm capture", "DIR --prompts FILE.jsonl --points LIST --out FILE.safetensors",
                   "Runs each prompt and writes the chosen activations, its tokens and its logits to one\n"
                   "safetensors file; tensor p{i}.{point} is prompt i's point (its __metadata__ says so).",
                   opts, 3, 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (!prompts[0] || !out[0]) {
    fprintf(stderr, "bwt lm capture: needs --prompts FILE and --out FILE\n");
    return 2;
  }
  const char *pats[64];
  char list[OPT_STRING_MAX];
  snprintf(list, sizeof list, "%s", points); /* points stays whole for the metadata */
  int n_pats = 0, has_logits = 0;
  for (char *tok = strtok(list, ","); tok && n_pats < 63; tok = strtok(NULL, ",")) {
    pats[n_pats++] = tok;
    has_logits |= strcmp(tok, "logits") == 0;
  }
  if (!has_logits) pats[n_pats++] = "logits";
  prompt *p = NULL;
  int n = 0;
  if ((rc = read_prompts("lm capture", pos[0], prompts, &p, &n))) return rc;
  bwt_lm *lm = NULL;
  if ((rc = open_model("lm capture", pos[0], &lm))) {
    prompts_free(p, n);
    return rc;
  }
  bwt_lm_capture *caps = calloc((size_t)n, sizeof *caps);
  int total = 0;
  bwt_status s = caps ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    s = bwt_lm_capture_run(lm, p[i].ids, p[i].n, pats, n_pats, &caps[i], NULL);
    total += caps[i].n + 1;
  }
  bwt_st_tensor *t = s == BWT_STATUS_OK ? calloc((size_t)total, sizeof *t) : NULL;
  char (*names)[BWT_LM_NAME_MAX + 16] = t ? calloc((size_t)total, sizeof *names) : NULL;
  if (s == BWT_STATUS_OK && !names) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  int k = 0;
  for (int i = 0; s == BWT_STATUS_OK && i < n; i++) {
    snprintf(names[k], sizeof names[k], "p%d.tokens", i);
    t[k] = (bwt_st_tensor){names[k], BWT_DTYPE_I32, 1, {p[i].n}, p[i].ids};
    k++;
    for (int j = 0; j < caps[i].n; j++, k++) {
      const bwt_lm_activation *a = &caps[i].acts[j];
      snprintf(names[k], sizeof names[k], "p%d.%s", i, a->name);
      t[k] = (bwt_st_tensor){names[k], BWT_DTYPE_F32, a->ndim, {a->shape[0], a->shape[1], a->shape[2]}, a->data};
    }
  }
  if (s == BWT_STATUS_OK) {
    const bwt_lm_config *c = bwt_lm_config_of(lm);
    const char *keys[] = {"format", "model", "architecture", "points"};
    const char *values[] = {CAPTURE_FORMAT, pos[0], c->architecture, points};
    s = bwt_safetensors_write(out, t, k, keys, values, 4);
  }
  rc = s == BWT_STATUS_OK ? 0 : cli_error("lm capture");
  if (!rc) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "out", out);
    cJSON_AddNumberToObject(o, "prompts", n);
    cJSON_AddNumberToObject(o, "tensors", k);
    rc = print_json(o, 0);
  }
  for (int i = 0; caps && i < n; i++) bwt_lm_capture_free(&caps[i]);
  free(caps);
  free(t);
  free(names);
  bwt_lm_close(lm);
  prompts_free(p, n);
  return rc;
}

/* The lm subcommands (tokenize, init, sula, geometry, intervene, protocol: cli/cmd_lm_tokenize.c,
 * cmd_lm_init.c, cmd_lm_sula.c, cmd_lm_geometry.c, cmd_lm_protocol.c). */
static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} lm_table[] = {
    {"info", lm_info, "architecture, sizes, dtype, shards and tokenizer of a model directory"},
    {"run", lm_run, "next-token top-k and entropy per prompt, optional greedy continuation"},
    {"ppl", lm_ppl, "perplexity over token sequences"},
    {"capture", lm_capture, "activations at TransformerLens-named points into a safetensors file"},
    {"tokenize", cmd_lm_tokenize, "text to token ids (and back with --decode) with a model's tokenizer"},
    {"init", cmd_lm_init, "a random-weight model directory of any architecture (Hugging Face layout)"},
    {"sula", cmd_lm_sula, "SULA in-context label task against its exact posterior (Paper III)"},
    {"geometry", cmd_lm_geometry, "Paper III's value manifold, key orthogonality and attention focusing"},
    {"intervene", cmd_lm_intervene, "edits of the final token's values along the entropy axis and a random one"},
    {"protocol", cmd_lm_protocol, "all of Paper III's protocol over several model directories, one table"},
};

int cmd_lm(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    FILE *f = argc < 2 ? stderr : stdout;
    fprintf(f, "usage: bwt lm COMMAND DIR [options]   (bwt lm COMMAND --help for its options)\n\n"
               "Hugging Face language models (LlamaForCausalLM, MistralForCausalLM, GPT2LMHeadModel,\n"
               "GPTNeoXForCausalLM, PhiForCausalLM) in fp32.\n\n");
    for (size_t i = 0; i < sizeof lm_table / sizeof *lm_table; i++) fprintf(f, "  %-10s %s\n", lm_table[i].name, lm_table[i].summary);
    return argc < 2 ? 2 : 0;
  }
  bwt_alloc_hooks_install();
  for (size_t i = 0; i < sizeof lm_table / sizeof *lm_table; i++)
    if (strcmp(argv[1], lm_table[i].name) == 0) return lm_table[i].run(argc - 1, argv + 1);
  fprintf(stderr, "bwt lm: unknown command '%s' (see bwt lm --help)\n", argv[1]);
  return 2;
}
