/* Settings as data (issue 13): every row of bwt_settings has a default inside its range, goes
 * through config.json and back unchanged, takes its `absent` value when an older file lacks it, is
 * reported by name when a required one is missing or out of range, and has its flag (with its
 * default) in bwt train --help; the task fields' flags too. bwt_run_open opens what a run wrote. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bwt/checkpoint.h"
#include "bwt/train.h"
#include "options.h"
#include "testutil.h"

/* The default run config, sized for its task, as bwt train makes it. */
static bwt_run_config default_config(void) {
  run_options o;
  run_options_default(&o);
  assert_int_equal(run_options_finish(&o, "test"), 0);
  return o.cfg;
}

static int in_range(const bwt_setting *s, double v) {
  return (s->lo_open ? v > s->lo : v >= s->lo) && (s->hi_open ? v < s->hi : v <= s->hi);
}

static double get_value(bwt_run_config *c, const bwt_setting *s) {
  void *p = bwt_setting_ptr(c, s);
  switch (s->type) {
    case BWT_SETTING_DOUBLE: return *(double *)p;
    case BWT_SETTING_U64: return (double)*(uint64_t *)p;
    case BWT_SETTING_STRING: return *(char *)p ? 1 : 0;
    default: return *(int *)p;
  }
}

static void test_defaults_in_range(void **state) {
  (void)state;
  bwt_run_config c;
  bwt_run_config_default(&c);
  int n = 0;
  for (const bwt_setting *s = bwt_settings; s->key; s++, n++) {
    assert_true(strcmp(s->section, "model") == 0 || strcmp(s->section, "train") == 0);
    assert_non_null(s->help);
    assert_true(s->offset < sizeof c);
    if (s->type != BWT_SETTING_STRING) assert_true(get_value(&c, s) == s->def);
    if (s->flags & BWT_SETTING_RANGE) {
      if (!in_range(s, s->def)) fail_msg("%s.%s: default %g outside its range", s->section, s->key, s->def);
      assert_non_null(s->flag); /* range messages name the flag */
    }
    if (s->flags & BWT_SETTING_OPTIONAL && s->flags & BWT_SETTING_RANGE && !in_range(s, s->absent))
      fail_msg("%s.%s: absent value %g outside its range", s->section, s->key, s->absent);
    if (s->type == BWT_SETTING_ENUM) {
      assert_non_null(s->name);
      assert_non_null(s->parse);
      int v = -1;
      assert_int_equal(s->parse(s->name((int)s->def), &v), BWT_STATUS_OK);
      assert_int_equal(v, (int)s->def);
    }
    for (const bwt_setting *t = bwt_settings; t != s; t++) {
      assert_false(strcmp(t->section, s->section) == 0 && strcmp(t->key, s->key) == 0);
      assert_false(t->flag && s->flag && strcmp(t->flag, s->flag) == 0);
    }
    assert_ptr_equal(bwt_setting_find(s->section, s->key), s);
  }
  assert_true(n > 30);
  assert_null(bwt_setting_find("train", "no_such_setting"));
  /* bwt_train_config_default is the train rows. */
  bwt_train_config t;
  bwt_train_config_default(&t);
  assert_memory_equal(&t, &c.train, sizeof t);
  assert_int_equal(bwt_run_config_check(&(bwt_run_config){0}) != BWT_STATUS_OK, 1);
  bwt_run_config d = default_config();
  assert_int_equal(bwt_run_config_check(&d), BWT_STATUS_OK);
}

/* A value of s other than its default that the checks accept (in c as it is). */
static void perturb(bwt_run_config *c, const bwt_setting *s) {
  void *p = bwt_setting_ptr(c, s);
  switch (s->type) {
    case BWT_SETTING_INT: {
      int v = *(int *)p + 1;
      if ((s->flags & BWT_SETTING_RANGE) && !in_range(s, v)) v = (int)s->lo;
      *(int *)p = v;
      break;
    }
    case BWT_SETTING_DOUBLE: {
      double v = *(double *)p * 0.75 + 0.0625 * (s->hi - s->lo > 1 ? 1 : s->hi - s->lo);
      if ((s->flags & BWT_SETTING_RANGE) && !in_range(s, v)) v = (s->lo + s->hi) / 2;
      *(double *)p = v;
      break;
    }
    case BWT_SETTING_BOOL: *(int *)p = !*(int *)p; break;
    case BWT_SETTING_U64: *(uint64_t *)p = 0xfedcba9876543210ull; break; /* beyond a double's 53 bits */
    case BWT_SETTING_STRING: snprintf(p, s->size, "some/run/checkpoint.safetensors"); break;
    case BWT_SETTING_ENUM: {
      int v = 1;
      for (; s->name(v) && s->parse(s->name(v), &(int){0}) == BWT_STATUS_OK && v == (int)s->def; v++) {
      }
      *(int *)p = v == (int)s->def ? 0 : v;
      break;
    }
  }
}

