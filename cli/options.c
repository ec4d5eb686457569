#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
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

int parse_int_list(const char *text, int *out, int cap, long lo, long hi) {
  int n = 0;
  const char *p = text;
  while (*p) {
    char *end;
    if (!isdigit((unsigned char)*p)) return -1;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || v < lo || v > hi || n >= cap) return -1;
    out[n++] = (int)v;
    if (*end == ',' && end[1]) p = end + 1;
    else if (*end) return -1;
    else p = end;
  }
  return n > 0 ? n : -1;
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

cli_option threads_option(int *threads, const char *help) {
  return (cli_option){"threads", OPT_INT, threads, help ? help : "threads (0 = environment)"};
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

/* The command-line text of an ENUM row with a flag, parsed by run_options_finish (which has its
 * own rules: --norm auto, --decay's message); a new ENUM flag needs its text here and there. */
static char *enum_text(run_options *o, const bwt_setting *s) {
  static const struct {
    const char *key;
    size_t offset;
  } texts[] = {
      {"arch", offsetof(run_options, arch)},
      {"norm", offsetof(run_options, norm)},
      {"positions", offsetof(run_options, positions)},
      {"init", offsetof(run_options, init)},
      {"decay", offsetof(run_options, decay)},
      {"ssm_variant", offsetof(run_options, ssm_variant)},
      {"loss", offsetof(run_options, loss)},
  };
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
    if (strcmp(texts[i].key, s->key) == 0) return (char *)o + texts[i].offset;
  return NULL;
}

_Static_assert(sizeof ((bwt_train_config *)0)->init_from == OPT_STRING_MAX, "STRING rows are OPT_STRING destinations");

void run_options_default(run_options *o) {
  memset(o, 0, sizeof *o);
  bwt_run_config_default(&o->cfg);
  for (const bwt_setting *s = bwt_settings; s->key; s++) {
    char *text = s->type == BWT_SETTING_ENUM ? enum_text(o, s) : NULL;
    if (text) snprintf(text, OPT_STRING_MAX, "%s", s->name((int)s->def));
  }
  strcpy(o->norm, "auto"); /* by architecture (run_options_finish) */
  o->max_T = 0;
  strcpy(o->preset, "none");
}

int task_options(cli_option *opts, run_options *o) {
  bwt_task_config *t = &o->cfg.task;
  int n = 0;
  opts[n++] = (cli_option){"task", OPT_STRING, t->name, "wind tunnel: bijection | hmm | modular | recall | sticky"};
  for (const bwt_task_field *f = bwt_task_fields; f->key; f++)
    opts[n++] = (cli_option){f->flag, f->is_bool ? OPT_FLAG : OPT_INT, bwt_task_field_int(t, f), f->help};
  return n;
}

/* The options of the rows of `section` that have a flag. */
static int setting_options(cli_option *opts, run_options *o, const char *section) {
  static const opt_type types[] = {
      [BWT_SETTING_INT] = OPT_INT,       [BWT_SETTING_BOOL] = OPT_FLAG,     [BWT_SETTING_DOUBLE] = OPT_DOUBLE,
      [BWT_SETTING_U64] = OPT_U64,       [BWT_SETTING_STRING] = OPT_STRING, [BWT_SETTING_ENUM] = OPT_STRING,
  };
  int n = 0;
  for (const bwt_setting *s = bwt_settings; s->key; s++) {
    if (!s->flag || strcmp(s->section, section) != 0) continue;
    void *dest = s->type == BWT_SETTING_ENUM ? (void *)enum_text(o, s) : bwt_setting_ptr(&o->cfg, s);
    opts[n++] = (cli_option){s->flag, types[s->type], dest, s->help};
  }
  return n;
}

int model_options(cli_option *opts, run_options *o) {
  int n = setting_options(opts, o, "model");
  opts[n++] = (cli_option){"no-attn-bias", OPT_FLAG, &o->no_attn_bias, "transformer: Q, K, V, O projections without biases (as the reference's)"};
  opts[n++] = (cli_option){"max-T", OPT_INT, &o->max_T, "learned positions to allocate (0 = the task's length); rows past the training length stay untrained"};
  return n;
}

/* "none<sep>cpu<sep>quick<sep>paper": the presets' names (cli/reproduce_grids.c) into buf. */
static const char *preset_names(char *buf, size_t cap, const char *sep) {
  size_t n = (size_t)snprintf(buf, cap, "none");
  for (int i = 0; i < REPRO_N_PRESETS && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, repro_preset_names[i]);
  return buf;
}

int train_options(cli_option *opts, run_options *o) {
  static char help[256];
  char names[64];
  snprintf(help, sizeof help, "%s: the recipe bwt reproduce trains this task and --arch with (cli/reproduce_grids.c); explicit flags override it",
           preset_names(names, sizeof names, " | "));
  int n = 0;
  opts[n++] = (cli_option){"preset", OPT_STRING, o->preset, help};
  return n + setting_options(opts + n, o, "train");
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
  cli_option opts[RUN_OPTIONS_MAX];
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
    char names[64];
    fprintf(stderr, "bwt %s: unknown preset '%s' (known: %s)\n", command, name, preset_names(names, sizeof names, ", "));
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
    bwt_run_paths(t->init_from, path, dir, sizeof path);
    if (strlen(path) >= sizeof t->init_from) {
      fprintf(stderr, "bwt %s: --init-from path too long\n", command);
      return 2;
    }
    memcpy(t->init_from, path, strlen(path) + 1);
  }
  if (bwt_arch_parse(o->arch, &m->arch) != BWT_STATUS_OK) return cli_error(command) + 1;
  if (strcmp(o->norm, "auto") == 0) m->norm = bwt_arch_info_of(m->arch)->default_norm;
  else if (bwt_norm_parse(o->norm, &m->norm) != BWT_STATUS_OK) return cli_error(command) + 1;
  bwt_task *task = NULL;
  if (bwt_task_create(&task, &o->cfg.task) != BWT_STATUS_OK) return cli_error(command) + 1;
  m->vocab = task->vocab;
  m->input_dim = task->input_dim;
  m->n_classes = task->n_classes;
  m->max_T = task->seq_len;
  if (bwt_positions_parse(o->positions, &m->positions) != BWT_STATUS_OK) return bwt_task_free(task), cli_error(command) + 1;
  if (bwt_init_parse(o->init, &m->init) != BWT_STATUS_OK) return bwt_task_free(task), cli_error(command) + 1;
  if (bwt_ssm_variant_parse(o->ssm_variant, &m->ssm_variant) != BWT_STATUS_OK) return bwt_task_free(task), cli_error(command) + 1;
  bwt_loss loss = BWT_LOSS_CE;
  if (bwt_loss_parse(o->loss, &loss) != BWT_STATUS_OK) return bwt_task_free(task), cli_error(command) + 1;
  o->cfg.train.loss = (int)loss;
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

/* Options that apply only to architectures with a capability. */
static const struct {
  const char *option;
  unsigned caps; /* bwt_arch_cap */
} arch_options[] = {
    {"heads", BWT_CAP_ATTENTION},
    {"no-attn-bias", BWT_CAP_ATTENTION},
    {"lr-v-mult", BWT_CAP_ATTENTION},
    {"window", BWT_CAP_WINDOW},
    {"ssm-state", BWT_CAP_SSM},
    {"ssm-conv", BWT_CAP_SSM},
    {"ssm-expand", BWT_CAP_SSM},
    {"ssm-variant", BWT_CAP_SSM},
    {"experts", BWT_CAP_EXPERTS},
    {"expert-top-k", BWT_CAP_EXPERTS},
    {"expert-hidden", BWT_CAP_EXPERTS},
    {"moe-aux", BWT_CAP_EXPERTS},
};

int run_options_check_given(const cli_spec *spec, const run_options *o, const char *command) {
  int rc = task_options_check(spec, o, command);
  if (rc) return rc;
  for (size_t i = 0; i < sizeof arch_options / sizeof arch_options[0]; i++)
    if (cli_given(spec, arch_options[i].option) && !bwt_arch_has(o->cfg.model.arch, arch_options[i].caps)) {
      char archs[128];
      fprintf(stderr, "bwt %s: --%s applies to --arch %s only, not %s\n", command, arch_options[i].option,
              bwt_arch_list(arch_options[i].caps, " or ", archs, sizeof archs), bwt_arch_name(o->cfg.model.arch));
      return 2;
    }
  return 0;
}
