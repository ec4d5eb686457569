/* bwt lm sula: Paper III's SULA task on a language model against its exact posterior
 * (bwt/lab/sula.h has the task, the template, the controls and the metrics' definitions). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/lab/sula.h"
#include "bwt/lm.h"
#include "bwt/tokenizer.h"
#include "bwt/train.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

#define CMD "lm sula"
#define MAX_KS 64

static int bad(const char *msg, const char *what) {
  fprintf(stderr, "bwt " CMD ": %s%s%s\n", msg, what ? ": " : "", what ? what : "");
  return 2;
}

/* "A,B": two non-empty words without blanks into a[2] (pointing into buf). */
static int parse_words(const char *text, char *buf, size_t cap, const char *w[2]) {
  snprintf(buf, cap, "%s", text);
  char *comma = strchr(buf, ',');
  if (!comma || comma == buf || !comma[1] || strchr(comma + 1, ',') || strpbrk(buf, " \t\n:")) return -1;
  *comma = '\0';
  w[0] = buf, w[1] = comma + 1;
  return 0;
}

static int has_tokenizer(const char *dir) {
  static const char *names[] = {"tokenizer.json", "tokenizer.model", "original/tokenizer.model"};
  for (int i = 0; i < 3; i++) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (bwt_path_exists(path)) return 1;
  }
  return 0;
}

typedef struct {
  int every;
} progress_ctx;

static void on_progress(void *ctx, int done, int total) {
  const progress_ctx *p = ctx;
  if (done % p->every == 0 || done == total) progress_count("bwt lm sula: prompts", done, total, "");
}

static cJSON *ids_json(const int32_t *ids, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
  return a;
}

/* One JSON line per prompt, in the record format other tools read (docs/lm.md). */
static bwt_status write_export(const char *path, const bwt_sula_result *r) {
  int total = r->n_ks * BWT_SULA_CONTROL_COUNT * r->per_k;
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  bwt_status s = buf ? BWT_STATUS_OK : bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
  for (int i = 0; s == BWT_STATUS_OK && i < total; i++) {
    const bwt_sula_prompt *p = &r->prompts[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", p->id);
    cJSON_AddNumberToObject(o, "k", p->k);
    cJSON_AddStringToObject(o, "control", bwt_sula_control_name(p->control));
    cJSON_AddItemToObject(o, "tokens", ids_json(p->tokens, p->n_tokens));
    cJSON_AddItemToObject(o, "labels", ids_json(p->labels, 2));
    cJSON_AddNumberToObject(o, "y", p->y);
    cJSON *post = cJSON_AddArrayToObject(o, "posterior");
    cJSON_AddItemToArray(post, cJSON_CreateNumber(p->posterior[0]));
    cJSON_AddItemToArray(post, cJSON_CreateNumber(p->posterior[1]));
    if (p->text) cJSON_AddStringToObject(o, "text", p->text);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t n = line ? strlen(line) : 0;
    if (line && len + n + 2 > cap) {
      while (len + n + 2 > cap) cap *= 2;
      char *grown = realloc(buf, cap);
      if (grown) buf = grown;
      else cJSON_free(line), line = NULL;
    }
    if (!line) {
      s = bwt_fail(BWT_STATUS_NOMEM, "out of memory writing %s", path);
      break;
    }
    memcpy(buf + len, line, n);
    len += n;
    buf[len++] = '\n';
    cJSON_free(line);
  }
  if (s == BWT_STATUS_OK) s = bwt_write_file_atomic(path, buf, len);
  free(buf);
  return s;
}

static cJSON *metrics_json(const bwt_sula_metrics *m) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "n", m->n);
  cJSON_AddNumberToObject(o, "entropy_mae_bits", m->entropy_mae);
  cJSON_AddNumberToObject(o, "kl_bits", m->kl);
  cJSON_AddNumberToObject(o, "ece", m->ece);
  cJSON_AddNumberToObject(o, "label_mass", m->label_mass);
  cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
  cJSON_AddNumberToObject(o, "bayes_accuracy", m->bayes_accuracy);
  cJSON_AddNumberToObject(o, "mean_model_p_a", m->mean_model_a);
  cJSON_AddNumberToObject(o, "mean_bayes_p_a", m->mean_bayes_a);
  cJSON_AddNumberToObject(o, "mean_latent_p_a", m->mean_latent_a);
  cJSON_AddNumberToObject(o, "shift_vs_none", m->shift);
  cJSON *bins = cJSON_AddArrayToObject(o, "calibration");
  for (int b = 0; b < BWT_SULA_BINS; b++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "lo", b / (double)BWT_SULA_BINS);
    cJSON_AddNumberToObject(e, "hi", (b + 1) / (double)BWT_SULA_BINS);
    cJSON_AddNumberToObject(e, "n", m->bin_n[b]);
    cJSON_AddNumberToObject(e, "model_p_a", m->bin_model[b]);
    cJSON_AddNumberToObject(e, "bayes_p_a", m->bin_bayes[b]);
    cJSON_AddItemToArray(bins, e);
  }
  return o;
}