/* Which rows can change alone in the default bijection transformer and still pass the checks. */
static int changes_alone(const bwt_setting *s) {
  static const char *const fixed[] = {"vocab", "n_classes", "max_T", "input_dim", "arch", "d_model", "n_heads"};
  if (strcmp(s->section, "model") != 0) return 1;
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    if (strcmp(fixed[i], s->key) == 0) return 0;
  return 1;
}

static void test_round_trip(void **state) {
  (void)state;
  int tried = 0;
  for (const bwt_setting *s = bwt_settings; s->key; s++) {
    if (!changes_alone(s)) continue;
    bwt_run_config c = default_config(), back;
    perturb(&c, s);
    if (strcmp(s->key, "window") == 0) *(int *)bwt_setting_ptr(&c, s) = 5, c.model.arch = BWT_ARCH_WINDOW_MLP;
    if (strcmp(s->key, "experts") == 0) *(int *)bwt_setting_ptr(&c, s) = 4; /* 1 expert is refused */
    if (bwt_run_config_check(&c) != BWT_STATUS_OK) fail_msg("%s.%s perturbed: %s", s->section, s->key, bwt_last_error());
    char *json = bwt_run_config_to_json(&c);
    assert_non_null(json);
    if (bwt_run_config_from_json(&back, json, "test") != BWT_STATUS_OK)
      fail_msg("%s.%s: %s\n%s", s->section, s->key, bwt_last_error(), json);
    if (memcmp(&back, &c, sizeof c) != 0) fail_msg("%s.%s does not round-trip:\n%s", s->section, s->key, json);
    char *again = bwt_run_config_to_json(&back);
    assert_string_equal(again, json);
    free(again);
    free(json);
    tried++;
  }
  assert_true(tried > 25);
}

/* config.json's keys, per section, are the rows' in their order. */
static void test_json_order(void **state) {
  (void)state;
  bwt_run_config c = default_config();
  snprintf(c.train.init_from, sizeof c.train.init_from, "x.safetensors");
  char *json = bwt_run_config_to_json(&c);
  cJSON *root = cJSON_Parse(json);
  const bwt_setting *s = bwt_settings;
  for (const char *const *sec = (const char *const[]){"model", "train", NULL}; *sec; sec++) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, *sec), *item;
    cJSON_ArrayForEach(item, o) {
      assert_non_null(s->key);
      assert_string_equal(s->section, *sec);
      assert_string_equal(item->string, s->key);
      s++;
    }
  }
  assert_null(s->key);
  cJSON_Delete(root);
  free(json);
  /* An empty init_from is not written. */
  c.train.init_from[0] = '\0';
  json = bwt_run_config_to_json(&c);
  assert_null(strstr(json, "init_from"));
  free(json);
}

/* Without a key, an optional row takes its absent value; a required one names itself. */
static void test_absent_keys(void **state) {
  (void)state;
  for (const bwt_setting *s = bwt_settings; s->key; s++) {
    bwt_run_config c = default_config(), back;
    if (s->flags & BWT_SETTING_OPTIONAL) perturb(&c, s);
    char *json = bwt_run_config_to_json(&c);
    cJSON *root = cJSON_Parse(json);
    free(json);
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, s->section), s->key);
    json = cJSON_Print(root);
    cJSON_Delete(root);
    bwt_status st = bwt_run_config_from_json(&back, json, "old.json");
    free(json);
    if (s->flags & BWT_SETTING_OPTIONAL) {
      if (st != BWT_STATUS_OK) fail_msg("without %s.%s: %s", s->section, s->key, bwt_last_error());
      if (s->type == BWT_SETTING_STRING) assert_string_equal((char *)bwt_setting_ptr(&back, s), "");
      else assert_true(get_value(&back, s) == s->absent);
    } else {
      char want[128];
      snprintf(want, sizeof want, "old.json: config has no %s.%s", s->section, s->key);
      assert_int_equal(st, BWT_STATUS_FORMAT);
      assert_string_equal(bwt_last_error(), want);
    }
  }
}

/* Out of range: the check names the flag and its range; so does reading a config.json. */
static void test_ranges(void **state) {
  (void)state;
  for (const bwt_setting *s = bwt_settings; s->key; s++) {
    if (!(s->flags & BWT_SETTING_RANGE)) continue;
    bwt_run_config c = default_config();
    double bad = s->lo_open ? s->lo : s->lo - 1;
    if (s->type == BWT_SETTING_INT) *(int *)bwt_setting_ptr(&c, s) = (int)bad;
    else *(double *)bwt_setting_ptr(&c, s) = bad;
    assert_int_equal(bwt_run_config_check(&c), BWT_STATUS_ARG);
    char want[64];
    snprintf(want, sizeof want, "%s must be in ", s->flag);
    if (strncmp(bwt_last_error(), want, strlen(want)) != 0) fail_msg("%s: %s", s->key, bwt_last_error());
    char *json = bwt_run_config_to_json(&c);
    bwt_run_config back;
    assert_int_equal(bwt_run_config_from_json(&back, json, "f.json"), BWT_STATUS_FORMAT);
    assert_non_null(strstr(bwt_last_error(), want));
    free(json);
    if (s->type == BWT_SETTING_DOUBLE) {
      *(double *)bwt_setting_ptr(&c, s) = NAN;
      assert_int_equal(bwt_run_config_check(&c), BWT_STATUS_ARG);
    }
  }
}

