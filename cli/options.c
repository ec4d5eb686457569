#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/fileio.h"
#include "reproduce.h"

/* strtol and friends skip leading blanks and take a sign: a number must start with a digit (or a
 * minus sign where negatives are allowed), so " -1" is no seed. */
static int number_start(const char *v, int sign_ok) {
  if (sign_ok && (*v == '-' || *v == '+')) v++;
  return isdigit((unsigned char)*v) || (*v == '.' && isdigit((unsigned char)v[1]));
}

static int parse_value(const cli_spec *spec, const cli_option *o, const char *v) {
  char *end = NULL;
  errno = 0;
  switch (o->type) {
    case OPT_INT: {
      if (!number_start(v, 1)) break;
      long x = strtol(v, &end, 10);
      if (!*v || *end || errno || x < -2147483647L || x > 2147483647L) break;
      *(int *)o->dest = (int)x;
      return 0;
    }
    case OPT_U64: {
      if (!number_start(v, 0)) break;
      unsigned long long x = strtoull(v, &end, 10);
      if (!*v || *end || errno) break;
      *(uint64_t *)o->dest = (uint64_t)x;
      return 0;
    }
    case OPT_DOUBLE: {
      if (!number_start(v, 1)) break;
      double x = strtod(v, &end);
      if (!*v || *end || errno || !isfinite(x)) break;
      *(double *)o->dest = x;
      return 0;
    }
    case OPT_STRING:
      if (!*v || strlen(v) >= OPT_STRING_MAX) break;
      strcpy((char *)o->dest, v);
      return 0;
    case OPT_FLAG:
      break;
  }
  static const char *const kind[] = {"an integer", "a non-negative integer", "a finite number", "", "a non-empty string"};
  fprintf(stderr, "bwt %s: --%s needs %s, got '%s' (see bwt %s --help)\n", spec->command, o->name,
          kind[o->type], v, spec->command);
  return 2;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, const char **positional, int *n_positional) {
  *n_positional = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      cli_usage(stdout, spec);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      if (*n_positional >= spec->max_positional) {
        fprintf(stderr, "bwt %s: unexpected argument '%s' (see bwt %s --help)\n", spec->command, a, spec->command);
        return 2;
      }
      positional[(*n_positional)++] = a;
      continue;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    cli_option *o = NULL;
    for (int k = 0; k < spec->n_opts; k++)
      if (strlen(spec->opts[k].name) == len && strncmp(spec->opts[k].name, name, len) == 0) o = &spec->opts[k];
    if (!o) {
      fprintf(stderr, "bwt %s: unknown option '%.*s' (see bwt %s --help)\n", spec->command, (int)len + 2, a, spec->command);
      return 2;
    }
    if (o->type == OPT_FLAG) {
      if (eq) {
        fprintf(stderr, "bwt %s: --%s takes no value\n", spec->command, o->name);
        return 2;
      }
      *(int *)o->dest = 1;
      o->given = 1;
      continue;
    }
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v) {
      fprintf(stderr, "bwt %s: --%s needs a value (see bwt %s --help)\n", spec->command, o->name, spec->command);
      return 2;
    }
    if (parse_value(spec, o, v)) return 2;
    o->given = 1;
  }
  if (*n_positional < spec->min_positional) {
    fprintf(stderr, "bwt %s: missing argument (usage: bwt %s %s)\n", spec->command, spec->command, spec->synopsis);
    return 2;
  }
  return 0;
}

int cli_given(const cli_spec *spec, const char *name) {
  for (int k = 0; k < spec->n_opts; k++)
    if (strcmp(spec->opts[k].name, name) == 0) return spec->opts[k].given;
  return 0;
}

