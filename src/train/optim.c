/* Learning-rate schedule, global-norm clipping and the AdamW step over the descriptor table. */
#include <math.h>

#include "bwt/kernels.h"
#include "optim.h"

double bwt_lr_at(const bwt_train_config *c, int t) {
  if (c->warmup > 0 && t <= c->warmup) return c->lr * t / c->warmup;
  double span = c->steps - c->warmup, progress = span > 0 ? (t - c->warmup) / span : 1.0;
  if (progress > 1) progress = 1;
  double lo = c->lr * c->min_lr_frac;
  return lo + 0.5 * (c->lr - lo) * (1.0 + cos(3.141592653589793 * progress));
}

double optim_clip(bwt_model *m, double clip) {
  double norm = sqrt(bwt_sumsq(m->grads, m->n_params));
  if (clip > 0 && norm > clip) {
    float scale = (float)(clip / (norm + 1e-6)); /* as torch.nn.utils.clip_grad_norm_ */
    for (size_t i = 0; i < m->n_params; i++) m->grads[i] *= scale;
  }
  return norm;
}

void optim_adamw(bwt_model *m, float *adam_m, float *adam_v, const bwt_train_config *c, double lr,
                 int t) {
  for (int i = 0; i < m->n_tensors; i++) {
    const bwt_tensor_desc *d = &m->tensors[i];
    bwt_adamw_update(m->params + d->offset, m->grads + d->offset, adam_m + d->offset,
                     adam_v + d->offset, d->size, (float)lr, (float)c->beta1, (float)c->beta2,
                     (float)c->eps, d->decay ? (float)c->weight_decay : 0.0f, t);
  }
}