int cmd_lm_sula(int argc, char **argv) {
  char ks_text[OPT_STRING_MAX] = "0,1,2,4,8", labels[OPT_STRING_MAX] = "auto", remap[OPT_STRING_MAX] = "auto";
  char label_ids[OPT_STRING_MAX] = "5,6", remap_ids[OPT_STRING_MAX] = "7,8", sep_ids[OPT_STRING_MAX] = "3,4";
  char carrier_ids[OPT_STRING_MAX] = "10-last", export_path[OPT_STRING_MAX] = "", json_path[OPT_STRING_MAX] = "";
  int per_k = 64, mask_id = 9, ids_mode = 0, threads = 0;
  uint64_t seed = 0;
  double alpha = BWT_SULA_ALPHA_DEFAULT;
  cli_option opts[] = {
      {"k", OPT_STRING, ks_text, "in-context examples per prompt, a comma-separated list"},
      {"prompts-per-k", OPT_INT, &per_k, "prompts per k and control"},
      {"seed", OPT_U64, &seed, "seed of the prompts"},
      {"alpha", OPT_DOUBLE, &alpha, "probability that an example's label is the latent label"},
      {"labels", OPT_STRING, labels, "text mode: label words A,B (single tokens after \": \"); auto: the first built-in pair that is"},
      {"remap-labels", OPT_STRING, remap, "text mode: the remap control's pair; auto: the next built-in pair that is single tokens"},
      {"ids", OPT_FLAG, &ids_mode, "id mode even when the model has a tokenizer"},
      {"label-ids", OPT_STRING, label_ids, "id mode: the label ids A,B"},
      {"remap-ids", OPT_STRING, remap_ids, "id mode: the remap control's label ids"},
      {"sep-ids", OPT_STRING, sep_ids, "id mode: separators after a carrier (\":\") and after a label (\"\\n\")"},
      {"carrier-ids", OPT_STRING, carrier_ids, "id mode: carriers drawn from LO-HI (HI may be 'last'), minus the other ids"},
      {"mask-id", OPT_INT, &mask_id, "id mode: the ablated control's carrier"},
      {"export", OPT_STRING, export_path, "write every prompt as a JSON line (id, k, control, tokens, labels, y, posterior, text)"},
      {"json", OPT_STRING, json_path, "write the metrics per k and control as JSON"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {CMD, "DIR [options]",
                   "SULA (Paper III): k in-context examples \"w: L\" with two nonsense one-token labels, each the latent\n"
                   "label with probability alpha; the model's next-token probabilities of the two labels after the\n"
                   "query \"wq:\", renormalised, against the exact predictive P(next=A|D) = a*p(y=A|D) + (1-a)*p(y=B|D).\n"
                   "Controls: remap (another label pair), shuffled (labels independent of y: exactly 1/2), ablated\n"
                   "(carriers masked: nothing should change). A model without a tokenizer runs in id mode.\n"
                   "Prints a table (entropy MAE and KL in bits, ECE, label mass, accuracy) per k and control.",
                   opts, (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  int ks[MAX_KS];
  int n_ks = parse_int_list(ks_text, ks, MAX_KS, 0, BWT_SULA_MAX_K);
  if (n_ks < 1) return bad("--k needs a comma-separated list of integers in 0..4096", ks_text);
  if (per_k < 1 || per_k > 100000) return bad("--prompts-per-k must be in 1..100000", NULL);
  if (!(alpha > 0 && alpha < 1)) return bad("--alpha must be in (0, 1)", NULL);
  if (threads < 0 || threads > 1024) return bad("--threads must be in 0..1024", NULL);
  int text_mode = !ids_mode && has_tokenizer(pos[0]);
  static const char *id_flags[] = {"label-ids", "remap-ids", "sep-ids", "carrier-ids", "mask-id"};
  for (int i = 0; i < 5; i++)
    if (text_mode && cli_given(&spec, id_flags[i])) {
      fprintf(stderr, "bwt " CMD ": --%s is for id mode (a model without a tokenizer, or --ids)\n", id_flags[i]);
      return 2;
    }
  if (!text_mode && (cli_given(&spec, "labels") || cli_given(&spec, "remap-labels")))
    return bad("--labels and --remap-labels need the model's tokenizer (this run is in id mode: use --label-ids)", NULL);

  bwt_lm *lm0 = NULL;
  if (bwt_lm_open(&lm0, pos[0]) != BWT_STATUS_OK) return cli_error(CMD);
  const bwt_lm_config *cfg = bwt_lm_config_of(lm0);
  int V = cfg->V;
  bwt_sula_spec ss = {.alpha = alpha, .seed = seed, .bos = -1, .mask_word = BWT_SULA_MASK_WORD};
  bwt_tokenizer *tok = NULL;
  char lab_buf[OPT_STRING_MAX], rem_buf[OPT_STRING_MAX];
  rc = 0;
  if (text_mode) {
    if (bwt_tokenizer_load(&tok, pos[0]) != BWT_STATUS_OK) rc = cli_error(CMD);
    ss.tok = tok;
    ss.carriers = bwt_sula_carriers, ss.n_carriers = bwt_sula_n_carriers;
    int from = 0;
    for (int which = 0; !rc && which < 2; which++) {
      const char *given = which ? remap : labels;
      const char **words = which ? ss.remap_words : ss.label_words;
      int32_t *ids = which ? ss.remap : ss.labels;
      if (strcmp(given, "auto") == 0) {
        /* The next built-in pair that is two single tokens (and not the task's labels). */
        if (bwt_sula_pick_pair(tok, &from, which ? ss.labels : NULL, ids) != BWT_STATUS_OK) rc = cli_error(CMD);
        else words[0] = bwt_sula_label_pairs[from][0], words[1] = bwt_sula_label_pairs[from][1], from++;
      } else if (parse_words(given, which ? rem_buf : lab_buf, OPT_STRING_MAX, words)) {
        rc = bad(which ? "--remap-labels needs two words A,B (no blanks or colons)" : "--labels needs two words A,B (no blanks or colons)", given);
      } else {
        for (int j = 0; !rc && j < 2; j++)
          if (bwt_sula_label_id(tok, words[j], &ids[j]) != BWT_STATUS_OK) rc = (fprintf(stderr, "bwt " CMD ": %s\n", bwt_last_error()), 2);
      }
    }
  } else {
    int a[2], b[2], sp[2], lo = -1, hi = -1;
    char tail[OPT_STRING_MAX] = "";
    if (parse_int_list(label_ids, a, 2, 0, 1L << 30) != 2) rc = bad("--label-ids needs two ids a,b", label_ids);
    else if (parse_int_list(remap_ids, b, 2, 0, 1L << 30) != 2) rc = bad("--remap-ids needs two ids c,d", remap_ids);
    else if (parse_int_list(sep_ids, sp, 2, 0, 1L << 30) != 2) rc = bad("--sep-ids needs two ids s1,s2", sep_ids);
    else if (sscanf(carrier_ids, "%d-%511s", &lo, tail) != 2 || lo < 0 || (strcmp(tail, "last") != 0 && sscanf(tail, "%d", &hi) != 1))
      rc = bad("--carrier-ids needs LO-HI (HI an id or 'last')", carrier_ids);
    if (!rc && strcmp(tail, "last") == 0) hi = V - 1;
    int all[8] = {a[0], a[1], b[0], b[1], sp[0], sp[1], mask_id, hi};
    for (int i = 0; !rc && i < 8; i++)
      if (all[i] < 0 || all[i] >= V) {
        fprintf(stderr, "bwt " CMD ": id %d (of --label-ids, --remap-ids, --sep-ids, --mask-id, --carrier-ids) is outside the vocabulary 0..%d\n", all[i], V - 1);
        rc = 2;
      }
    if (!rc) {
      ss.labels[0] = a[0], ss.labels[1] = a[1], ss.remap[0] = b[0], ss.remap[1] = b[1];
      ss.sep[0] = sp[0], ss.sep[1] = sp[1], ss.mask_id = mask_id, ss.carrier_lo = lo, ss.carrier_hi = hi;
      ss.bos = cfg->bos >= 0 && cfg->bos < V ? cfg->bos : -1;
    }
  }
  for (int j = 0; !rc && j < 2; j++)
    if (ss.labels[j] >= V || ss.remap[j] >= V) {
      fprintf(stderr, "bwt " CMD ": label id %d is outside the model's vocabulary 0..%d\n", ss.labels[j] >= V ? ss.labels[j] : ss.remap[j], V - 1);
      rc = 2;
    }
  if (!rc && bwt_sula_spec_check(&ss) != BWT_STATUS_OK) rc = (fprintf(stderr, "bwt " CMD ": %s\n", bwt_last_error()), 2);
  if (!rc && bwt_set_threads(threads) != BWT_STATUS_OK) rc = cli_error(CMD);
  /* One model copy per thread (F32 weights are mapped once, shared); a converted model runs as one
   * copy whose forward is threaded inside instead. */
  int n_lms = cfg->converted_bytes ? 1 : omp_get_max_threads();
  int total = n_ks * BWT_SULA_CONTROL_COUNT * per_k;
  if (n_lms > total) n_lms = total;
  bwt_lm **lms = rc ? NULL : calloc((size_t)n_lms, sizeof *lms);
  if (!rc && !lms) rc = bad("out of memory", NULL);
  if (lms) lms[0] = lm0;
  for (int i = 1; !rc && i < n_lms; i++)
    if (bwt_lm_open(&lms[i], pos[0]) != BWT_STATUS_OK) rc = cli_error(CMD);
  bwt_sula_result r = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  progress_ctx pc = {total / 10 > 0 ? total / 10 : 1};
  if (!rc) {
    bwt_status s = bwt_sula_run(lms, n_lms, &ss, ks, n_ks, per_k, total >= 200 ? on_progress : NULL, &pc, &r);
    if (s != BWT_STATUS_OK) rc = cli_error(CMD) + (s == BWT_STATUS_ARG); /* a k the model cannot take: exit code 2 */
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  if (!rc && export_path[0] && write_export(export_path, &r) != BWT_STATUS_OK) rc = cli_error(CMD);
  if (!rc) {
    char lab_desc[512], rem_desc[512];
    if (text_mode) {
      snprintf(lab_desc, sizeof lab_desc, "\" %s\"/\" %s\" (ids %d, %d)", ss.label_words[0], ss.label_words[1], ss.labels[0], ss.labels[1]);
      snprintf(rem_desc, sizeof rem_desc, "\" %s\"/\" %s\" (ids %d, %d)", ss.remap_words[0], ss.remap_words[1], ss.remap[0], ss.remap[1]);
    } else {
      snprintf(lab_desc, sizeof lab_desc, "ids %d, %d", ss.labels[0], ss.labels[1]);
      snprintf(rem_desc, sizeof rem_desc, "ids %d, %d", ss.remap[0], ss.remap[1]);
    }
    printf("SULA on %s (%s), %s mode: labels %s, remap %s; alpha %g, %d prompts per k and control, seed %llu\n", pos[0],
           cfg->architecture, text_mode ? "text" : "id", lab_desc, rem_desc, alpha, per_k, (unsigned long long)seed);
    if (text_mode) printf("template: \"w1: A\\nw2: B\\n...\\nwq:\" (the tokenizer's special tokens around it)\n");
    else printf("template: %s w s1 L s2 ... wq s1 with s1 = %d, s2 = %d; carriers %d-%d, mask %d\n", ss.bos >= 0 ? "[bos]" : "",
                ss.sep[0], ss.sep[1], ss.carrier_lo, ss.carrier_hi, ss.mask_id);
    printf("%5s %-9s %9s %9s %7s %10s %6s %9s %8s %8s %7s\n", "k", "control", "H_MAE", "KL", "ECE", "label_mass", "acc",
           "bayes_acc", "P(A)mod", "P(A)bay", "shift");
    for (int ki = 0; ki < n_ks; ki++)
      for (int c = 0; c < BWT_SULA_CONTROL_COUNT; c++) {
        const bwt_sula_metrics *m = &r.metrics[ki * BWT_SULA_CONTROL_COUNT + c];
        printf("%5d %-9s %9.5f %9.5f %7.4f %10.3g %6.3f %9.3f %8.4f %8.4f", ks[ki], bwt_sula_control_name((bwt_sula_control)c),
               m->entropy_mae, m->kl, m->ece, m->label_mass, m->accuracy, m->bayes_accuracy, m->mean_model_a, m->mean_bayes_a);
        if (c == BWT_SULA_ABLATED) printf(" %7.4f", m->shift);
        printf("\n");
      }
    printf("wall %.2f s (%d prompts, %d model copies)\n", wall, total, n_lms);
  }
  if (!rc && json_path[0]) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", pos[0]);
    cJSON_AddStringToObject(o, "architecture", cfg->architecture);
    cJSON_AddStringToObject(o, "mode", text_mode ? "text" : "ids");
    cJSON_AddItemToObject(o, "labels", ids_json(ss.labels, 2));
    cJSON_AddItemToObject(o, "remap_labels", ids_json(ss.remap, 2));
    if (text_mode) {
      cJSON *w = cJSON_AddArrayToObject(o, "label_words"), *rw = cJSON_AddArrayToObject(o, "remap_words");
      for (int j = 0; j < 2; j++) {
        cJSON_AddItemToArray(w, cJSON_CreateString(ss.label_words[j]));
        cJSON_AddItemToArray(rw, cJSON_CreateString(ss.remap_words[j]));
      }
    } else {
      cJSON_AddItemToObject(o, "sep_ids", ids_json(ss.sep, 2));
      int32_t range[2] = {ss.carrier_lo, ss.carrier_hi};
      cJSON_AddItemToObject(o, "carrier_ids", ids_json(range, 2));
      cJSON_AddNumberToObject(o, "mask_id", ss.mask_id);
    }
    cJSON_AddNumberToObject(o, "alpha", alpha);
    cJSON_AddNumberToObject(o, "seed", (double)seed);
    cJSON_AddNumberToObject(o, "prompts_per_k", per_k);
    cJSON_AddStringToObject(o, "compared_with", "predictive P(next=A|D) = alpha*p(y=A|D) + (1-alpha)*p(y=B|D)");
    cJSON_AddNumberToObject(o, "wall_s", wall);
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    for (int ki = 0; ki < n_ks; ki++)
      for (int c = 0; c < BWT_SULA_CONTROL_COUNT; c++) {
        cJSON *row = metrics_json(&r.metrics[ki * BWT_SULA_CONTROL_COUNT + c]);
        cJSON_AddNumberToObject(row, "k", ks[ki]);
        cJSON_AddStringToObject(row, "control", bwt_sula_control_name((bwt_sula_control)c));
        cJSON_AddItemToArray(rows, row);
      }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    bwt_status s = text ? bwt_write_file_atomic(json_path, text, strlen(text)) : bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting %s", json_path);
    cJSON_free(text);
    if (s != BWT_STATUS_OK) rc = cli_error(CMD);
  }
  bwt_sula_result_free(&r);
  for (int i = 1; lms && i < n_lms; i++) bwt_lm_close(lms[i]);
  free(lms);
  bwt_lm_close(lm0);
  bwt_tokenizer_free(tok);
  return rc;
}