void cli_usage(FILE *f, const cli_spec *spec) {
  fprintf(f, "usage: bwt %s %s\n\n%s\n\noptions (default in brackets):\n", spec->command, spec->synopsis, spec->summary);
  for (int k = 0; k < spec->n_opts; k++) {
    const cli_option *o = &spec->opts[k];
    char arg[64] = "", def[OPT_STRING_MAX + 8] = "";
    switch (o->type) {
      case OPT_INT:
        snprintf(arg, sizeof arg, " N");
        if (*(int *)o->dest == OPT_INT_UNSET) snprintf(def, sizeof def, "[unchanged]");
        else snprintf(def, sizeof def, "[%d]", *(int *)o->dest);
        break;
      case OPT_U64: snprintf(arg, sizeof arg, " N"); snprintf(def, sizeof def, "[%" PRIu64 "]", *(uint64_t *)o->dest); break;
      case OPT_DOUBLE: snprintf(arg, sizeof arg, " X"); snprintf(def, sizeof def, "[%g]", *(double *)o->dest); break;
      case OPT_STRING: snprintf(arg, sizeof arg, " S"); snprintf(def, sizeof def, "[%s]", (char *)o->dest); break;
      case OPT_FLAG:
        snprintf(def, sizeof def, "[%s]", *(int *)o->dest == OPT_INT_UNSET ? "unchanged" : *(int *)o->dest ? "on" : "off");
        break;
    }
    char left[96];
    snprintf(left, sizeof left, "--%s%s", o->name, arg);
    fprintf(f, "  %-22s %s %s\n", left, o->help, def);
  }
  fprintf(f, "  %-22s %s\n", "--help", "show this text");
}

void checkpoint_path(char *path, char *dir, size_t cap, const char *arg) {
  size_t len = strlen(arg);
  snprintf(dir, cap, "%s", arg);
  if (len >= 12 && strcmp(arg + len - 12, ".safetensors") == 0) {
    snprintf(path, cap, "%s", arg);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, cap, ".");
  } else {
    snprintf(path, cap, "%s/checkpoint.safetensors", arg);
  }
}

void output_dir(char *outdir, size_t cap, const char *out, const char *run_dir, const char *sub) {
  if (*out) snprintf(outdir, cap, "%s", out);
  else snprintf(outdir, cap, "%s/%s", run_dir, sub);
}

