/* bwt lm protocol: Paper III's whole protocol over a list of Hugging Face model directories, one row
 * each, tabulated beside the papers' figures (bwt/lab/lm_protocol.h). The table and JSON are
 * rewritten after every model, so a long run over several models keeps what it has finished. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/lm_protocol.h"
#include "bwt/lab/sula.h"
#include "bwt/train.h"
#include "commands.h"
#include "options.h"

#define CMD "lm protocol"
#define MAX_MODELS 64

typedef struct {
  int index, count;
  const char *dir;
} stage_ctx;

static void on_stage(void *ctx, const char *name) {
  const stage_ctx *c = ctx;
  fprintf(stderr, "bwt " CMD ": model %d/%d %s: %s\n", c->index + 1, c->count, c->dir, name);
}

static bwt_status write_tables(const char *out, const bwt_lm_protocol_options *o, const bwt_lm_protocol_row *rows, int n) {
  BWT_TRY(write_output(out, "protocol.json", bwt_lm_protocol_to_json(o, rows, n)));
  return write_output(out, "protocol.md", bwt_lm_protocol_to_markdown(o, rows, n));
}

int cmd_lm_protocol(int argc, char **argv) {
  bwt_lm_protocol_options o;
  bwt_lm_protocol_options_default(&o);
  char ks_text[OPT_STRING_MAX] = "0,1,2,4,8", out[OPT_STRING_MAX] = "lm_protocol";
  int threads = 0;
  cli_option opts[] = {
      {"k", OPT_STRING, ks_text, "SULA's numbers of in-context examples (comma-separated)"},
      {"prompts-per-k", OPT_INT, &o.per_k, "SULA prompts per k and control"},
      {"candidates", OPT_INT, &o.candidates, "candidates of each prompt pool (mixed or ids, and math)"},
      {"per-quintile", OPT_INT, &o.per_quintile, "prompts drawn from each next-token-entropy quintile"},
      {"bootstrap", OPT_INT, &o.n_boot, "bootstrap resamples of the geometry's intervals"},
      {"verify-prompts", OPT_INT, &o.verify_prompts, "random-token prompts for Paper II's identities"},
      {"verify-length", OPT_INT, &o.verify_length, "their length in tokens"},
      {"seed", OPT_U64, &o.seed, "seed of every draw"},
      {"out", OPT_STRING, out, "output directory (protocol.json, protocol.md)"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {CMD, "DIR [DIR ...] [options]",
                   "Paper III's protocol on each model directory: SULA against its exact posterior (k and the\n"
                   "three controls), the value manifold, key orthogonality and attention focusing on the mixed\n"
                   "and the math pool (a model without a tokenizer: SULA in id mode, its own samples as the\n"
                   "pool, no math pool), the cut of the entropy axis against a random axis at the last layer,\n"
                   "Paper II's identities on random prompts, and seed 000's detector on the SULA prompts with\n"
                   "its controls. Prints the table beside the papers' figures and writes OUT/protocol.md and\n"
                   "OUT/protocol.json after each model (definitions: docs/lm.md, \"The protocol\").",
                   opts, (int)(sizeof opts / sizeof *opts), 1, MAX_MODELS};
  const char *dirs[MAX_MODELS];
  int n = 0, rc = cli_parse(&spec, argc, argv, dirs, &n);
  if (rc) return rc == 1 ? 0 : rc;
  o.n_ks = parse_int_list(ks_text, o.ks, BWT_PROTOCOL_MAX_KS, 0, BWT_SULA_MAX_K);
  const struct {
    int ok;
    const char *message;
  } checks[] = {
      {o.n_ks >= 1, "--k needs 1 to 8 comma-separated integers in 0..4096"},
      {o.per_k >= 2 && o.per_k <= 100000, "--prompts-per-k must be in 2..100000"},
      {o.candidates >= 5 && o.candidates <= 1000000, "--candidates must be in 5..1000000"},
      {o.per_quintile >= 1 && o.per_quintile <= 100000, "--per-quintile must be in 1..100000"},
      {o.n_boot >= 0 && o.n_boot <= 1000000, "--bootstrap must be in 0..1000000"},
      {o.verify_prompts >= 1 && o.verify_prompts <= 10000, "--verify-prompts must be in 1..10000"},
      {o.verify_length >= 2 && o.verify_length <= 100000, "--verify-length must be in 2..100000"},
  };
  for (size_t i = 0; i < sizeof checks / sizeof *checks; i++)
    if (!checks[i].ok) {
      fprintf(stderr, "bwt " CMD ": %s\n", checks[i].message);
      return 2;
    }
  if (bwt_set_threads(threads) != BWT_STATUS_OK) return cli_error(CMD);

  bwt_lm_protocol_row *rows = calloc((size_t)n, sizeof *rows);
  if (!rows) {
    fprintf(stderr, "bwt " CMD ": out of memory\n");
    return 1;
  }
  int done = 0, failed = 0;
  for (int i = 0; i < n; i++) {
    stage_ctx ctx = {i, n, dirs[i]};
    if (bwt_lm_protocol_run(dirs[i], &o, &rows[done], on_stage, &ctx) != BWT_STATUS_OK) {
      /* One model's failure leaves the others' rows: named here, missing from the table, exit 1. */
      fprintf(stderr, "bwt " CMD ": %s: %s\n", dirs[i], bwt_last_error());
      failed++;
      continue;
    }
    for (int k = 0; k < BWT_PROTOCOL_STAGES; k++)
      if (rows[done].skipped[k][0]) fprintf(stderr, "bwt " CMD ": %s: %s skipped: %s\n", dirs[i], bwt_lm_protocol_stages[k], rows[done].skipped[k]);
    done++;
    if (write_tables(out, &o, rows, done) != BWT_STATUS_OK) {
      free(rows);
      return cli_error(CMD);
    }
  }
  if (done) {
    char *md = bwt_lm_protocol_to_markdown(&o, rows, done);
    if (md) fputs(md, stdout);
    free(md);
    fprintf(stderr, "bwt " CMD ": %d model(s) in %s/protocol.md and protocol.json\n", done, out);
  }
  free(rows);
  return failed ? 1 : 0;
}
