/* Learning-rate schedule, global-norm clipping and the AdamW step over the descriptor table. */
#include <math.h>
#include <stddef.h>

#include "bwt/kernels.h"
#include "optim.h"

double bwt_lr_at(const bwt_train_config *c, int t) {
  if (c->warmup > 0 && t <= c->warmup) return c->lr * t / c->warmup;
  double span = c->steps - c->warmup, progress = span > 0 ? (t - c->warmup) / span : 1.0;
  if (progress > 1) progress = 1;
  double lo = c->lr * c->min_lr_frac;
  return lo + 0.5 * (c->lr - lo) * (1.0 + cos(3.141592653589793 * progress));
}

int bwt_snapshot_due(const bwt_train_config *c, int t) {
  int n = c->snapshots;
  if (n < 1 || t < 1 || t > c->steps) return 0;
  if (n == 1) return t == c->steps;
  for (int i = 0; i < n; i++)
    if ((int)lround(pow(c->steps, (double)i / (n - 1))) == t) return 1;
  return 0;
}

double optim_clip(bwt_model *m, double clip) {
  double norm = sqrt(bwt_sumsq(m->grads, m->n_params));
  if (clip > 0 && norm > clip) {
    float scale = (float)(clip / (norm + 1e-6)); /* as torch.nn.utils.clip_grad_norm_ */
    bwt_scale(m->grads, scale, m->n_params);
  }
  return norm;
}

/* Parameter groups: the roles whose learning rate is scaled by a setting (Paper II's EM-like
 * schedule speeds up W_V and its bias by lr_v_mult). */
static const struct {
  bwt_tensor_role role;
  size_t lr_mult; /* offset of a double in bwt_train_config */
} lr_groups[] = {{BWT_ROLE_ATTN_V, offsetof(bwt_train_config, lr_v_mult)}};

static double lr_for(const bwt_train_config *c, const bwt_tensor_desc *d, double lr) {
  for (size_t g = 0; g < sizeof lr_groups / sizeof lr_groups[0]; g++)
    if (d->role == lr_groups[g].role) return lr * *(const double *)((const char *)c + lr_groups[g].lr_mult);
  return lr;
}

/* Elements per work item of the AdamW step. The step is element-wise, so splitting tensors into
 * items changes no result; it lets the small tensors of a small model share the threads. */
#define ADAM_CHUNK 4096

static size_t n_chunks(const bwt_tensor_desc *d) { return (d->size + ADAM_CHUNK - 1) / ADAM_CHUNK; }

void optim_adamw(bwt_model *m, float *adam_m, float *adam_v, const bwt_train_config *c, double lr,
                 int t) {
  long total = 0;
  for (int i = 0; i < m->n_tensors; i++) total += (long)n_chunks(&m->tensors[i]);
#pragma omp parallel for schedule(static) if (total > 1)
  for (long k = 0; k < total; k++) {
    int i = 0;
    long first = 0; /* chunks of the tensors before tensor i */
    while (k >= first + (long)n_chunks(&m->tensors[i])) first += (long)n_chunks(&m->tensors[i++]);
    const bwt_tensor_desc *d = &m->tensors[i];
    size_t off = d->offset + (size_t)(k - first) * ADAM_CHUNK;
    size_t len = d->offset + d->size - off < ADAM_CHUNK ? d->offset + d->size - off : ADAM_CHUNK;
    double lr_t = lr_for(c, d, lr);
    bwt_adamw_update(m->params + off, m->grads + off, adam_m + off, adam_v + off, len, (float)lr_t,
                     (float)c->beta1, (float)c->beta2, (float)c->eps,
                     d->decay || c->decay_all ? (float)c->weight_decay : 0.0f, t);
  }
}