bwt_status write_output(const char *dir, const char *name, char *text) {
  if (!text) return bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting %s", name);
  char path[4096 + 64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  bwt_status s = bwt_mkdir_p(dir);
  if (s == BWT_STATUS_OK) s = bwt_write_file_atomic(path, text, strlen(text));
  free(text);
  return s;
}

int cli_error(const char *command) {
  fprintf(stderr, "bwt %s: %s\n", command, bwt_last_error());
  return 1;
}

void run_options_default(run_options *o) {
  memset(o, 0, sizeof *o);
  bwt_task_config_default(&o->cfg.task, "bijection");
  bwt_train_config_default(&o->cfg.train);
  bwt_model_config *m = &o->cfg.model;
  m->d_model = 64;
  m->n_layers = 2;
  m->n_heads = 4;
  m->tied_head = 0;
  m->window = 0;
  strcpy(o->arch, "transformer");
  strcpy(o->norm, "auto");
  strcpy(o->positions, "learned");
  strcpy(o->init, "bwt");
  strcpy(o->decay, "matrices");
  o->max_T = 0;
  strcpy(o->preset, "none");
}

int task_options(cli_option *opts, run_options *o) {
  bwt_task_config *t = &o->cfg.task;
  int n = 0;
  opts[n++] = (cli_option){"task", OPT_STRING, t->name, "wind tunnel: bijection | hmm | modular | recall | sticky"};
  opts[n++] = (cli_option){"V", OPT_INT, &t->V, "bijection: domain size (keys 0..V-1, values V..2V-1)"};
  opts[n++] = (cli_option){"L", OPT_INT, &t->L, "bijection: keys shown per sequence"};
  opts[n++] = (cli_option){"with-replacement", OPT_FLAG, &t->with_replacement, "bijection: keys drawn with replacement"};
  opts[n++] = (cli_option){"query", OPT_FLAG, &t->query, "bijection: paired layout with a trailing query key"};
  opts[n++] = (cli_option){"S", OPT_INT, &t->S, "hmm: hidden states (the readout's classes)"};
  opts[n++] = (cli_option){"O", OPT_INT, &t->O, "hmm: observation symbols"};
  opts[n++] = (cli_option){"K", OPT_INT, &t->K, "hmm: observations per sequence"};
  opts[n++] = (cli_option){"p", OPT_INT, &t->p, "modular: the modulus"};
  opts[n++] = (cli_option){"length", OPT_INT, &t->length, "modular: tokens per sequence"};
  opts[n++] = (cli_option){"opaque", OPT_FLAG, &t->opaque, "modular: values relabelled per sequence, the relabelling shown first"};
  opts[n++] = (cli_option){"pairs", OPT_INT, &t->pairs, "recall: key/value pairs shown"};
  opts[n++] = (cli_option){"queries", OPT_INT, &t->queries, "recall: stored keys queried"};
  opts[n++] = (cli_option){"fillers", OPT_INT, &t->fillers, "recall: filler tokens before the queries"};
  opts[n++] = (cli_option){"key-vocab", OPT_INT, &t->key_vocab, "recall: key tokens"};
  opts[n++] = (cli_option){"value-vocab", OPT_INT, &t->value_vocab, "recall: value tokens"};
  opts[n++] = (cli_option){"chain-len", OPT_INT, &t->chain_len, "sticky: positions per sequence"};
  return n;
}

int model_options(cli_option *opts, run_options *o) {
  bwt_model_config *m = &o->cfg.model;
  int n = 0;
  opts[n++] = (cli_option){"arch", OPT_STRING, o->arch, "transformer | mlp (context-free) | window_mlp | lstm"};
  opts[n++] = (cli_option){"d-model", OPT_INT, &m->d_model, "model width"};
  opts[n++] = (cli_option){"layers", OPT_INT, &m->n_layers, "blocks"};
  opts[n++] = (cli_option){"heads", OPT_INT, &m->n_heads, "attention heads (transformer)"};
  opts[n++] = (cli_option){"norm", OPT_STRING, o->norm, "rms | layer | auto (rms for transformer, layer for the baselines)"};
  opts[n++] = (cli_option){"tied-head", OPT_FLAG, &m->tied_head, "output head tied to the token embedding"};
  opts[n++] = (cli_option){"no-attn-bias", OPT_FLAG, &o->no_attn_bias, "transformer: Q, K, V, O projections without biases (as the reference's)"};
  opts[n++] = (cli_option){"init", OPT_STRING, o->init, "bwt (N(0, 0.02), GPT-2's) | torch (PyTorch's defaults, as the reference scripts)"};
  opts[n++] = (cli_option){"window", OPT_INT, &m->window, "window_mlp: tokens seen (0 = whole sequence)"};
  opts[n++] = (cli_option){"positions", OPT_STRING, o->positions, "learned | sinusoidal (fixed, any length) | none (any length; the causal mask lets a model count): the last two for evaluating longer sequences"};
  opts[n++] = (cli_option){"max-T", OPT_INT, &o->max_T, "learned positions to allocate (0 = the task's length); rows past the training length stay untrained"};
  return n;
}

int train_options(cli_option *opts, run_options *o) {
  bwt_train_config *t = &o->cfg.train;
  int n = 0;
  opts[n++] = (cli_option){"preset", OPT_STRING, o->preset, "none | cpu | quick | paper: the recipe bwt reproduce trains this task and --arch with (cli/reproduce_grids.c); explicit flags override it"};
  opts[n++] = (cli_option){"steps", OPT_INT, &t->steps, "optimisation steps"};
  opts[n++] = (cli_option){"batch", OPT_INT, &t->batch, "sequences per step"};
  opts[n++] = (cli_option){"lr", OPT_DOUBLE, &t->lr, "peak learning rate (AdamW)"};
  opts[n++] = (cli_option){"min-lr-frac", OPT_DOUBLE, &t->min_lr_frac, "cosine decays to this fraction of lr"};
  opts[n++] = (cli_option){"warmup", OPT_INT, &t->warmup, "linear warmup steps"};
  opts[n++] = (cli_option){"weight-decay", OPT_DOUBLE, &t->weight_decay, "decoupled weight decay"};
  opts[n++] = (cli_option){"decay", OPT_STRING, o->decay, "matrices (2-D tensors) | all (norms and biases too, torch.optim.AdamW's way)"};
  opts[n++] = (cli_option){"beta1", OPT_DOUBLE, &t->beta1, "AdamW beta1"};
  opts[n++] = (cli_option){"beta2", OPT_DOUBLE, &t->beta2, "AdamW beta2"};
  opts[n++] = (cli_option){"eps", OPT_DOUBLE, &t->eps, "AdamW epsilon"};
  opts[n++] = (cli_option){"clip", OPT_DOUBLE, &t->clip, "global gradient-norm clip (0 = off)"};
  opts[n++] = (cli_option){"soft-targets", OPT_FLAG, &t->soft_targets, "train against the exact posterior instead of sampled targets"};
  opts[n++] = (cli_option){"loss-horizon", OPT_INT, &t->loss_horizon, "train only on the first N supervised positions (0 = all); evaluation uses all"};
  opts[n++] = (cli_option){"position-jitter", OPT_INT, &t->position_jitter, "shift each training sequence's positions by a uniform 0..N (0 = off), so that longer sequences' positions are seen in training; evaluation never shifts; learned positions need --max-T >= length + N"};
  opts[n++] = (cli_option){"position-jitter-from", OPT_INT, &t->position_jitter_from, "--position-jitter shifts positions from this one on; those before it (a fixed header: the HMM's 53 tokens) keep their place"};
  opts[n++] = (cli_option){"seed", OPT_U64, &t->seed, "seed of the weights and the training batches"};
  opts[n++] = (cli_option){"eval-seed", OPT_U64, &t->eval_seed, "seed of the held-out evaluation stream"};
  opts[n++] = (cli_option){"eval-every", OPT_INT, &t->eval_every, "evaluate every N steps (0 = at the end only)"};
  opts[n++] = (cli_option){"eval-seqs", OPT_INT, &t->eval_seqs, "held-out sequences per evaluation"};
  opts[n++] = (cli_option){"ckpt-every", OPT_INT, &t->ckpt_every, "checkpoint every N steps (and at the end)"};
  opts[n++] = (cli_option){"lr-v-mult", OPT_DOUBLE, &t->lr_v_mult, "learning-rate multiplier of the attention value projections (Paper II's EM-like schedule: 10)"};
  opts[n++] = (cli_option){"snapshots", OPT_INT, &t->snapshots, "weights-only snapshots at N log-spaced steps (for bwt geometry --series)"};
  opts[n++] = (cli_option){"log-every", OPT_INT, &t->log_every, "log a metrics line every N steps"};
  opts[n++] = (cli_option){"init-from", OPT_STRING, t->init_from, "start from this checkpoint's (or run directory's) weights: a curriculum's next stage; the model must match"};
  opts[n++] = (cli_option){"threads", OPT_INT, &t->threads, "threads (0 = OMP_NUM_THREADS or all cores); results are bit-identical for equal thread counts"};
  return n;
}

#define MAX_FLAG_ARGS 96

int run_options_parse_flags(run_options *o, const char *flags, const char *command) {
  char buf[2048], *argv[MAX_FLAG_ARGS];
  if (snprintf(buf, sizeof buf, "%s", flags) >= (int)sizeof buf) {
    fprintf(stderr, "bwt %s: flags too long: %.80s...\n", command, flags);
    return 2;
  }
  int argc = 0;
  argv[argc++] = (char *)command;
  for (char *tok = strtok(buf, " "); tok && argc < MAX_FLAG_ARGS - 1; tok = strtok(NULL, " ")) argv[argc++] = tok;
  argv[argc] = NULL;
  cli_option opts[64];
  int n = task_options(opts, o), npos;
  n += model_options(opts + n, o);
  n += train_options(opts + n, o);
  cli_spec spec = {command, "", "", opts, n, 0, 0};
  return cli_parse(&spec, argc, argv, NULL, &npos);
}

/* The value of the option --name in argv (either "--name V" or "--name=V"), or fallback. */
static const char *argv_value(int argc, char **argv, const char *name, const char *fallback) {
  size_t len = strlen(name);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || strncmp(a + 2, name, len) != 0) continue;
    if (a[2 + len] == '\0' && i + 1 < argc) return argv[i + 1];
    if (a[2 + len] == '=') return a + 3 + len;
  }
  return fallback;
}

