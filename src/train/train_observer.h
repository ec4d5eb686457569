/* Instruments of the training loop. The loop knows no instrument: it runs every observer of the
 * table in run.c around each logged step, and each adds one field to that step's log line. */
#ifndef BWT_TRAIN_OBSERVER_H
#define BWT_TRAIN_OBSERVER_H

#include <cjson/cJSON.h>

#include "bwt/model.h"

typedef struct {
  const char *key; /* its field in the step line */
  /* Its state for this model (*state NULL: nothing to observe, e.g. no attention). */
  bwt_status (*open)(const bwt_model *m, void **state);
  /* Before a logged step. */
  void (*before_step)(void *state, const bwt_model *m);
  /* After it: the field's value (NULL: out of memory). */
  cJSON *(*after_step)(void *state, const bwt_model *m);
  void (*close)(void *state);
} train_observer;

/* Paper II's two timescales: per block, the attention's gradient norms and update rates. */
extern const train_observer attention_observer;

#endif