/* bwt train --help shows every row's flag and every task field's, each with its default. */
static void test_flags_in_help(void **state) {
  (void)state;
  run_options o;
  run_options_default(&o);
  cli_option opts[RUN_OPTIONS_MAX];
  int n = task_options(opts, &o);
  n += model_options(opts + n, &o);
  n += train_options(opts + n, &o);
  assert_true(n + 16 <= RUN_OPTIONS_MAX);
  cli_spec spec = {"train", "[options]", "", opts, n, 0, 0};
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  cli_usage(f, &spec);
  fclose(f);
  char want[160];
  for (const bwt_setting *s = bwt_settings; s->key; s++) {
    if (!s->flag) continue;
    snprintf(want, sizeof want, "\n  --%s ", s->flag);
    if (!strstr(text, want)) fail_msg("--%s is not in bwt train --help", s->flag);
    const char *line = strstr(text, want), *end = strchr(line + 1, '\n');
    char def[64] = "";
    void *p = bwt_setting_ptr(&o.cfg, s);
    switch (s->type) {
      case BWT_SETTING_INT: snprintf(def, sizeof def, "[%d]\n", *(int *)p); break;
      case BWT_SETTING_DOUBLE: snprintf(def, sizeof def, "[%g]\n", *(double *)p); break;
      case BWT_SETTING_BOOL: snprintf(def, sizeof def, "[%s]\n", *(int *)p ? "on" : "off"); break;
      case BWT_SETTING_U64: snprintf(def, sizeof def, "[%llu]\n", (unsigned long long)*(uint64_t *)p); break;
      case BWT_SETTING_STRING: snprintf(def, sizeof def, "[]\n"); break;
      case BWT_SETTING_ENUM:
        snprintf(def, sizeof def, "[%s]\n", strcmp(s->key, "norm") == 0 ? "auto" : s->name((int)s->def));
        break;
    }
    if (end - line < (long)strlen(def) || strncmp(end + 1 - strlen(def), def, strlen(def)) != 0)
      fail_msg("--%s does not show its default %s", s->flag, def);
  }
  for (const bwt_task_field *t = bwt_task_fields; t->key; t++) {
    snprintf(want, sizeof want, "\n  --%s ", t->flag);
    if (!strstr(text, want)) fail_msg("--%s is not in bwt train --help", t->flag);
    assert_non_null(t->help);
  }
  for (int k = 0; k < n; k++)
    for (int j = 0; j < k; j++)
      if (strcmp(opts[j].name, opts[k].name) == 0) fail_msg("--%s declared twice", opts[k].name);
  free(text);
}

/* bwt_run_open gives back what a run wrote, from its directory or its checkpoint file. */
static void test_run_open(void **state) {
  (void)state;
  bwt_run_config c = test_bijection_config(5, 8, 2, 1);
  c.train.steps = 3, c.train.batch = 4, c.train.eval_seqs = 8, c.train.threads = 1;
  const char *tmp = test_tmpdir("settings_run_open");
  char dir[512], file[600];
  snprintf(dir, sizeof dir, "%s/run", tmp);
  snprintf(file, sizeof file, "%s/checkpoint.safetensors", dir);
  bwt_trainer *tr = NULL;
  assert_int_equal(bwt_trainer_create(&tr, &c), BWT_STATUS_OK);
  assert_int_equal(bwt_train_run(tr, dir, NULL, NULL), BWT_STATUS_OK);
  bwt_run run;
  for (int i = 0; i < 2; i++) {
    assert_int_equal(bwt_run_open(&run, i ? file : dir, BWT_RUN_THREADS_OWN, 0), BWT_STATUS_OK);
    assert_string_equal(run.path, file);
    assert_string_equal(run.dir, dir);
    assert_int_equal(run.step, 3);
    assert_memory_equal(&run.cfg, &tr->cfg, sizeof run.cfg);
    assert_non_null(run.task);
    assert_int_equal(run.model->n_params, tr->model->n_params);
    assert_memory_equal(run.model->params, tr->model->params, sizeof(float) * tr->model->n_params);
    bwt_run_close(&run);
    assert_null(run.model);
  }
  assert_int_equal(bwt_run_open(&run, dir, 1, BWT_RUN_NO_TASK), BWT_STATUS_OK);
  assert_null(run.task);
  run.cfg.task.V = 4;
  assert_int_equal(bwt_run_create_task(&run), BWT_STATUS_OK);
  assert_int_equal(run.task->cfg.V, 4);
  bwt_run_close(&run);
  assert_int_equal(bwt_run_open(&run, tmp, BWT_RUN_THREADS_KEEP, 0), BWT_STATUS_IO);
  assert_null(run.model);
  assert_null(run.task);
  bwt_trainer_free(tr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_in_range), cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_json_order),        cmocka_unit_test(test_absent_keys),
      cmocka_unit_test(test_ranges),            cmocka_unit_test(test_flags_in_help),
      cmocka_unit_test(test_run_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