int run_options_preset(run_options *o, int argc, char **argv, const char *command) {
  const char *name = argv_value(argc, argv, "preset", "none");
  if (strcmp(name, "none") == 0) return 0;
  int preset = repro_preset_parse(name);
  if (preset < 0) {
    fprintf(stderr, "bwt %s: unknown preset '%s' (known: none, cpu, quick, paper)\n", command, name);
    return 2;
  }
  /* The recipe of the reproduce grid's cell for this task and architecture (cli/reproduce_grids.c). */
  const char *task = argv_value(argc, argv, "task", "bijection"), *arch = argv_value(argc, argv, "arch", "transformer");
  const repro_cell *cell = repro_find_cell((repro_preset)preset, task, arch);
  if (!cell) {
    fprintf(stderr, "bwt %s: preset %s has no recipe for --task %s with --arch %s\n", command, name, task, arch);
    return 2;
  }
  if (strchr(cell->flags[preset], '@')) {
    fprintf(stderr, "bwt %s: preset %s trains --task %s with --arch %s through a curriculum of runs: bwt reproduce runs it (cell %s)\n",
            command, name, task, arch, cell->name);
    return 2;
  }
  return run_options_parse_flags(o, cell->flags[preset], command);
}

int run_options_finish(run_options *o, const char *command) {
  bwt_model_config *m = &o->cfg.model;
  bwt_train_config *t = &o->cfg.train;
  if (t->init_from[0]) { /* a run directory stands for its checkpoint */
    char path[4096], dir[4096];
    checkpoint_path(path, dir, sizeof path, t->init_from);
    if (strlen(path) >= sizeof t->init_from) {
      fprintf(stderr, "bwt %s: --init-from path too long\n", command);
      return 2;
    }
    memcpy(t->init_from, path, strlen(path) + 1);
  }
  if (bwt_arch_parse(o->arch, &m->arch) != BWT_STATUS_OK) return cli_error(command) + 1;
  if (strcmp(o->norm, "auto") == 0) m->norm = m->arch == BWT_ARCH_TRANSFORMER ? BWT_NORM_RMS : BWT_NORM_LAYER;
  else if (bwt_norm_parse(o->norm, &m->norm) != BWT_STATUS_OK) return cli_error(command) + 1;
  bwt_task *task = NULL;
  if (bwt_task_create(&task, &o->cfg.task) != BWT_STATUS_OK) return cli_error(command) + 1;
  m->vocab = task->vocab;
  m->input_dim = task->input_dim;
  m->n_classes = task->n_classes;
  m->max_T = task->seq_len;
  if (bwt_positions_parse(o->positions, &m->positions) != BWT_STATUS_OK) return bwt_task_free(task), cli_error(command) + 1;
  if (bwt_init_parse(o->init, &m->init) != BWT_STATUS_OK) return bwt_task_free(task), cli_error(command) + 1;
  m->attn_bias = !o->no_attn_bias;
  if (strcmp(o->decay, "all") == 0) o->cfg.train.decay_all = 1;
  else if (strcmp(o->decay, "matrices") != 0) {
    fprintf(stderr, "bwt %s: unknown --decay '%s' (known: matrices, all)\n", command, o->decay);
    bwt_task_free(task);
    return 2;
  }
  if (o->max_T != 0 && o->max_T < task->seq_len) {
    fprintf(stderr, "bwt %s: --max-T %d is shorter than the task's sequences (%d)\n", command, o->max_T, task->seq_len);
    bwt_task_free(task);
    return 2;
  }
  if (o->max_T > 0) m->max_T = o->max_T;
  if (m->window == 0) m->window = task->seq_len;
  bwt_task_free(task);
  if (bwt_model_config_check(m) != BWT_STATUS_OK || bwt_run_config_check(&o->cfg) != BWT_STATUS_OK)
    return cli_error(command) + 1;
  return 0;
}

