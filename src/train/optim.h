/* Private to src/train: the optimiser pieces used by the trainer. */
#ifndef BWT_OPTIM_H
#define BWT_OPTIM_H

#include "bwt/train.h"

/* Returns the global gradient norm and scales the gradients down to `clip` if it is exceeded. */
double optim_clip(bwt_model *m, double clip);
/* One AdamW step at learning rate lr, t the 1-based step; decay per the tensor table. */
void optim_adamw(bwt_model *m, float *adam_m, float *adam_v, const bwt_train_config *c, double lr,
                 int t);

#endif
