/* Checkpoints: safetensors files holding the weights (by the model's tensor names), optionally the
 * AdamW moments ("optim.m.<name>", "optim.v.<name>"), and __metadata__ with format, format_version,
 * config (the run config JSON), task, arch, seed, step and code_version. See docs/checkpoint.md. */
#ifndef BWT_CHECKPOINT_H
#define BWT_CHECKPOINT_H

#include "bwt/model.h"
#include "bwt/train.h"

#define BWT_CHECKPOINT_FORMAT "bwt-checkpoint"
#define BWT_CHECKPOINT_VERSION 1

/* The code version compiled in ("0.1.0+<git describe>"). */
const char *bwt_code_version(void);

/* Writes atomically; adam_m/adam_v may be NULL (weights only). */
bwt_status bwt_checkpoint_save(const char *path, const bwt_run_config *cfg, const bwt_model *model,
                               const float *adam_m, const float *adam_v, int step);
/* Reads and validates path, creates the model it describes (caller frees) and fills its weights.
 * If adam_m and adam_v are not NULL they receive malloc'd copies of the AdamW moments, which the
 * file must then hold. Strict: the format and version, a config that passes every range check, a
 * step within the run, the file's size against the parameter count the config implies (checked
 * before anything is allocated for it), exactly the tensors that model has (and the moments when the
 * metadata says so), every value finite, and the checksum (bwt/safetensors.h). */
bwt_status bwt_checkpoint_load(const char *path, bwt_run_config *cfg, bwt_model **model,
                               float **adam_m, float **adam_v, int *step);
/* The same from len bytes in memory; name stands for the file in messages. */
bwt_status bwt_checkpoint_load_memory(const void *bytes, size_t len, const char *name, bwt_run_config *cfg,
                                      bwt_model **model, float **adam_m, float **adam_v, int *step);

#endif
