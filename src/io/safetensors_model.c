/* A model's tensors in one safetensors file or sharded over several through Hugging Face's index
 * (model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor name: shard file}}).
 * The index is read at open; a shard is mapped, and its header parsed, when one of its tensors is
 * first asked for. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "bwt/fileio.h"
#include "bwt/safetensors.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

typedef struct {
  const char *file; /* as the index names it (a path relative to the index's directory) */
  char *path;       /* the index's directory joined with file */
  bwt_st_file *f;   /* NULL until first needed */
} shard;

typedef struct {
  const char *name;
  int shard;
} tensor;

struct bwt_st_model {
  char *path;     /* the index file, or the single file: names the model in messages */
  cJSON *index;   /* NULL for a single file */
  shard *shards;
  int n_shards;
  tensor *tensors; /* in the index's (or the file's header's) order */
  tensor *sorted;  /* the same sorted by name, for lookups */
  int n;
};

void bwt_safetensors_model_close(bwt_st_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_shards; i++) {
    bwt_safetensors_close(m->shards[i].f);
    free(m->shards[i].path);
  }
  free(m->shards);
  free(m->tensors);
  free(m->sorted);
  cJSON_Delete(m->index);
  free(m->path);
  free(m);
}

static char *dup_text(const char *s) {
  char *d = bwt_malloc(strlen(s) + 1, s);
  return d ? strcpy(d, s) : NULL;
}

/* dir + "/" + name (dir "" : name alone), malloc'd. */
static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = bwt_malloc(n, name);
  if (p) snprintf(p, n, "%s%s%s", dir, *dir ? "/" : "", name);
  return p;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const tensor *)a)->name, ((const tensor *)b)->name);
}

/* Sorts a copy of the tensor list by name, for lookups; a name listed twice is refused. */
static bwt_status index_names(bwt_st_model *m) {
  m->sorted = bwt_calloc(m->n ? (size_t)m->n : 1, sizeof *m->sorted, m->path);
  if (!m->sorted) return BWT_STATUS_NOMEM;
  if (m->n) memcpy(m->sorted, m->tensors, (size_t)m->n * sizeof *m->sorted);
  qsort(m->sorted, (size_t)m->n, sizeof *m->sorted, cmp_name);
  for (int i = 1; i < m->n; i++)
    if (strcmp(m->sorted[i].name, m->sorted[i - 1].name) == 0)
      return bwt_fail(BWT_STATUS_FORMAT, "%s: malformed index: tensor '%s' is listed twice", m->path, m->sorted[i].name);
  return BWT_STATUS_OK;
}

/* A shard name must stay inside the index's directory: relative, without a ".." component. */
static int safe_relative(const char *file) {
  if (!*file || file[0] == '/') return 0;
  for (const char *p = file; *p;) {
    size_t len = strcspn(p, "/");
    if (len == 2 && p[0] == '.' && p[1] == '.') return 0;
    p += len;
    if (*p == '/') p++;
  }
  return 1;
}

static bwt_status open_index(bwt_st_model *m) {
  const char *p = m->path;
  char *text = NULL;
  size_t len = 0;
  BWT_TRY(bwt_read_file(p, &text, &len));
  long failures = bwt_alloc_failures();
  m->index = cJSON_ParseWithLength(text, len);
  free(text);
  if (!m->index && bwt_alloc_failures() != failures) return bwt_fail(BWT_STATUS_NOMEM, "out of memory parsing %s", p);
  if (!cJSON_IsObject(m->index)) return bwt_fail(BWT_STATUS_FORMAT, "%s: malformed index: not a JSON object", p);
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(m->index, "metadata");
  if (meta && !cJSON_IsObject(meta) && !cJSON_IsNull(meta))
    return bwt_fail(BWT_STATUS_FORMAT, "%s: malformed index: 'metadata' is not an object", p);
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(m->index, "weight_map");
  if (!cJSON_IsObject(map)) return bwt_fail(BWT_STATUS_FORMAT, "%s: malformed index: no 'weight_map' object", p);
  m->n = cJSON_GetArraySize(map);
  if (m->n == 0) return bwt_fail(BWT_STATUS_FORMAT, "%s: malformed index: 'weight_map' lists no tensor", p);
  m->tensors = bwt_calloc((size_t)m->n, sizeof *m->tensors, p);
  m->shards = bwt_calloc((size_t)m->n, sizeof *m->shards, p); /* at most one shard per tensor */
  if (!m->tensors || !m->shards) return BWT_STATUS_NOMEM;
  int i = 0;
  for (const cJSON *it = map->child; it; it = it->next, i++) {
    if (!cJSON_IsString(it) || !safe_relative(it->valuestring))
      return bwt_fail(BWT_STATUS_FORMAT, "%s: malformed index: tensor '%s' maps to %s, not a relative file name", p, it->string,
                      cJSON_IsString(it) ? it->valuestring : "a non-string");
    m->tensors[i].name = it->string;
    int s = 0; /* shards are few (tens): a linear search */
    while (s < m->n_shards && strcmp(m->shards[s].file, it->valuestring) != 0) s++;
    if (s == m->n_shards) {
      m->shards[s].file = it->valuestring;
      m->n_shards++;
    }
    m->tensors[i].shard = s;
  }
  /* Shard paths are relative to the index's directory. */
  char *dir = dup_text(p);
  if (!dir) return BWT_STATUS_NOMEM;
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else dir[0] = '\0';
  for (int s = 0; s < m->n_shards; s++)
    if (!(m->shards[s].path = join(dir, m->shards[s].file))) {
      free(dir);
      return BWT_STATUS_NOMEM;
    }
  free(dir);
  return index_names(m);
}