void task_overrides_init(run_options *given) {
  memset(given, 0, sizeof *given);
  for (const bwt_task_field *f = bwt_task_fields; f->key; f++) *bwt_task_field_int(&given->cfg.task, f) = OPT_INT_UNSET;
}

int task_overrides_apply(bwt_task_config *cfg, const bwt_task_config *given, const char *command) {
  if (given->name[0] && strcmp(given->name, cfg->name) != 0) {
    fprintf(stderr, "bwt %s: the checkpoint's task is %s; --task cannot change it\n", command, cfg->name);
    return 2;
  }
  for (const bwt_task_field *f = bwt_task_fields; f->key; f++) {
    int v = *bwt_task_field_int((bwt_task_config *)given, f);
    if (v == OPT_INT_UNSET) continue;
    if (strcmp(f->task, cfg->name) != 0) {
      fprintf(stderr, "bwt %s: %s is a setting of task %s, not of the checkpoint's task %s\n", command, f->key, f->task, cfg->name);
      return 2;
    }
    *bwt_task_field_int(cfg, f) = v;
  }
  return 0;
}

int task_options_check(const cli_spec *spec, const run_options *o, const char *command) {
  for (int k = 0; k < spec->n_opts; k++) {
    const cli_option *opt = &spec->opts[k];
    if (!opt->given) continue;
    for (const bwt_task_field *f = bwt_task_fields; f->key; f++)
      if (opt->dest == (const char *)&o->cfg.task + f->offset && strcmp(f->task, o->cfg.task.name) != 0) {
        fprintf(stderr, "bwt %s: --%s is a setting of task %s, not of %s\n", command, opt->name, f->task, o->cfg.task.name);
        return 2;
      }
  }
  return 0;
}

/* Options that apply to one architecture only. */
static const struct {
  const char *option;
  bwt_arch arch;
} arch_options[] = {
    {"heads", BWT_ARCH_TRANSFORMER},
    {"no-attn-bias", BWT_ARCH_TRANSFORMER},
    {"lr-v-mult", BWT_ARCH_TRANSFORMER},
    {"window", BWT_ARCH_WINDOW_MLP},
};

int run_options_check_given(const cli_spec *spec, const run_options *o, const char *command) {
  int rc = task_options_check(spec, o, command);
  if (rc) return rc;
  for (size_t i = 0; i < sizeof arch_options / sizeof arch_options[0]; i++)
    if (cli_given(spec, arch_options[i].option) && o->cfg.model.arch != arch_options[i].arch) {
      fprintf(stderr, "bwt %s: --%s applies to --arch %s only, not %s\n", command, arch_options[i].option,
              bwt_arch_name(arch_options[i].arch), bwt_arch_name(o->cfg.model.arch));
      return 2;
    }
  return 0;
}