/* One safetensors file as a model of one shard (opened now: its header lists the names). */
static bwt_status open_single(bwt_st_model *m) {
  m->shards = bwt_calloc(1, sizeof *m->shards, m->path);
  if (!m->shards) return BWT_STATUS_NOMEM;
  m->n_shards = 1;
  m->shards[0].file = m->path;
  if (!(m->shards[0].path = dup_text(m->path))) return BWT_STATUS_NOMEM;
  BWT_TRY(bwt_safetensors_open_lazy(&m->shards[0].f, m->path));
  m->n = bwt_safetensors_count(m->shards[0].f);
  m->tensors = bwt_calloc(m->n ? (size_t)m->n : 1, sizeof *m->tensors, m->path);
  if (!m->tensors) return BWT_STATUS_NOMEM;
  for (int i = 0; i < m->n; i++) m->tensors[i].name = bwt_safetensors_info_at(m->shards[0].f, i).name;
  return index_names(m);
}

static int ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), k = strlen(tail);
  return n >= k && strcmp(s + n - k, tail) == 0;
}

bwt_status bwt_safetensors_model_open(bwt_st_model **out, const char *path) {
  *out = NULL;
  bwt_alloc_hooks_install();
  struct stat st;
  if (stat(path, &st) != 0) return bwt_fail(BWT_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
  bwt_st_model *m = bwt_calloc(1, sizeof *m, path);
  if (!m) return BWT_STATUS_NOMEM;
  int is_index = 0;
  if (S_ISDIR(st.st_mode)) {
    m->path = join(path, INDEX_NAME);
    if (m->path && !bwt_path_exists(m->path)) {
      free(m->path);
      m->path = join(path, SINGLE_NAME);
      if (m->path && !bwt_path_exists(m->path)) {
        bwt_safetensors_model_close(m);
        return bwt_fail(BWT_STATUS_IO, "%s holds neither %s nor %s", path, INDEX_NAME, SINGLE_NAME);
      }
    } else {
      is_index = 1;
    }
  } else {
    m->path = dup_text(path);
    is_index = ends_with(path, ".json");
  }
  bwt_status s = !m->path ? BWT_STATUS_NOMEM : is_index ? open_index(m) : open_single(m);
  if (s != BWT_STATUS_OK) {
    bwt_safetensors_model_close(m);
    return s;
  }
  *out = m;
  return BWT_STATUS_OK;
}

int bwt_safetensors_model_count(const bwt_st_model *m) { return m->n; }

const char *bwt_safetensors_model_name(const bwt_st_model *m, int i) { return m->tensors[i].name; }

bwt_status bwt_safetensors_model_file(bwt_st_model *m, const char *name, const bwt_st_file **file) {
  *file = NULL;
  tensor key = {name, 0};
  const tensor *t = m->n ? bsearch(&key, m->sorted, (size_t)m->n, sizeof *m->sorted, cmp_name) : NULL;
  if (!t) return bwt_fail(BWT_STATUS_FORMAT, "%s has no tensor '%s'", m->path, name);
  shard *sh = &m->shards[t->shard];
  bwt_status s = sh->f ? BWT_STATUS_OK : bwt_safetensors_open_lazy(&sh->f, sh->path);
  if (s != BWT_STATUS_OK) { /* tried again at the next ask: the shard may yet arrive */
    char why[512];
    snprintf(why, sizeof why, "%s", bwt_last_error());
    return bwt_fail(s, "%s: shard '%s' (for tensor '%s') cannot be opened: %s", m->path, sh->file, name, why);
  }
  bwt_st_info info;
  if (bwt_safetensors_info(sh->f, name, &info) != BWT_STATUS_OK)
    return bwt_fail(BWT_STATUS_FORMAT, "%s lists tensor '%s' in shard '%s', but %s has no tensor '%s'", m->path, name, sh->file,
                    sh->path, name);
  *file = sh->f;
  return BWT_STATUS_OK;
}

bwt_status bwt_safetensors_model_get_f32(bwt_st_model *m, const char *name, int ndim, const int64_t *shape,
                                         const float **data) {
  *data = NULL;
  const bwt_st_file *f;
  BWT_TRY(bwt_safetensors_model_file(m, name, &f));
  return bwt_safetensors_get_f32(f, name, ndim, shape, data);
}

bwt_status bwt_safetensors_model_read_f32(bwt_st_model *m, const char *name, int ndim, const int64_t *shape,
                                          float *dst, size_t n) {
  const bwt_st_file *f;
  BWT_TRY(bwt_safetensors_model_file(m, name, &f));
  return bwt_safetensors_read_f32(f, name, ndim, shape, dst, n);
}
